"""Counters in this process: a dict per limit, bounded, no awaits, no threads.

Each limit's table maps a key to ``[slot, current, previous]`` (sliding windows, see
:mod:`~pulse_proxy.limits.window`) or to its count in flight (``concurrent``).  A
table holds at most ``max_keys`` keys: when it is full, keys whose windows have gone
by are swept out (at most once a second, so a flood of new keys does not sweep on
every request), and a key that still finds no room is counted as ``other``, shared
with every other overflowing value.  Client-chosen values (users, tags) therefore
never grow the proxy's memory, and a client that rotates users to escape a per-user
limit ends up limited together with the others it invented.
"""

from __future__ import annotations

import asyncio
from collections import deque

from pulse_proxy.limits import window
from pulse_proxy.limits.backend import Denial, Usage
from pulse_proxy.limits.rules import Check, Limit

OTHER = "other"
_SWEEP_EVERY_S = 1.0


class Table:
    __slots__ = ("counts", "limit", "max_keys", "swept_at", "waiters")

    def __init__(self, limit: Limit, max_keys: int) -> None:
        self.limit = limit
        self.max_keys = max_keys
        self.counts: dict[str, list[float]] = {}
        self.swept_at = 0.0
        # Requests queued for a concurrency slot, per key.
        self.waiters: dict[str, deque[asyncio.Future[None]]] = {}

    def entry(self, key: str, now: float) -> tuple[str, list[float]]:
        """The key's counters, rolled forward to ``now``'s slot; created if need be,
        under ``other`` when the table is full (the key counted under comes first)."""
        counts = self.counts
        found = counts.get(key)
        if found is None:
            if len(counts) >= self.max_keys:
                self._sweep(now)
                if len(counts) >= self.max_keys:
                    key = OTHER
                    found = counts.get(key)
            if found is None:
                found = counts[key] = [0.0, 0.0, 0.0]
        if self.limit.kind != "concurrent":
            index = now // self.limit.window_s
            if found[0] != index:
                found[2] = found[1] if found[0] == index - 1 else 0.0
                found[1] = 0.0
                found[0] = index
        return key, found

    def _sweep(self, now: float) -> None:
        if now - self.swept_at < _SWEEP_EVERY_S:
            return
        self.swept_at = now
        if self.limit.kind == "concurrent":
            idle = [key for key, entry in self.counts.items() if entry[1] <= 0]
        else:
            stale = now // self.limit.window_s - 1
            idle = [key for key, entry in self.counts.items() if entry[0] < stale]
        for key in idle:
            del self.counts[key]

    def usage(self, now: float) -> list[Usage]:
        limit = self.limit
        rows = []
        for key, (index, current, previous) in list(self.counts.items()):
            if limit.kind == "concurrent":
                used = current
            else:
                used = window.used_now(index, current, previous, now, limit.window_s)
            rows.append(Usage(key, used, limit.limit))
        return rows


class MemoryBackend:
    """All-or-nothing admission over a request's checks, in this process."""

    def __init__(self, max_keys: int) -> None:
        self._max_keys = max_keys
        self.tables: dict[int, Table] = {}

    def table(self, limit: Limit) -> Table:
        table = self.tables.get(id(limit))
        if table is None:
            table = self.tables[id(limit)] = Table(limit, self._max_keys)
        return table

    def admit(self, checks: list[Check], now: float) -> Denial | None:
        """Charge every check, or none of them and say which one refused."""
        entries = []
        for check in checks:
            limit = check.limit
            table = self.table(limit)
            check.key, entry = table.entry(check.key, now)
            if limit.kind == "concurrent":
                if entry[1] + 1 > limit.limit:
                    return Denial(check, entry[1], 0.0, 0.0)
            else:
                fraction = now / limit.window_s - entry[0]
                if entry[2] * (1.0 - fraction) + entry[1] + check.cost > limit.limit:
                    return Denial(check, entry[1], entry[2], fraction)
            entries.append(entry)
        for check, entry in zip(checks, entries, strict=True):
            entry[1] += check.cost
            check.slot = int(entry[0])
        return None

    def release(self, check: Check) -> None:
        """A request in flight has ended: its concurrency slot goes to the next in line."""
        table = self.table(check.limit)
        key = check.key
        entry = table.counts.get(key)
        if entry is None:
            return
        entry[1] -= 1
        waiters = table.waiters.get(key)
        while waiters:
            waiter = waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                break
        if not waiters:
            table.waiters.pop(key, None)
        if entry[1] <= 0 and not waiters:
            table.counts.pop(key, None)

    async def wait_for_slot(self, check: Check, timeout_s: float) -> None:
        """Until a request of ``check``'s key ends, or ``timeout_s`` (TimeoutError)."""
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        table = self.table(check.limit)
        table.waiters.setdefault(check.key, deque()).append(waiter)
        try:
            async with asyncio.timeout(timeout_s):
                await waiter
        finally:
            waiter.cancel()

    def correct(self, check: Check, delta: float) -> None:
        """Charged ``check.cost`` ahead; the answer used ``delta`` more (or less)."""
        entry = self.table(check.limit).counts.get(check.key)
        if entry is None:
            return
        if entry[0] == check.slot:
            entry[1] = max(entry[1] + delta, 0.0)
        elif entry[0] == check.slot + 1:
            entry[2] = max(entry[2] + delta, 0.0)

    def usage(self, limit: Limit, now: float) -> list[Usage]:
        return self.table(limit).usage(now)

    def size(self) -> int:
        """Keys held, all tables together (the memory bound's measure)."""
        return sum(len(table.counts) for table in self.tables.values())
