"""The two rings of time buckets: where a record lands, and which buckets a window covers.

A *fine* ring of short buckets covers the recent span; a *coarse* ring of longer buckets
covers the whole horizon.  When a fine bucket closes (a later bucket opens, or a query
finds time has moved on) it is folded into its coarse bucket.  A record that arrives
after its bucket closed takes a slower path that updates both rings.  Records arrive
already summed per model (an :class:`Aggregate` each), so filing costs one merge.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from pulse_proxy.stats.aggregate import Aggregate, merge_all


class _Bucket:
    """One time slice: an aggregate per model, and their overall merge once it is needed."""

    __slots__ = ("_total", "closed", "index", "models")

    def __init__(self, index: int, *, closed: bool = False) -> None:
        self.index = index
        self.models: dict[str, Aggregate] = {}
        # An open fine bucket changes with every add; a closed one (and every coarse one)
        # caches its overall merge until it changes again.
        self.closed = closed
        self._total: Aggregate | None = None

    def overall(self) -> Aggregate:
        """All models merged (read-only: it may be one of the model aggregates itself)."""
        if self._total is not None:
            return self._total
        if len(self.models) == 1:
            merged = next(iter(self.models.values()))
        else:
            merged = merge_all(self.models.values())
        if self.closed:
            self._total = merged
        return merged

    def add(self, model: str, part: Aggregate) -> None:
        self.model(model).merge(part)
        self._total = None

    def model(self, name: str) -> Aggregate:
        aggregate = self.models.get(name)
        if aggregate is None:
            aggregate = self.models[name] = Aggregate()
        return aggregate

    def fold(self, other: _Bucket) -> None:
        """Merge another bucket's models into this one's."""
        for name, aggregate in other.models.items():
            self.model(name).merge(aggregate)
        self._total = None


class BucketRings:
    """The fine and coarse rings of :class:`_Bucket`; not locked, its owner holds the lock."""

    def __init__(
        self,
        *,
        clock: Callable[[], float],
        horizon_s: int,
        fine_s: int,
        fine_span_s: int,
        coarse_s: int,
    ) -> None:
        self._clock = clock
        self._fine_s = fine_s
        self._fine_span_s = fine_span_s
        self._coarse_s = coarse_s
        # One slot more than the span, so the oldest bucket of a full window is still there.
        self._fine: list[_Bucket | None] = [None] * (math.ceil(fine_span_s / fine_s) + 1)
        self._coarse: list[_Bucket | None] = [None] * (math.ceil(horizon_s / coarse_s) + 2)
        self._coarse_head = -(2**62)
        self._open: list[_Bucket] = []
        self._head: _Bucket | None = None

    # -- ingestion -----------------------------------------------------------------

    def add(self, index: int, model: str, part: Aggregate) -> bool:
        """File ``part``'s requests under fine bucket ``index``; False if they are too
        late for the hour."""
        bucket = self._head
        if bucket is None or bucket.index != index:
            bucket = self._fine_bucket(index)
        if bucket is None:  # older than the fine ring: straight into the hour
            return self._add_coarse(index * self._fine_s, model, part)
        if not bucket.closed:
            bucket.model(model).merge(part)
        else:  # late records for a bucket already folded into the hour
            bucket.add(model, part)
            return self._add_coarse(bucket.index * self._fine_s, model, part)
        return True

    def _fine_bucket(self, index: int) -> _Bucket | None:
        """The fine bucket for ``index``: opens a newer one, or finds/creates a late one."""
        head = self._head
        if head is None or index > head.index:
            now_index = int(self._clock() // self._fine_s)
            # A record stamped in the future (clock skew) must not push the ring ahead.
            index = min(index, max(now_index, head.index if head else now_index))
            if head is None or index > head.index:
                self._close_before(index)
                bucket = _Bucket(index)
                self._fine[index % len(self._fine)] = bucket
                self._open.append(bucket)
                self._head = bucket
                return bucket
        head_index = self._head.index if self._head else index
        slot = self._fine[index % len(self._fine)]
        if slot is not None and slot.index == index:
            return slot
        if index <= head_index - len(self._fine):
            return None
        # No bucket yet for this past slice: make one, already closed, so the record
        # also reaches the coarse ring.  (Any older occupant of the slot was folded.)
        bucket = _Bucket(index, closed=True)
        self._fine[index % len(self._fine)] = bucket
        return bucket

    def _close_before(self, index: int) -> None:
        """Close every open fine bucket older than ``index`` and fold it into the hour."""
        if not self._open or self._open[0].index >= index:  # kept in index order
            return
        still_open = []
        for bucket in self._open:
            if bucket.index >= index:
                still_open.append(bucket)
                continue
            bucket.closed = True
            coarse = self._coarse_bucket(bucket.index * self._fine_s // self._coarse_s)
            if coarse is not None:
                coarse.fold(bucket)
        self._open = still_open

    def _coarse_bucket(self, index: int) -> _Bucket | None:
        ring = self._coarse
        slot = ring[index % len(ring)]
        if slot is not None and slot.index == index:
            return slot
        if index <= self._coarse_head - len(ring):
            return None
        bucket = _Bucket(index, closed=True)
        ring[index % len(ring)] = bucket
        self._coarse_head = max(self._coarse_head, index)
        return bucket

    def _add_coarse(self, t: float, model: str, part: Aggregate) -> bool:
        coarse = self._coarse_bucket(int(t // self._coarse_s))
        if coarse is None:
            return False
        coarse.add(model, part)
        return True

    # -- queries -------------------------------------------------------------------

    def covering(
        self, window_s: float, before_s: float, started_at: float
    ) -> tuple[list[_Bucket], float, float]:
        """The buckets covering ``window_s`` seconds that end ``before_s`` seconds ago.

        Windows ending now use whole buckets, the current partial one included.  An
        earlier window (a baseline) stops at the last bucket that ends before its end,
        so it never overlaps the recent window it is compared with.
        """
        now = self._clock()
        self._close_before(int(now // self._fine_s))
        if before_s <= 0 and window_s <= self._fine_span_s:
            size, ring = self._fine_s, self._fine
            last = int(now // size)
        else:
            size, ring = self._coarse_s, self._coarse
            last = int((now - before_s) // size) - (1 if before_s > 0 else 0)
        first = last - max(1, math.ceil(window_s / size)) + 1
        buckets = []
        for index in range(first, last + 1):
            bucket = ring[index % len(ring)]
            if bucket is not None and bucket.index == index:
                buckets.append(bucket)
        if ring is self._coarse:  # open fine buckets are not folded into the hour yet
            per = self._coarse_s // self._fine_s
            buckets.extend(b for b in self._open if first <= b.index // per <= last)
        start = max(first * size, started_at)
        end = now if before_s <= 0 else (last + 1) * size
        return buckets, start, end

    def is_open(self, bucket: _Bucket) -> bool:
        """Whether ``bucket`` is a fine bucket not yet folded into the hour."""
        return bucket in self._open
