"""Counters in Redis, shared by every replica: one limit for the fleet, not one per pod.

A request's checks are one Lua script, so admission stays all or nothing across
rules and atomic across replicas: the script reads every counter, and charges them
all only if none is over.  Sliding windows are two keys per slot (see
:mod:`~pulse_proxy.limits.window`), expiring two windows later; ``concurrent`` is a
counter incremented on admission and decremented on release, with an expiry as a
guard against a replica that died holding slots.  Slots come from each replica's
clock, so clocks should be NTP-close (a second of skew moves a window by a second).

Every call is bounded by ``backend_timeout_ms``.  A failure is raised as
:class:`~pulse_proxy.limits.backend.BackendError` for the limiter's fallback, and for
the next second requests do not try Redis at all: a dead store costs them nothing,
and one request a second finds out that it is back.  Releases and corrections go in
the background, never on the request path.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import redis.asyncio
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from pulse_proxy.limits import window
from pulse_proxy.limits.backend import BackendError, Denial, Usage
from pulse_proxy.limits.rules import Check, Limit

_PREFIX = "pulse:limits"
_CONCURRENT_TTL_S = 600
_QUIET_AFTER_FAILURE_S = 1.0

# KEYS: per check, the current and previous slot's keys (concurrent: its key twice).
# ARGV: per check, kind ("w" window, "c" concurrent), limit, cost, weight of the
# previous slot, expiry.  Reply: index of the refusing check (0: admitted), then each
# check's current and previous counts, as strings (Lua numbers would be truncated).
_ADMIT = """
local counts = {}
local refused = 0
for i = 1, #KEYS / 2 do
  local a = (i - 1) * 5
  local limit = tonumber(ARGV[a + 2])
  local cost = tonumber(ARGV[a + 3])
  local current = tonumber(redis.call('GET', KEYS[2 * i - 1]) or '0')
  local previous = 0
  if ARGV[a + 1] == 'w' then
    previous = tonumber(redis.call('GET', KEYS[2 * i]) or '0')
  end
  counts[#counts + 1] = tostring(current)
  counts[#counts + 1] = tostring(previous)
  if refused == 0 and previous * tonumber(ARGV[a + 4]) + current + cost > limit then
    refused = i
  end
end
if refused == 0 then
  for i = 1, #KEYS / 2 do
    local a = (i - 1) * 5
    redis.call('INCRBYFLOAT', KEYS[2 * i - 1], ARGV[a + 3])
    redis.call('EXPIRE', KEYS[2 * i - 1], ARGV[a + 5])
  end
end
table.insert(counts, 1, refused)
return counts
"""


class RedisStore:
    def __init__(
        self,
        url: str,
        *,
        timeout_ms: float,
        max_keys: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._timeout = timeout_ms / 1000
        self._client = redis.asyncio.from_url(
            url,
            socket_timeout=self._timeout,
            socket_connect_timeout=self._timeout,
            retry=Retry(NoBackoff(), 0),
        )
        self._admit = self._client.register_script(_ADMIT)
        self._max_keys = max_keys
        self._monotonic = clock
        self._quiet_until = 0.0
        self._background: set[asyncio.Task[Any]] = set()
        # What this replica last read of each key (fleet-wide figures), for /pulse/limits.
        self._seen: dict[int, OrderedDict[str, tuple[float, float, float]]] = {}
        # Whether the last call failed: the limits_backend_down alert reads it.
        self.down = False

    async def admit(self, checks: list[Check], now: float) -> Denial | None:
        if self._monotonic() < self._quiet_until:
            raise BackendError("unavailable")
        keys: list[str] = []
        args: list[Any] = []
        fractions = []
        for check in checks:
            limit = check.limit
            if limit.kind == "concurrent":
                key = self._key(limit, check.key, None)
                keys += [key, key]
                args += ["c", limit.limit, 1, 0, _CONCURRENT_TTL_S]
                fractions.append(0.0)
            else:
                index, fraction = window.slot(now, limit.window_s)
                check.slot = index
                keys += [self._key(limit, check.key, index), self._key(limit, check.key, index - 1)]
                args += ["w", limit.limit, check.cost, 1.0 - fraction, int(limit.window_s * 2) + 1]
                fractions.append(fraction)
        try:
            async with asyncio.timeout(self._timeout):
                reply = await self._admit(keys=keys, args=args)
        except (TimeoutError, RedisError, OSError) as exc:
            self._failed()
            raise BackendError(
                "timeout" if isinstance(exc, TimeoutError) else "unavailable"
            ) from None
        self.down = False
        refused = int(reply[0])
        for position, check in enumerate(checks):
            current = float(reply[1 + 2 * position])
            previous = float(reply[2 + 2 * position])
            if not refused:
                current += check.cost
            self._remember(check, current, previous, now)
        if refused:
            position = refused - 1
            return Denial(
                checks[position],
                float(reply[1 + 2 * position]),
                float(reply[2 + 2 * position]),
                fractions[position],
            )
        return None

    def release(self, check: Check) -> None:
        self._later(self._client.incrbyfloat(self._key(check.limit, check.key, None), -1))

    def correct(self, check: Check, delta: float) -> None:
        key = self._key(check.limit, check.key, check.slot)
        self._later(self._client.incrbyfloat(key, delta))

    def usage(self, limit: Limit, now: float) -> list[Usage]:
        rows = []
        for key, (current, previous, at) in list(self._seen.get(id(limit), {}).items()):
            if limit.kind == "concurrent":
                used = current
            else:
                seen_index, _ = window.slot(at, limit.window_s)
                used = window.used_now(seen_index, current, previous, now, limit.window_s)
            rows.append(Usage(key, used, limit.limit))
        return rows

    async def aclose(self) -> None:
        for task in list(self._background):
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
        await self._client.aclose()

    def _key(self, limit: Limit, value: str, index: int | None) -> str:
        base = f"{_PREFIX}:{limit.rule.name}:{limit.kind}:{value}"
        return base if index is None else f"{base}:{index}"

    def _failed(self) -> None:
        self.down = True
        self._quiet_until = self._monotonic() + _QUIET_AFTER_FAILURE_S

    def _remember(self, check: Check, current: float, previous: float, now: float) -> None:
        seen = self._seen.setdefault(id(check.limit), OrderedDict())
        if check.key not in seen and len(seen) >= self._max_keys:
            seen.popitem(last=False)
        seen[check.key] = (current, previous, now)

    def _later(self, call: Any) -> None:
        async def bounded() -> None:
            try:
                async with asyncio.timeout(self._timeout * 4):
                    await call
            except (TimeoutError, RedisError, OSError):
                self._failed()

        task = asyncio.ensure_future(bounded())
        self._background.add(task)
        task.add_done_callback(self._background.discard)
