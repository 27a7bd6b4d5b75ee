"""What pulse_proxy.stats relies on in ddsketch: its public API, and the same answers.

:class:`~pulse_proxy.stats.sketch.Sketch` files values with the library's mapping
(``key``, ``value``, ``min_possible``) and reads quantiles with ``BaseDDSketch`` over a
``Store`` of its own.  These tests fail on a release that changes any of that, before a
wrong percentile reaches a dashboard: the sketch must answer exactly as the library's own
``DDSketch`` does for the same values, merged or not.
"""

from __future__ import annotations

import random

import msgspec
from ddsketch import DDSketch
from ddsketch.store import Store

from pulse_proxy.stats.sketch import RELATIVE_ACCURACY, Sketch, SparseStore

VALUES = [-3.5, -0.25, 0.0, 0.0, 0.5, 12.0, 250.0, 250.0, 4_000.0]
QUANTILES = (0.0, 0.01, 0.1, 0.25, 0.5, 0.75, 0.9, 0.99, 1.0)


def _both(values: list[float]) -> tuple[Sketch, DDSketch]:
    ours, theirs = Sketch(), DDSketch(RELATIVE_ACCURACY)
    for value in values:
        ours.add(value)
        theirs.add(value)
    return ours, theirs


def _assert_same(ours: Sketch, theirs: DDSketch) -> None:
    assert (ours.count, ours.sum) == (theirs.count, theirs.sum)
    assert ours.avg == theirs.avg
    for q in QUANTILES:
        expected = theirs.get_quantile_value(q)
        assert expected is not None
        # Ours never reads above the exact maximum; the library's may, by its accuracy.
        assert ours.quantile(q) == min(expected, ours.max), q


def test_the_sparse_store_is_still_a_store() -> None:
    """The library's ``Store`` interface has not grown a method the sparse store lacks."""
    assert Store.__abstractmethods__ <= set(vars(SparseStore))
    assert not SparseStore.__abstractmethods__


def test_quantiles_are_the_librarys_own() -> None:
    """Negative, zero and positive values, and a long-tailed sample: every quantile is
    the one ddsketch's own DDSketch gives."""
    rng = random.Random(5)
    _assert_same(*_both(VALUES))
    _assert_same(*_both([rng.lognormvariate(5, 1.5) for _ in range(2_000)] + VALUES))


def test_a_merge_is_the_librarys_own_merge() -> None:
    """Two sketches merged give the figures of the library's merge of the same two."""
    rng = random.Random(7)
    first = [rng.lognormvariate(5, 1.5) for _ in range(300)] + VALUES
    second = [rng.lognormvariate(7, 0.5) for _ in range(200)] + [-9.0, 0.0]
    ours, theirs = _both(first)
    other, their_other = _both(second)
    ours.merge(other)
    theirs.merge(their_other)
    _assert_same(ours, theirs)
    assert (ours.min, ours.max) == (min(first + second), max(first + second))


def test_a_sketch_crosses_as_its_values() -> None:
    """Encoded and decoded, as a batch's figures are, a sketch reads the same."""
    ours, theirs = _both(VALUES)
    back = msgspec.msgpack.decode(msgspec.msgpack.encode(ours), type=Sketch)
    assert back == ours
    _assert_same(back, theirs)


def test_an_empty_sketch_reads_nothing() -> None:
    sketch = Sketch()
    assert sketch.count == 0 and sketch.quantile(0.5) is None
    sketch.merge(Sketch())
    assert sketch == Sketch()
