"""DDSketch quantile sketches over a sparse bin store, and reading a quantile from one.

The library's dense bin store grows and re-centres a list as a fresh sketch meets new
values, which dominated ``add`` for our many small per-bucket sketches; :class:`SparseStore`
plugs into the library's ``Store`` interface with a dict of the occupied bins only.  The
mapping, and so the accuracy guarantee, is the library's.

Moving a sketch between processes as plain values reads and writes ``BaseDDSketch``'s
own fields, which no release promises to keep: pyproject pins ddsketch to the releases
``tests/test_sketch_contract.py`` checks.
"""

from __future__ import annotations

from ddsketch.ddsketch import BaseDDSketch
from ddsketch.mapping import LogarithmicMapping
from ddsketch.store import Store

RELATIVE_ACCURACY = 0.005


class SparseStore(Store):
    """DDSketch bins as a dict holding only the bins in use."""

    def __init__(self) -> None:
        super().__init__()
        self.bins: dict[int, float] = {}

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
        bins = self.bins
        for key, weight in store.bins.items():
            bins[key] = bins.get(key, 0.0) + weight
        self.count += store.count


# One mapping for every sketch: it is immutable, and sketches merge only if theirs match.
_MAPPING = LogarithmicMapping(RELATIVE_ACCURACY)


def new_sketch() -> BaseDDSketch:
    return BaseDDSketch(_MAPPING, SparseStore(), SparseStore(), 0.0)


# A sketch as plain values: (positive bins, their count, negative bins, their count,
# zero count, count, sum, min, max), or None when it holds nothing.
SketchState = tuple[
    dict[int, float], float, dict[int, float], float, float, float, float, float, float
]


def sketch_state(sketch: BaseDDSketch) -> SketchState | None:
    """Everything a sketch holds, as plain values (see :func:`merge_sketch_state`).

    The library's objects pickle as they are, but loading one (an abstract base class
    instance with a mapping and two stores) is slow, and the event loop would load one
    per model and batch.  The fields are read as the library's ``_copy`` does.
    """
    if not sketch._count:
        return None
    positive, negative = sketch._store, sketch._negative_store
    return (
        positive.bins,
        positive.count,
        negative.bins,
        negative.count,
        sketch._zero_count,
        sketch._count,
        sketch._sum,
        sketch._min,
        sketch._max,
    )


def merge_sketch_state(sketch: BaseDDSketch, state: SketchState) -> None:
    """Fold a :func:`sketch_state` into ``sketch``: exactly the library's ``merge``
    (both use the one mapping), without building a sketch first."""
    positive, positive_count, negative, negative_count, zero, count, total, low, high = state
    _merge_bins(sketch._store, positive, positive_count)
    if negative_count:
        _merge_bins(sketch._negative_store, negative, negative_count)
    sketch._zero_count += zero
    sketch._count += count
    sketch._sum += total
    if low < sketch._min:
        sketch._min = low
    if high > sketch._max:
        sketch._max = high


def _merge_bins(store: SparseStore, bins: dict[int, float], count: float) -> None:
    mine = store.bins
    for key, weight in bins.items():
        mine[key] = mine.get(key, 0.0) + weight
    store.count += count


def quantile(sketch: BaseDDSketch, q: float, maximum: float) -> float | None:
    """The sketch's ``q`` quantile, never above the exact maximum it has seen."""
    if sketch.count == 0:
        return None
    value = sketch.get_quantile_value(q)
    return None if value is None else min(float(value), maximum)
