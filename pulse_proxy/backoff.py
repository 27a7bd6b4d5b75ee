"""Exponential back-off for restarting a child process that keeps dying.

A child that dies on start-up, or on the same input every time, must not be restarted
in a tight loop: each start costs a process launch and an import (about a second of a
core), which would be taken from the very requests the proxy is relaying.  The delay
doubles from ``first_s`` up to ``max_s``; a child that then stays up for ``healthy_s``
has proved the trouble over, and its next death starts again from ``first_s``.
"""

from __future__ import annotations

import time
from collections.abc import Callable


class Backoff:
    """Delays before successive restarts.  Example::

    backoff = Backoff(first_s=0.1, max_s=10.0, healthy_s=30.0)
    backoff.started()           # the child is up
    ...                         # it dies
    await asyncio.sleep(backoff.next_delay())
    """

    def __init__(
        self,
        *,
        first_s: float = 0.1,
        max_s: float = 10.0,
        healthy_s: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._first_s = first_s
        self._max_s = max_s
        self._healthy_s = healthy_s
        self._clock = clock
        self._next_s = first_s
        self._started_at: float | None = None

    def started(self) -> None:
        """The child is up: from now on its lifetime counts towards being healthy."""
        self._started_at = self._clock()

    def next_delay(self) -> float:
        """How long to wait before the next start, the child having just died (or failed
        to start)."""
        if self._started_at is not None and self._clock() - self._started_at >= self._healthy_s:
            self._next_s = self._first_s
        self._started_at = None
        # Doubling the last delay rather than raising 2 to a failure count: a child
        # dying for hours would take that power past the largest float.
        delay = min(self._max_s, self._next_s)
        self._next_s = delay * 2
        return delay
