"""What pulse_proxy.stats relies on inside ddsketch, beyond its public API.

``sketch.py`` moves a sketch between processes as plain values and folds them back in,
and ``charts.py`` reads bins, reading and writing the fields ``BaseDDSketch`` keeps for
itself (``_store``, ``_count``, ``_min``...).  pyproject pins ddsketch to the releases
checked here; these tests fail on a release that renames those fields or stops keeping
them the way ``add`` and ``merge`` do, before a wrong percentile reaches a dashboard.
"""

from __future__ import annotations

import random

from ddsketch.ddsketch import BaseDDSketch
from ddsketch.store import Store

from pulse_proxy.stats.sketch import (
    SparseStore,
    merge_sketch_state,
    new_sketch,
    sketch_state,
)

VALUES = [-3.5, -0.25, 0.0, 0.0, 0.5, 12.0, 250.0, 250.0, 4_000.0]


def _filled(values: list[float]) -> BaseDDSketch:
    sketch = new_sketch()
    for value in values:
        sketch.add(value)
    return sketch


def test_the_fields_read_and_written_are_the_ones_add_keeps() -> None:
    """``add`` files values in ``_store``/``_negative_store``/``_zero_count`` and keeps
    ``_count``, ``_sum``, ``_min``, ``_max``: the very fields ``sketch_state`` reads."""
    sketch = _filled(VALUES)
    assert isinstance(sketch._store, SparseStore) and isinstance(
        sketch._negative_store, SparseStore
    )
    assert sketch._store.count == 5 and sketch._negative_store.count == 2
    assert sketch._zero_count == 2
    assert sketch._count == len(VALUES) == sketch.count
    assert sketch._sum == sum(VALUES) == sketch.sum
    assert (sketch._min, sketch._max) == (min(VALUES), max(VALUES))
    # charts.py turns a bin key back into a value through the sketch's mapping.
    key = max(sketch._store.bins)
    assert abs(sketch._mapping.value(key) - 4_000.0) <= 4_000.0 * sketch._mapping.relative_accuracy


def test_the_sparse_store_is_still_a_store() -> None:
    """The library's ``Store`` interface has not grown a method the sparse store lacks."""
    assert Store.__abstractmethods__ <= set(vars(SparseStore))
    assert not SparseStore.__abstractmethods__


def test_folding_a_state_in_is_the_librarys_own_merge() -> None:
    """``merge_sketch_state`` leaves a sketch exactly as the library's ``merge`` of the
    same sketch would: counts, sum, extremes and every quantile."""
    rng = random.Random(5)
    ours = _filled([rng.lognormvariate(5, 1.5) for _ in range(300)] + VALUES)
    other = _filled([rng.lognormvariate(7, 0.5) for _ in range(200)] + [-9.0, 0.0])
    theirs = _filled([])
    theirs.merge(ours)
    theirs.merge(other)

    state = sketch_state(other)
    assert state is not None
    merge_sketch_state(ours, state)

    assert (ours.count, ours.sum, ours.avg) == (theirs.count, theirs.sum, theirs.avg)
    assert (ours._min, ours._max, ours._zero_count) == (
        theirs._min,
        theirs._max,
        theirs._zero_count,
    )
    for q in (0.0, 0.01, 0.1, 0.25, 0.5, 0.75, 0.9, 0.99, 1.0):
        assert ours.get_quantile_value(q) == theirs.get_quantile_value(q), q


def test_an_empty_sketch_has_no_state() -> None:
    """An empty sketch is sent as nothing, and ``count`` still reads ``_count``."""
    sketch = new_sketch()
    assert sketch.count == 0 and sketch_state(sketch) is None
