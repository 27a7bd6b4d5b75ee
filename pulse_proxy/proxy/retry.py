"""When a failed try is tried again, where, and after how long.

Pure decisions, no I/O: what counts as retryable (``upstream.retry.on``), the wait
before trying the same upstream again (exponential back-off with full jitter, or the
upstream's own ``Retry-After`` / ``retry-after-ms``), the retry budget that keeps
retries from multiplying an outage, and the order in which one request visits the
upstreams (:class:`TryPlan`).  Clock and randomness are parameters, so tests decide
both.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Mapping, Sequence
from email.utils import parsedate_to_datetime

from pulse_proxy.proxy.breaker import REFUSED, Breaker
from pulse_proxy.settings.sections import RetrySettings

# The retry budget's window, and the retries it always allows in it whatever the
# traffic, so that a quiet proxy can still retry (Envoy's budgets have the same floor).
BUDGET_WINDOW_S = 10
BUDGET_MIN_RETRIES = 10


class RetryPolicy:
    """``upstream.retry`` read once into what the request path asks of it."""

    __slots__ = ("attempts", "backoff_s", "max_backoff_s", "on_connect", "on_status", "on_timeout")

    def __init__(self, settings: RetrySettings) -> None:
        self.attempts = settings.attempts
        self.backoff_s = settings.backoff_s
        self.max_backoff_s = settings.max_backoff_s
        self.on_status = frozenset(item for item in settings.on if isinstance(item, int))
        self.on_connect = "connect_error" in settings.on
        self.on_timeout = "timeout" in settings.on

    def backoff(self, retries: int, rnd: Callable[[], float]) -> float:
        """Full jitter (AWS's "Exponential Backoff And Jitter"): uniform in
        [0, min(max_backoff_s, backoff_s * 2**retries)], so clients that failed
        together do not come back together."""
        ceiling = min(self.max_backoff_s, self.backoff_s * 2.0 ** min(retries, 30))
        return rnd() * ceiling


def retry_after(headers: Mapping[str, str], now: float | None = None) -> float | None:
    """The wait an upstream asked for, in seconds: ``retry-after-ms`` (OpenAI's, more
    precise) first, then ``Retry-After`` as seconds or an HTTP date; None if neither
    is there or readable."""
    value = headers.get("retry-after-ms")
    if value is not None:
        try:
            ms = float(value)
        except ValueError:
            ms = math.nan
        if math.isfinite(ms) and ms >= 0:
            return ms / 1000
    value = headers.get("retry-after")
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


class RetryBudget:
    """Retries may add at most ``ratio`` to the requests of the last 10 s, plus
    :data:`BUDGET_MIN_RETRIES`: with every upstream down, N requests cause at most
    N × (1 + ratio) + the minimum tries, instead of N × attempts."""

    __slots__ = ("_minimum", "_ratio", "_requests", "_retries", "_stamps")

    def __init__(self, ratio: float, minimum: int = BUDGET_MIN_RETRIES) -> None:
        self._ratio = ratio
        self._minimum = minimum
        self._stamps = [-1] * BUDGET_WINDOW_S
        self._requests = [0] * BUDGET_WINDOW_S
        self._retries = [0] * BUDGET_WINDOW_S

    def _bucket(self, now: float) -> int:
        second = int(now)
        index = second % BUDGET_WINDOW_S
        if self._stamps[index] != second:
            self._stamps[index] = second
            self._requests[index] = 0
            self._retries[index] = 0
        return index

    def request(self, now: float) -> None:
        """A request's first try."""
        self._requests[self._bucket(now)] += 1

    def spend(self, now: float) -> bool:
        """Take one retry from the budget, if it has one left."""
        index = self._bucket(now)
        oldest = int(now) - BUDGET_WINDOW_S
        requests = retries = 0
        for stamp, made, retried in zip(self._stamps, self._requests, self._retries, strict=True):
            if stamp > oldest:
                requests += made
                retries += retried
        if retries + 1 > self._ratio * requests + self._minimum:
            return False
        self._retries[index] += 1
        return True


class TryPlan:
    """One request's way through the upstreams (given as their breakers, in order).

    The first try goes to the first upstream whose breaker admits it; if every one is
    open, to the one whose cool-down ends first.  After a failed try the next goes to
    the upstream tried least often so far, earliest in the list first: so an upstream
    is tried again only once every other usable one has been, and the primary comes
    first whenever it is usable.  An open upstream is skipped; so is one that asked
    for a longer wait than ``max_backoff_s``.  Coming back to an upstream waits out
    its back-off (or its Retry-After), counted from its failure."""

    __slots__ = ("_admission", "_breakers", "_policy", "_ready_at", "_rnd", "_skipped", "_tries")

    def __init__(
        self,
        breakers: Sequence[Breaker],
        policy: RetryPolicy,
        rnd: Callable[[], float] = random.random,
    ) -> None:
        self._breakers = breakers
        self._policy = policy
        self._rnd = rnd
        self._tries = [0] * len(breakers)
        self._ready_at = [0.0] * len(breakers)
        self._skipped = [False] * len(breakers)
        self._admission = REFUSED

    @property
    def admission(self) -> int:
        """What the breaker of the upstream last chosen granted (for its verdict)."""
        return self._admission

    def first(self, now: float) -> int:
        """The index of the upstream for the first try (always one)."""
        for index, breaker in enumerate(self._breakers):
            admission = breaker.admit(now)
            if admission != REFUSED:
                return self._take(index, admission)
        soonest = min(range(len(self._breakers)), key=lambda i: self._breakers[i].reopen_at)
        return self._take(soonest, self._breakers[soonest].force(now))

    def failed(self, index: int, now: float, asked_wait: float | None) -> None:
        """The try at ``index`` failed; ``asked_wait``: the upstream's Retry-After."""
        if asked_wait is not None:
            if asked_wait > self._policy.max_backoff_s:
                self._skipped[index] = True
            wait = asked_wait
        else:
            wait = self._policy.backoff(self._tries[index] - 1, self._rnd)
        self._ready_at[index] = now + wait

    def next(self, now: float) -> tuple[int, float] | None:
        """The upstream for the next try and the wait before it, or None if no
        usable upstream is left (all skipped or open)."""
        order = sorted(
            (tries, index) for index, tries in enumerate(self._tries) if not self._skipped[index]
        )
        for _, index in order:
            admission = self._breakers[index].admit(now)
            if admission != REFUSED:
                self._take(index, admission)
                return index, max(0.0, self._ready_at[index] - now)
        return None

    def _take(self, index: int, admission: int) -> int:
        self._tries[index] += 1
        self._admission = admission
        return index


__all__ = [
    "BUDGET_MIN_RETRIES",
    "BUDGET_WINDOW_S",
    "RetryBudget",
    "RetryPolicy",
    "TryPlan",
    "retry_after",
]
