"""What a counter store answers, whichever it is (memory or Redis)."""

from __future__ import annotations

from dataclasses import dataclass

from pulse_proxy.limits import window
from pulse_proxy.limits.rules import Check


@dataclass(slots=True, frozen=True)
class Denial:
    """The check that refused a request, and the counts it saw (nothing was charged)."""

    check: Check
    current: float
    previous: float
    fraction: float

    @property
    def used(self) -> float:
        return window.used(self.current, self.previous, self.fraction)

    @property
    def remaining(self) -> float:
        return max(self.check.limit.limit - self.used, 0.0)

    @property
    def wait_s(self) -> float:
        """Seconds until the request would fit (concurrency: unknown, so one second)."""
        limit = self.check.limit
        if limit.kind == "concurrent":
            return 1.0
        return window.wait_s(
            self.current, self.previous, self.fraction, limit.window_s, limit.limit, self.check.cost
        )


class BackendError(Exception):
    """The shared store did not answer in time, or at all."""


@dataclass(slots=True)
class Usage:
    """One key's standing in one limit's table, for ``/pulse/limits``."""

    key: str
    used: float
    limit: float

    @property
    def ratio(self) -> float:
        return self.used / self.limit if self.limit else 0.0
