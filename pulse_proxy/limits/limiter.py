"""The limits on the request path: admit or refuse, release, correct afterwards.

The forwarder calls :meth:`Limiter.admit` once the body is read, before anything
goes upstream, and :meth:`Limiter.release` once the request has ended, whatever
happened.  Admission is all or nothing across every rule a request falls under: a
request refused by one limit is charged to none.  Tokens and cost are charged
ahead (see :mod:`~pulse_proxy.limits.facts`) and corrected by :meth:`correct` when
the accounted exchanges come back, so a limit holds within one request's worth.

With the memory store the whole check is synchronous dict arithmetic.  With Redis
(:mod:`~pulse_proxy.limits.redis_store`) it is one script call, bounded by
``backend_timeout_ms``; a failure lets the request through or refuses it as
``on_backend_error`` says, counted and marked in the event.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from pulse_proxy.accounting.pricing import PriceTable
from pulse_proxy.limits.answer import Refusal, refusal_for
from pulse_proxy.limits.backend import BackendError, Denial
from pulse_proxy.limits.facts import FactReader
from pulse_proxy.limits.memory import MemoryBackend
from pulse_proxy.limits.rules import Check, Rule
from pulse_proxy.records import Capture, Exchange
from pulse_proxy.settings.limits import LimitsSettings

if TYPE_CHECKING:
    # redis-py loads OpenTelemetry when installed: kept off the hot path's imports.
    from pulse_proxy.limits.redis_store import RedisStore

# Charges awaiting their correction; past this the oldest are corrected never.
_MAX_PENDING = 50_000
_TOP = 10
_SHARED_QUEUE_POLL_S = 0.05


class Limiter:
    def __init__(
        self,
        settings: LimitsSettings,
        *,
        hash_key: bytes,
        max_tags: int,
        prices: PriceTable | None,
        clock: Callable[[], float] = time.time,
        store: RedisStore | None = None,
    ) -> None:
        self.settings = settings
        self.rules = [Rule.compile(rule) for rule in settings.rules]
        self._clock = clock
        self.memory = MemoryBackend(settings.max_keys)
        self.store = store
        self._fallback_allows = settings.on_backend_error == "allow"
        self._reader = FactReader(
            hash_key=hash_key,
            max_tags=max_tags,
            default_max_tokens=settings.default_max_tokens,
            prices=prices,
            reads_body=any(rule.reads_body for rule in self.rules),
            reads_key=any(rule.by == "api_key" for rule in self.rules),
            reads_tags=any(rule.by.startswith("tag:") for rule in self.rules),
        )
        self.charges_usage = any(
            limit.kind in ("tokens", "cost") for rule in self.rules for limit in rule.limits
        )
        self._held: dict[int, list[Check]] = {}
        # Ordered for an O(1) eviction of the oldest (a dict's first key after many
        # deletions at its front takes a scan to find).
        self._pending: OrderedDict[str, list[Check]] = OrderedDict()
        self.throttled: dict[str, int] = {rule.name: 0 for rule in self.rules}
        self.backend_errors = 0

    # -- the request path ---------------------------------------------------------

    async def admit(self, capture: Capture) -> Refusal | None:
        """None: go ahead (and call :meth:`release` at the end); else the 429 to send."""
        facts = self._reader.read(capture)
        checks = []
        for rule in self.rules:
            if not rule.active:
                continue
            key = rule.value(facts)
            if key is None:
                continue
            for limit in rule.limits:
                checks.append(Check(limit, key, rule.cost_of(limit.kind, facts)))
        if not checks:
            return None
        if self.store is not None:
            return await self._admit_shared(capture, checks)
        denial = self.memory.admit(checks, self._clock())
        if denial is not None and _queues(denial):
            # Real time, whatever clock the windows use: a queue is waited in real time.
            deadline = time.monotonic() + denial.check.limit.rule.queue_timeout_s
            while denial is not None and _queues(denial):
                try:
                    await self.memory.wait_for_slot(denial.check, deadline - time.monotonic())
                except TimeoutError:
                    break
                denial = self.memory.admit(checks, self._clock())
        if denial is not None:
            return self._refuse(denial)
        self._hold(capture, checks)
        return None

    async def _admit_shared(self, capture: Capture, checks: list[Check]) -> Refusal | None:
        assert self.store is not None
        try:
            denial = await self.store.admit(checks, self._clock())
        except BackendError as exc:
            self.backend_errors += 1
            capture.exchange.limits_backend_error = str(exc)
            if self._fallback_allows:
                return None
            rule = checks[0].limit.rule.name
            self.throttled[rule] += 1
            return Refusal(
                rule,
                "Rate limits cannot be checked right now (their store is unavailable). "
                "Please try again shortly.",
                1.0,
                error_type="limits_backend_unavailable",
            )
        if denial is not None and _queues(denial):
            # No release reaches this replica from the others: poll for a free slot.
            deadline = time.monotonic() + denial.check.limit.rule.queue_timeout_s
            while denial is not None and _queues(denial) and time.monotonic() < deadline:
                await asyncio.sleep(_SHARED_QUEUE_POLL_S)
                try:
                    denial = await self.store.admit(checks, self._clock())
                except BackendError:
                    break
        if denial is not None:
            return self._refuse(denial)
        self._hold(capture, checks)
        return None

    def _refuse(self, denial: Denial) -> Refusal:
        self.throttled[denial.check.limit.rule.name] += 1
        return refusal_for(denial)

    def _hold(self, capture: Capture, checks: list[Check]) -> None:
        self._held[id(capture)] = checks
        if self.charges_usage:
            pending = self._pending
            if len(pending) >= _MAX_PENDING:
                pending.popitem(last=False)
            # Keyed by request id, which may be the client's: a duplicate id merely
            # leaves the earlier request's charge uncorrected.
            usage = [check for check in checks if check.limit.kind in ("tokens", "cost")]
            if usage:
                pending[capture.exchange.request_id] = usage

    def release(self, capture: Capture) -> None:
        """The request has ended: its concurrency slots are free again."""
        checks = self._held.pop(id(capture), None)
        if checks is None:
            return
        for check in checks:
            if check.limit.kind == "concurrent":
                if self.store is not None:
                    self.store.release(check)
                else:
                    self.memory.release(check)

    # -- after accounting ---------------------------------------------------------

    def correct(self, exchanges: Iterable[Exchange]) -> None:
        """Charges made ahead, set to what the upstream reported using."""
        pending = self._pending
        for exchange in exchanges:
            charged = pending.pop(exchange.request_id, None)
            if charged is None:
                continue
            for check in charged:
                actual = _actual(
                    exchange,
                    exchange.total_tokens if check.limit.kind == "tokens" else exchange.cost_usd,
                    check.cost,
                )
                delta = actual - check.cost
                if delta:
                    if self.store is not None:
                        self.store.correct(check, delta)
                    else:
                        self.memory.correct(check, delta)

    # -- alerts that act ----------------------------------------------------------

    def switch(self, alert: str, firing: bool) -> list[str]:
        """Rules waiting on ``alert`` enforced (firing) or lifted; their names."""
        switched = []
        for rule in self.rules:
            if rule.when_alert == alert and rule.active != firing:
                rule.active = firing
                switched.append(rule.name)
        return switched

    # -- what /pulse/limits shows ---------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        now = self._clock()
        rules = []
        for rule in self.rules:
            limits = []
            for limit in rule.limits:
                usage = (self.store or self.memory).usage(limit, now)
                usage.sort(key=lambda row: row.used, reverse=True)
                limits.append(
                    {
                        "kind": limit.kind,
                        "limit": limit.limit,
                        "window_s": limit.window_s or None,
                        "keys": len(usage),
                        "top": [
                            {
                                "value": row.key,
                                "used": round(row.used, 6),
                                "ratio": round(row.ratio, 4),
                            }
                            for row in usage[:_TOP]
                        ],
                    }
                )
            rules.append(
                {
                    "name": rule.name,
                    "by": rule.by,
                    "match": sorted(rule.match) if rule.match is not None else None,
                    "when_alert": rule.when_alert,
                    "active": rule.active,
                    "throttled": self.throttled[rule.name],
                    "limits": limits,
                }
            )
        return {
            "backend": self.settings.backend,
            "on_backend_error": self.settings.on_backend_error,
            "backend_errors": self.backend_errors,
            "max_keys": self.settings.max_keys,
            "rules": rules,
        }


def _queues(denial: Denial) -> bool:
    """Whether the refusal may wait: a concurrency limit with a queue timeout."""
    return denial.check.limit.kind == "concurrent" and bool(denial.check.limit.rule.queue_timeout_s)


def _actual(exchange: Exchange, reported: float | None, charged: float) -> float:
    """What the request really used: as reported; nothing if it failed before any
    usage; else (no usage read) the charge stands."""
    if reported is not None:
        return float(reported)
    if exchange.outcome != "success":
        return 0.0
    return charged
