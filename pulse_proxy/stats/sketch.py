"""Quantile sketches that are plain data: :class:`Sketch`, DDSketch's bins in a Struct.

A sketch is summed in the accounting process, crosses to the event loop with its batch
and is merged there into the rolling windows, so it is one msgspec Struct: the same
object is filled, sent and merged, with no second form for the wire.  It holds
DDSketch's bins sparsely (a dict of the occupied bins: the library's dense store grows
and re-centres a list as a fresh sketch meets new values, which dominated ``add`` for
our many small per-bucket sketches).  Where values go and what a quantile reads are the
library's, through its public API only: the mapping's ``key``/``value`` and
``min_possible``, and ``BaseDDSketch.get_quantile_value`` over a :class:`SparseStore`
that plugs into its ``Store`` interface.  So the accuracy guarantee is the library's,
and ``tests/test_sketch_contract.py`` checks the quantiles against its own ``DDSketch``.
"""

from __future__ import annotations

import math

from ddsketch.ddsketch import BaseDDSketch
from ddsketch.mapping import LogarithmicMapping
from ddsketch.store import Store
from msgspec import Struct

RELATIVE_ACCURACY = 0.005

# One mapping for every sketch: it is immutable, and sketches merge only if theirs match.
MAPPING = LogarithmicMapping(RELATIVE_ACCURACY)
_MIN_POSITIVE = MAPPING.min_possible
_key = MAPPING.key


class Sketch(Struct, array_like=True):
    """DDSketch's figures as plain values: bins by key, their counts, and the exact
    count, sum and extremes.  Values too close to zero to map count as zeros, as in
    the library."""

    positive: dict[int, float] = {}
    positive_count: float = 0.0
    negative: dict[int, float] = {}
    negative_count: float = 0.0
    zero: float = 0.0
    count: float = 0.0
    sum: float = 0.0
    min: float = math.inf
    max: float = -math.inf

    def add(self, value: float) -> None:
        """File one value, as ``BaseDDSketch.add`` does with a weight of one."""
        if value > _MIN_POSITIVE:
            key = _key(value)
            bins = self.positive
            bins[key] = bins.get(key, 0.0) + 1.0
            self.positive_count += 1.0
        elif value < -_MIN_POSITIVE:
            key = _key(-value)
            bins = self.negative
            bins[key] = bins.get(key, 0.0) + 1.0
            self.negative_count += 1.0
        else:
            self.zero += 1.0
        self.count += 1.0
        self.sum += value
        # Comparisons rather than min()/max(): a builtin call costs more than the test.
        if value < self.min:
            self.min = value
        if value > self.max:
            self.max = value

    def merge(self, other: Sketch) -> None:
        """Fold ``other`` in, as if its values had been added here."""
        if not other.count:
            return
        _merge_bins(self.positive, other.positive)
        self.positive_count += other.positive_count
        if other.negative_count:
            _merge_bins(self.negative, other.negative)
            self.negative_count += other.negative_count
        self.zero += other.zero
        self.count += other.count
        self.sum += other.sum
        if other.min < self.min:
            self.min = other.min
        if other.max > self.max:
            self.max = other.max

    @property
    def avg(self) -> float:
        return self.sum / self.count

    def quantile(self, q: float) -> float | None:
        """The ``q`` quantile as the library reads it, never above the exact maximum."""
        if not self.count:
            return None
        reader = BaseDDSketch(
            MAPPING,
            SparseStore.holding(self.positive, self.positive_count),
            SparseStore.holding(self.negative, self.negative_count),
            self.zero,
        )
        value = reader.get_quantile_value(q)
        return None if value is None else min(float(value), self.max)

    def bin_values(self) -> list[tuple[float, float]]:
        """``(representative value, weight)`` per positive bin (the prompt histogram)."""
        value = MAPPING.value
        return [(value(key), weight) for key, weight in self.positive.items()]


def _merge_bins(mine: dict[int, float], theirs: dict[int, float]) -> None:
    for key, weight in theirs.items():
        mine[key] = mine.get(key, 0.0) + weight


class SparseStore(Store):
    """DDSketch bins as a dict holding only the bins in use (the library's ``Store``
    interface, so ``BaseDDSketch`` can read a :class:`Sketch`'s bins in place)."""

    def __init__(self) -> None:
        super().__init__()
        self.bins: dict[int, float] = {}

    @classmethod
    def holding(cls, bins: dict[int, float], count: float) -> SparseStore:
        store = cls()
        store.bins = bins
        store.count = count
        return store

    def copy(self, store: SparseStore) -> None:
        self.bins = dict(store.bins)
        self.count = store.count

    def length(self) -> int:
        return len(self.bins)

    def add(self, key: int, weight: float = 1.0) -> None:
        bins = self.bins
        bins[key] = bins.get(key, 0.0) + weight
        self.count += weight

    def key_at_rank(self, rank: float, lower: bool = True) -> int:
        running = 0.0
        for key in sorted(self.bins):
            running += self.bins[key]
            if (lower and running > rank) or (not lower and running >= rank + 1):
                return key
        return max(self.bins, default=0)

    def merge(self, store: SparseStore) -> None:
        _merge_bins(self.bins, store.bins)
        self.count += store.count
