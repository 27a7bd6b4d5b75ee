"""A circuit breaker for one upstream: stop sending it requests while it is failing.

Without one, every request to a dead upstream pays its connect or read timeout before
moving on, and a struggling upstream gets the full load (plus retries) exactly when
it can least take it.  The breaker opens after ``consecutive_failures`` failed tries
in a row, or when the share of failures over the last ``window_s`` exceeds
``error_rate`` (with at least ``min_requests`` tries in the window).  While open, the
upstream is skipped; after ``open_for_s`` one trial request goes through (half-open):
its success closes the breaker, its failure opens it again for twice as long, up to
``max_open_for_s``.

Everything here runs on the request path, so it is plain arithmetic on a few
integers: no allocation per request, no await, no lock (the event loop is the only
writer).  Time comes from an injected clock, so tests step through minutes of
cool-downs in microseconds.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from enum import IntEnum
from typing import Any

from pulse_proxy.settings.sections import BreakerSettings


class BreakerState(IntEnum):
    """As ``llm_upstream_breaker_state`` shows it."""

    CLOSED = 0
    HALF_OPEN = 1
    OPEN = 2


# What :meth:`Breaker.admit` grants: plain ints, compared by identity-free equality.
REFUSED = 0
ADMITTED = 1
TRIAL = 2

# Told of each opening and closing: (event name, its fields).
OnChange = Callable[[str, dict[str, Any]], None]


class Breaker:
    """One upstream's breaker.  Example::

    admission = breaker.admit(now)
    if admission != REFUSED:
        ok = ...  # one try
        breaker.record(ok, admission, now)
    """

    __slots__ = (
        "_base_open_s",
        "_buckets",
        "_consecutive",
        "_fails",
        "_limit_consecutive",
        "_max_open_s",
        "_min_requests",
        "_on_change",
        "_open_s",
        "_opened_at",
        "_rate",
        "_stamps",
        "_totals",
        "_trial_out",
        "clock",
        "name",
        "reopen_at",
        "state",
    )

    def __init__(
        self,
        name: str,
        settings: BreakerSettings,
        *,
        clock: Callable[[], float] = time.monotonic,
        on_change: OnChange | None = None,
    ) -> None:
        self.name = name
        self.clock = clock
        self._on_change = on_change
        self._limit_consecutive = settings.consecutive_failures
        self._rate = settings.error_rate
        self._min_requests = settings.min_requests
        self._base_open_s = settings.open_for_s
        self._max_open_s = settings.max_open_for_s
        self._open_s = settings.open_for_s
        # The window as one-second buckets: a stamp says which second a bucket holds.
        self._buckets = max(1, math.ceil(settings.window_s))
        self._stamps = [-1] * self._buckets
        self._totals = [0] * self._buckets
        self._fails = [0] * self._buckets
        self._consecutive = 0
        self._trial_out = False
        self._opened_at = 0.0
        self.state = BreakerState.CLOSED
        # While open: when the next trial may go.
        self.reopen_at = 0.0

    # -- the request path ----------------------------------------------------------

    def admit(self, now: float) -> int:
        """Whether a request may go to this upstream now: ADMITTED, TRIAL (the one
        request let through once the cool-down is over) or REFUSED."""
        if self.state is BreakerState.CLOSED:
            return ADMITTED
        if self._trial_out or now < self.reopen_at:
            return REFUSED
        self.state = BreakerState.HALF_OPEN
        self._trial_out = True
        return TRIAL

    def force(self, now: float) -> int:
        """Admit even though open: every upstream is open, and a request still gets
        the chance this one (the first to end its cool-down) offers."""
        admission = self.admit(now)
        return ADMITTED if admission == REFUSED else admission

    def record(self, ok: bool, admission: int, now: float) -> None:
        """The result of one try this breaker admitted."""
        if admission == TRIAL:
            self._trial_out = False
            if ok:
                self._close(now, "trial_succeeded")
            else:
                self._open_s = min(self._open_s * 2, self._max_open_s)
                self._open(now, "trial_failed", {})
            return
        if self.state is not BreakerState.CLOSED:
            # A forced try while open: success is as good as a trial; a failure
            # changes nothing (only trials lengthen the cool-down).
            if ok:
                self._close(now, "request_succeeded")
            return
        second = int(now)
        index = second % self._buckets
        if self._stamps[index] != second:
            self._stamps[index] = second
            self._totals[index] = 0
            self._fails[index] = 0
        self._totals[index] += 1
        if ok:
            self._consecutive = 0
            return
        self._fails[index] += 1
        self._consecutive += 1
        if self._limit_consecutive and self._consecutive >= self._limit_consecutive:
            self._open(now, "consecutive_failures", {"consecutive_failures": self._consecutive})
            return
        requests, failures = self._window(second)
        if requests >= self._min_requests and failures > self._rate * requests:
            self._open(
                now,
                "error_rate",
                {
                    "error_rate": round(failures / requests, 4),
                    "requests": requests,
                    "failures": failures,
                    "window_s": self._buckets,
                },
            )

    def release(self, admission: int) -> None:
        """A try that ended with no verdict (the client hung up): its trial slot,
        if it held one, goes to the next request."""
        if admission == TRIAL:
            self._trial_out = False

    # -- reading ---------------------------------------------------------------------

    def shown_state(self, now: float) -> BreakerState:
        """The state as a reader should see it: open past its cool-down is half-open."""
        if self.state is BreakerState.OPEN and now >= self.reopen_at:
            return BreakerState.HALF_OPEN
        return self.state

    def error_rate(self, now: float) -> tuple[int, int]:
        """(tries, failures) in the window up to ``now``."""
        return self._window(int(now))

    def _window(self, second: int) -> tuple[int, int]:
        oldest = second - self._buckets
        requests = failures = 0
        for stamp, total, fails in zip(self._stamps, self._totals, self._fails, strict=True):
            if stamp > oldest:
                requests += total
                failures += fails
        return requests, failures

    # -- transitions -----------------------------------------------------------------

    def _open(self, now: float, reason: str, figures: dict[str, Any]) -> None:
        if self.state is BreakerState.CLOSED:
            self._opened_at = now
        self.state = BreakerState.OPEN
        self.reopen_at = now + self._open_s
        self._consecutive = 0
        if self._on_change is not None:
            self._on_change(
                "upstream.breaker_opened",
                {"upstream": self.name, "reason": reason, "open_for_s": self._open_s, **figures},
            )

    def _close(self, now: float, reason: str) -> None:
        self.state = BreakerState.CLOSED
        self._open_s = self._base_open_s
        self._consecutive = 0
        # The failures that opened it must not open it again at the next one.
        self._stamps = [-1] * self._buckets
        if self._on_change is not None:
            self._on_change(
                "upstream.breaker_closed",
                {
                    "upstream": self.name,
                    "reason": reason,
                    "open_s": round(now - self._opened_at, 3),
                },
            )


__all__ = ["ADMITTED", "REFUSED", "TRIAL", "Breaker", "BreakerState", "OnChange"]
