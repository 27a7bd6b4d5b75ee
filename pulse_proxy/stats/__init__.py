"""Rolling request statistics in bounded memory: the figures behind /pulse/stats and alerts.

Every finished :class:`~pulse_proxy.records.Exchange` lands in a *time bucket* keyed by
its ``ended_at``.  A bucket holds one :class:`Aggregate` per model: counters, sums and
DDSketch quantile sketches, all mergeable, so a window is just the merge of its buckets
and no raw sample is ever kept.  Memory is bounded by the number of buckets times the
number of models, never by traffic:

* a *fine* ring of 10 s buckets covers the last 5 minutes (the 1 m and 5 m windows);
* a *coarse* ring of 60 s buckets covers the last hour (the 1 h window, baselines);
* past ``max_models`` distinct names, further models fold into ``"other"``.

Records arrive in batches already summed where they were accounted (a
:class:`StatsTally`, one ``Aggregate`` per model and fine bucket, the very Struct the
windows hold), so
:meth:`RollingStats.merge` costs the event loop one merge per model, not per record.  When
a fine bucket closes (a later bucket opens, or a query finds time has moved on) its
overall aggregate is computed once and the bucket is folded into its coarse bucket.  A
record that arrives after its bucket closed takes a slower path that updates both rings.

Sketches are DDSketch (``ddsketch`` on PyPI, pure Python, depends only on ``six``) with
``RELATIVE_ACCURACY = 0.005``: every quantile is within 0.5 % of the exact sample at that
rank, half of the 1 % the product promises, so the promise holds whichever percentile
definition the reader compares against.  The library's dense bin store grows and
re-centres a list as a fresh sketch meets new values, which dominated ``add`` for our
many small per-bucket sketches; a :class:`Sketch` keeps a dict of the occupied bins only
(faster to fill and merge, and smaller) and reads quantiles through the library's public
API.  The mapping, and so the accuracy guarantee, is the library's.

What lives where:

* :mod:`~pulse_proxy.stats.sketch`: ``Sketch`` and the ``SparseStore`` it is read through;
* :mod:`~pulse_proxy.stats.metrics`: ``SUPPORTED_STATS``, ``QUANTILES``, ``Measurement``;
* :mod:`~pulse_proxy.stats.aggregate`: ``Aggregate`` of one slice of traffic, ``merge_all``;
* :mod:`~pulse_proxy.stats.rings`: the fine and coarse rings of time buckets;
* :mod:`~pulse_proxy.stats.rolling`: ``RollingStats``, its ``WindowView`` and ``StatsTally``;
* :mod:`~pulse_proxy.stats.charts`: chart points and ``prompt_histogram`` for the dashboard;
* :mod:`~pulse_proxy.stats.display`: ``window_label`` and rounding for the JSON bodies.
"""

from __future__ import annotations

from pulse_proxy.stats.aggregate import Aggregate, merge_all
from pulse_proxy.stats.charts import prompt_histogram
from pulse_proxy.stats.display import window_label
from pulse_proxy.stats.metrics import QUANTILES, SUPPORTED_STATS, Measurement
from pulse_proxy.stats.rolling import (
    OTHER_MODEL,
    UNKNOWN_MODEL,
    RollingStats,
    StatsTally,
    WindowView,
)
from pulse_proxy.stats.sketch import RELATIVE_ACCURACY, Sketch, SparseStore

__all__ = [
    "OTHER_MODEL",
    "QUANTILES",
    "RELATIVE_ACCURACY",
    "SUPPORTED_STATS",
    "UNKNOWN_MODEL",
    "Aggregate",
    "Measurement",
    "RollingStats",
    "Sketch",
    "SparseStore",
    "StatsTally",
    "WindowView",
    "merge_all",
    "prompt_histogram",
    "window_label",
]
