"""Rolling request statistics in bounded memory: the figures behind /pulse/stats and alerts.

Every finished :class:`~pulse_proxy.records.Exchange` lands in a *time bucket* keyed by
its ``ended_at``.  A bucket holds one :class:`Aggregate` per model: counters, sums and
DDSketch quantile sketches, all mergeable, so a window is just the merge of its buckets
and no raw sample is ever kept.  Memory is bounded by the number of buckets times the
number of models, never by traffic:

* a *fine* ring of 10 s buckets covers the last 5 minutes (the 1 m and 5 m windows);
* a *coarse* ring of 60 s buckets covers the last hour (the 1 h window, baselines);
* past ``max_models`` distinct names, further models fold into ``"other"``.

To keep :meth:`RollingStats.add` cheap it touches only one fine-bucket aggregate.  When
a fine bucket closes (a later bucket opens, or a query finds time has moved on) its
overall aggregate is computed once and the bucket is folded into its coarse bucket.  A
record that arrives after its bucket closed takes a slower path that updates both rings.

Sketches are DDSketch (``ddsketch`` on PyPI, pure Python, depends only on ``six``) with
``RELATIVE_ACCURACY = 0.005``: every quantile is within 0.5 % of the exact sample at that
rank, half of the 1 % the product promises, so the promise holds whichever percentile
definition the reader compares against.  The library's dense bin store grows and
re-centres a list as a fresh sketch meets new values, which dominated ``add`` for our
many small per-bucket sketches; :class:`SparseStore` plugs into the library's ``Store``
interface with a dict of the occupied bins only (about 3× faster to fill, 2× faster to
merge, and smaller).  The mapping, and so the accuracy guarantee, is the library's.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, cast

from ddsketch.ddsketch import BaseDDSketch
from ddsketch.mapping import LogarithmicMapping
from ddsketch.store import Store

from pulse_proxy.records import ERROR_OUTCOMES, Exchange
from pulse_proxy.sinks.log import rfc3339

RELATIVE_ACCURACY = 0.005
OTHER_MODEL = "other"
UNKNOWN_MODEL = "unknown"

QUANTILES = {"p50": 0.50, "p95": 0.95, "p99": 0.99}
_DISTRIBUTION_STATS = frozenset({"p50", "p95", "p99", "max", "mean", "sum", "count"})

# Which statistic each metric answers; the alert rules are validated against this.
# ``rate`` is per second, except for ``error_rate`` (errors / requests) and
# ``tokens_per_minute`` (total tokens per minute).
SUPPORTED_STATS: dict[str, frozenset[str]] = {
    "latency_ms": _DISTRIBUTION_STATS,
    "ttft_ms": _DISTRIBUTION_STATS,
    "prompt_tokens": _DISTRIBUTION_STATS,
    "total_tokens": frozenset({"max", "mean", "sum", "count", "rate"}),
    "cost_usd": frozenset({"mean", "sum", "count", "rate"}),
    "requests": frozenset({"count", "rate"}),
    "error_rate": frozenset({"rate", "mean", "sum", "count"}),
    "tokens_per_minute": frozenset({"rate", "sum", "count"}),
}


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


def quantile(sketch: BaseDDSketch, q: float, maximum: float) -> float | None:
    """The sketch's ``q`` quantile, never above the exact maximum it has seen."""
    if sketch.count == 0:
        return None
    value = sketch.get_quantile_value(q)
    return None if value is None else min(float(value), maximum)


def window_label(window_s: float) -> str:
    """``60`` -> ``"1m"``, ``3600`` -> ``"1h"``: the keys of the /pulse/stats body."""
    seconds = int(window_s)
    if seconds % 3600 == 0:
        return f"{seconds // 3600}h"
    if seconds % 60 == 0:
        return f"{seconds // 60}m"
    return f"{seconds}s"


def _r(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(value, digits)


@dataclass(frozen=True, slots=True)
class Measurement:
    """One statistic over one window, with the number of samples behind it."""

    value: float | None
    samples: int


class Aggregate:
    """Counters, sums and sketches for a set of requests; two aggregates merge exactly."""

    __slots__ = (
        "completion_sum",
        "cost_requests",
        "cost_sum",
        "drift_requests",
        "drift_sum",
        "errors",
        "latency",
        "latency_max",
        "outcomes",
        "prompt",
        "prompt_max",
        "prompt_sum",
        "requests",
        "token_requests",
        "total_max",
        "total_sum",
        "ttft",
        "ttft_max",
    )

    def __init__(self) -> None:
        self.requests = 0
        self.errors = 0
        self.outcomes: dict[str, int] = {}
        self.latency = new_sketch()
        self.latency_max = -math.inf
        self.ttft = new_sketch()
        self.ttft_max = -math.inf
        self.prompt = new_sketch()
        self.prompt_max = -math.inf
        self.prompt_sum = 0
        self.completion_sum = 0
        self.total_sum = 0
        self.total_max = -math.inf
        self.token_requests = 0
        self.cost_sum = 0.0
        self.cost_requests = 0
        self.drift_sum = 0
        self.drift_requests = 0

    def add(self, ex: Exchange) -> None:
        """Count one request (the hot loop of the statistics: plain attribute updates)."""
        self.requests += 1
        outcome = ex.outcome
        if outcome in ERROR_OUTCOMES:
            self.errors += 1
        self.outcomes[outcome] = self.outcomes.get(outcome, 0) + 1
        value: Any = ex.latency_ms
        if value is not None:
            self.latency.add(value)
            self.latency_max = max(self.latency_max, value)
        value = ex.ttft_ms
        if value is not None:
            self.ttft.add(value)
            self.ttft_max = max(self.ttft_max, value)
        prompt = ex.prompt_tokens
        completion = ex.completion_tokens
        if prompt is not None:
            self.prompt.add(prompt)
            self.prompt_sum += prompt
            self.prompt_max = max(self.prompt_max, prompt)
            local = ex.prompt_tokens_local
            if local is not None:
                self.drift_sum += prompt - local
                self.drift_requests += 1
        if completion is not None:
            self.completion_sum += completion
        total = ex.total_tokens
        if total is None and (prompt is not None or completion is not None):
            total = (prompt or 0) + (completion or 0)
        if total is not None:
            self.total_sum += total
            self.token_requests += 1
            self.total_max = max(self.total_max, total)
        cost = ex.cost_usd
        if cost is not None:
            self.cost_sum += cost
            self.cost_requests += 1

    def merge(self, other: Aggregate) -> None:
        """Fold ``other`` in, as if its requests had been added here."""
        if other.requests == 0:
            return
        self.requests += other.requests
        self.errors += other.errors
        for outcome, count in other.outcomes.items():
            self.outcomes[outcome] = self.outcomes.get(outcome, 0) + count
        self.latency.merge(other.latency)
        self.latency_max = max(self.latency_max, other.latency_max)
        self.ttft.merge(other.ttft)
        self.ttft_max = max(self.ttft_max, other.ttft_max)
        self.prompt.merge(other.prompt)
        self.prompt_max = max(self.prompt_max, other.prompt_max)
        self.prompt_sum += other.prompt_sum
        self.completion_sum += other.completion_sum
        self.total_sum += other.total_sum
        self.total_max = max(self.total_max, other.total_max)
        self.token_requests += other.token_requests
        self.cost_sum += other.cost_sum
        self.cost_requests += other.cost_requests
        self.drift_sum += other.drift_sum
        self.drift_requests += other.drift_requests

    def distribution(self, metric: str) -> tuple[BaseDDSketch, float]:
        if metric == "latency_ms":
            return self.latency, self.latency_max
        if metric == "ttft_ms":
            return self.ttft, self.ttft_max
        if metric == "prompt_tokens":
            return self.prompt, self.prompt_max
        raise ValueError(f"{metric} has no distribution")

    def measure(self, metric: str, stat: str, span_s: float) -> Measurement:
        """``stat`` of ``metric`` over these requests, ``span_s`` seconds of them (for rates)."""
        if stat not in SUPPORTED_STATS.get(metric, ()):
            raise ValueError(f"unsupported metric/stat pair: {metric}/{stat}")
        span = max(span_s, 1e-9)
        if metric in ("latency_ms", "ttft_ms", "prompt_tokens"):
            sketch, maximum = self.distribution(metric)
            n = int(sketch.count)
            if n == 0:
                return Measurement(None, 0)
            if stat in QUANTILES:
                return Measurement(quantile(sketch, QUANTILES[stat], maximum), n)
            figures = {"max": maximum, "mean": sketch.avg, "sum": sketch.sum, "count": n}
            return Measurement(float(figures[stat]), n)
        if metric == "requests":
            n = self.requests
            return Measurement(float(n) if stat == "count" else n / span, n)
        if metric == "error_rate":
            n = self.requests
            if stat == "count":
                return Measurement(float(n), n)
            if stat == "sum":
                return Measurement(float(self.errors), n)
            return Measurement(self.errors / n if n else None, n)
        if metric == "tokens_per_minute":
            n = self.token_requests
            figures = {"rate": self.total_sum / span * 60.0, "sum": self.total_sum, "count": n}
            return Measurement(float(figures[stat]), n)
        if metric == "total_tokens":
            n, total, top = self.token_requests, float(self.total_sum), self.total_max
        else:  # cost_usd
            n, total, top = self.cost_requests, self.cost_sum, -math.inf
        if stat == "count":
            return Measurement(float(n), n)
        if stat == "sum":
            return Measurement(total, n)
        if stat == "rate":
            return Measurement(total / span, n)
        if n == 0:
            return Measurement(None, 0)
        return Measurement(total / n if stat == "mean" else float(top), n)

    def _dist_summary(self, metric: str) -> dict[str, float | int | None]:
        sketch, maximum = self.distribution(metric)
        n = int(sketch.count)
        summary: dict[str, float | int | None] = {"count": n}
        summary["mean"] = _r(sketch.avg) if n else None
        for name, q in QUANTILES.items():
            summary[name] = _r(quantile(sketch, q, maximum))
        summary["max"] = _r(float(maximum)) if n else None
        return summary

    def summary(self, span_s: float) -> dict[str, Any]:
        """The figures of one scope (overall or one model) for the /pulse/stats body."""
        span = max(span_s, 1e-9)
        n = self.requests
        prompt = self._dist_summary("prompt_tokens")
        prompt["sum"] = self.prompt_sum
        return {
            "requests": n,
            "rate_per_s": _r(n / span, 4),
            "errors": self.errors,
            "error_rate": _r(self.errors / n, 4) if n else None,
            "outcomes": dict(sorted(self.outcomes.items())),
            "latency_ms": self._dist_summary("latency_ms"),
            "ttft_ms": self._dist_summary("ttft_ms"),
            "prompt_tokens": prompt,
            "tokens": {
                "prompt": self.prompt_sum,
                "completion": self.completion_sum,
                "total": self.total_sum,
                "per_minute": _r(self.total_sum / span * 60.0, 1),
                "per_request": _r(self.total_sum / self.token_requests, 1)
                if self.token_requests
                else None,
            },
            "cost_usd": {
                "sum": self.cost_sum if self.cost_requests else None,
                "priced_requests": self.cost_requests,
            },
            "token_drift": {
                "sum": self.drift_sum,
                "mean": _r(self.drift_sum / self.drift_requests) if self.drift_requests else None,
                "count": self.drift_requests,
            },
        }


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

    def add(self, model: str, ex: Exchange) -> None:
        self.model(model).add(ex)
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


@dataclass(frozen=True, slots=True)
class WindowView:
    """The merged figures of one window (one model or overall) and how long it spans."""

    window_s: float
    start: float
    end: float
    aggregate: Aggregate

    @property
    def span_s(self) -> float:
        return max(self.end - self.start, 0.0)

    def measure(self, metric: str, stat: str) -> Measurement:
        return self.aggregate.measure(metric, stat, self.span_s)

    def summary(self) -> dict[str, Any]:
        body = {"window_s": self.window_s, "span_s": _r(self.span_s, 1)}
        body.update(self.aggregate.summary(self.span_s))
        return body


class RollingStats:
    """1 m / 5 m / 1 h windows, overall and per model, from a stream of exchanges.

    ``clock`` is the notion of *now* for queries (tests drive it); records are bucketed
    by their own ``ended_at``.  Safe to call from several threads.
    """

    def __init__(
        self,
        *,
        clock: Callable[[], float] = time.time,
        windows: Sequence[int] = (60, 300, 3600),
        max_models: int = 50,
        fine_s: int = 10,
        fine_span_s: int = 300,
        coarse_s: int = 60,
    ) -> None:
        if coarse_s % fine_s:
            raise ValueError("coarse_s must be a multiple of fine_s")
        if not windows or min(windows) <= 0:
            raise ValueError("windows must be positive")
        self.windows = tuple(windows)
        self.max_models = max_models
        self._clock = clock
        self._fine_s = fine_s
        self._fine_span_s = fine_span_s
        self._coarse_s = coarse_s
        self.horizon_s = max(max(self.windows), fine_span_s)
        # One slot more than the span, so the oldest bucket of a full window is still there.
        self._fine: list[_Bucket | None] = [None] * (math.ceil(fine_span_s / fine_s) + 1)
        self._coarse: list[_Bucket | None] = [None] * (math.ceil(self.horizon_s / coarse_s) + 2)
        self._coarse_head = -(2**62)
        self._open: list[_Bucket] = []
        self._head: _Bucket | None = None
        self._models: dict[str, float] = {}
        self._next_eviction = -math.inf
        self._started_at = clock()
        self._lock = threading.Lock()
        self.dropped_late = 0

    # -- ingestion -----------------------------------------------------------------

    def add(self, ex: Exchange) -> None:
        """Count one finished request.  Off the request path, but called per request."""
        t = ex.ended_at
        index = int(t // self._fine_s)
        with self._lock:
            self._started_at = min(self._started_at, t)
            model = self._model_key(ex.model or ex.response_model or UNKNOWN_MODEL, t)
            bucket = self._head
            if bucket is None or bucket.index != index:
                bucket = self._fine_bucket(index)
            if bucket is None:  # older than the fine ring: straight into the hour
                self._add_coarse(index * self._fine_s, model, ex)
                return
            if not bucket.closed:
                bucket.model(model).add(ex)
            else:  # a late record for a bucket already folded into the hour
                bucket.add(model, ex)
                self._add_coarse(bucket.index * self._fine_s, model, ex)

    def _model_key(self, name: str, t: float) -> str:
        models = self._models
        if name in models:
            models[name] = max(models[name], t)
            return name
        if len(models) >= self.max_models and t >= self._next_eviction:
            # Names unseen for longer than every window have no data left: free them.
            # Checked at most once per fine bucket, so a flood of junk names stays cheap.
            self._next_eviction = t + self._fine_s
            expired = t - self.horizon_s - self._coarse_s
            for stale in [m for m, seen in models.items() if seen < expired]:
                del models[stale]
        if len(models) < self.max_models:
            models[name] = t
            return name
        return OTHER_MODEL

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

    def _add_coarse(self, t: float, model: str, ex: Exchange) -> None:
        coarse = self._coarse_bucket(int(t // self._coarse_s))
        if coarse is None:
            self.dropped_late += 1
            return
        coarse.add(model, ex)

    # -- queries -------------------------------------------------------------------

    def _buckets(self, window_s: float, before_s: float) -> tuple[list[_Bucket], float, float]:
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
        start = max(first * size, self._started_at)
        end = now if before_s <= 0 else (last + 1) * size
        return buckets, start, end

    def view(self, window_s: float, *, before_s: float = 0, model: str | None = None) -> WindowView:
        """The merged figures of the window (``model`` or overall)."""
        with self._lock:
            buckets, start, end = self._buckets(window_s, before_s)
            merged = Aggregate()
            for bucket in buckets:
                if model is None:
                    merged.merge(bucket.overall())
                elif model in bucket.models:
                    merged.merge(bucket.models[model])
        return WindowView(window_s, start, end, merged)

    def measure(
        self,
        metric: str,
        stat: str,
        window_s: float,
        *,
        before_s: float = 0,
        model: str | None = None,
    ) -> Measurement:
        """``stat`` of ``metric`` over a window ending ``before_s`` seconds ago, with its sample count."""
        return self.view(window_s, before_s=before_s, model=model).measure(metric, stat)

    def snapshot(self, window_s: int, model: str | None = None) -> dict[str, Any]:
        """The figures of one window, for one model or overall."""
        return self.view(window_s, model=model).summary()

    def _window_body(self, window_s: int) -> dict[str, Any]:
        with self._lock:
            buckets, start, end = self._buckets(window_s, 0)
            models: dict[str, Aggregate] = {}
            for bucket in buckets:
                for name, aggregate in bucket.models.items():
                    models.setdefault(name, Aggregate()).merge(aggregate)
            overall = merge_all(models.values())  # a few merges, not one per bucket
        span = end - start
        ordered = sorted(models.items(), key=lambda item: (-item[1].requests, item[0]))
        return {
            "window_s": window_s,
            "span_s": _r(span, 1),
            "overall": overall.summary(span),
            "models": {name: aggregate.summary(span) for name, aggregate in ordered},
        }

    def window(self, window_s: int) -> dict[str, Any]:
        """One window of ``/pulse/stats``: overall and per model."""
        return self._window_body(window_s)

    def to_json(self) -> dict[str, Any]:
        """The whole ``GET /pulse/stats`` body."""
        return {
            "generated_at": rfc3339(self._clock()),
            "windows": {window_label(w): self._window_body(w) for w in self.windows},
        }

    def step_s(self, window_s: int) -> int:
        """Seconds between two points of :meth:`series` over ``window_s``."""
        return self._fine_s if window_s <= self._fine_span_s else self._coarse_s

    def series(self, window_s: int, model: str | None = None) -> list[dict[str, Any]]:
        """Per-bucket points over the window (10 s points up to 5 min, else 60 s), for
        the dashboard's charts; ``model`` narrows them to one model's requests.

        Every slot of the window gets a point, empty ones too, so a chart's x axis is
        regular and a quiet minute shows as a gap rather than being skipped.
        """
        with self._lock:
            buckets, _, _ = self._buckets(window_s, 0)
            fine = window_s <= self._fine_span_s
            size = self._fine_s if fine else self._coarse_s
            per = 1 if fine else self._coarse_s // self._fine_s
            now_index = int(self._clock() // size)
            first = now_index - max(1, math.ceil(window_s / size)) + 1
            slices: dict[int, Aggregate] = {}
            for bucket in buckets:
                part = bucket.overall() if model is None else bucket.models.get(model)
                if part is None:
                    continue
                is_open_fine = not fine and bucket in self._open
                index = bucket.index // per if is_open_fine else bucket.index
                slices.setdefault(index, Aggregate()).merge(part)
        return [
            _point(index * size, size, slices.get(index)) for index in range(first, now_index + 1)
        ]

    def prompt_histogram(self, window_s: int, model: str | None = None) -> dict[str, Any]:
        """The window's prompt lengths as log2 bins, read from its prompt-token sketch."""
        return prompt_histogram(self.view(window_s, model=model).aggregate)

    def chart(self, window_s: int, model: str | None = None) -> dict[str, Any]:
        """The ``GET /pulse/series`` body: time series and prompt-length distribution."""
        return {
            "generated_at": rfc3339(self._clock()),
            "window": window_label(window_s),
            "window_s": window_s,
            "step_s": self.step_s(window_s),
            "model": model,
            "models": self.models(),
            "points": self.series(window_s, model),
            "prompt_histogram": self.prompt_histogram(window_s, model),
        }

    def models(self) -> list[str]:
        """The model names that currently have their own slot."""
        with self._lock:
            return sorted(self._models)


def _point(t: float, step_s: float, aggregate: Aggregate | None) -> dict[str, Any]:
    """One time slot of a chart.  Per-minute figures divide by the whole slot, so the
    slot still filling up reads low until it closes."""
    a = aggregate or Aggregate()
    per_request = a.total_sum / a.token_requests if a.token_requests else None
    return {
        "t": t,
        "requests": a.requests,
        "errors": a.errors,
        "error_rate": _r(a.errors / a.requests, 4) if a.requests else None,
        "latency_p50": _r(quantile(a.latency, 0.5, a.latency_max)),
        "latency_p95": _r(quantile(a.latency, 0.95, a.latency_max)),
        "tokens": a.total_sum,
        "prompt_tokens": a.prompt_sum,
        "completion_tokens": a.completion_sum,
        "tokens_per_request": _r(per_request, 1),
        "tokens_per_minute": _r(a.total_sum / step_s * 60.0, 1),
        "prompt_p95": _r(quantile(a.prompt, 0.95, a.prompt_max)),
        "prompt_max": float(a.prompt_max) if a.prompt.count else None,
    }


def prompt_histogram(aggregate: Aggregate) -> dict[str, Any]:
    """Prompt lengths in bins ``[2^k, 2^(k+1))`` (plus ``[0, 1)``), from the sketch.

    A sketch bin is 1 % wide, so its representative value, rounded to whole tokens, lands
    in the right power-of-two bin except within 0.5 % of a bin edge above ~100 tokens.
    Empty bins between the shortest and the longest prompt are kept, so the bars are a
    continuous axis.
    """
    sketch = aggregate.prompt
    counts: dict[int, float] = {}
    zero = float(sketch._zero_count)
    store = cast(SparseStore, sketch._store)  # every sketch here is built by new_sketch()
    for key, weight in store.bins.items():
        tokens = max(1, round(sketch._mapping.value(key)))
        exponent = tokens.bit_length() - 1
        counts[exponent] = counts.get(exponent, 0.0) + weight
    bins: list[dict[str, Any]] = []
    if zero:
        bins.append({"lo": 0, "hi": 1, "count": int(zero)})
    if counts:
        for exponent in range(min(counts), max(counts) + 1):
            bins.append(
                {
                    "lo": 2**exponent,
                    "hi": 2 ** (exponent + 1),
                    "count": int(counts.get(exponent, 0)),
                }
            )
    n = int(sketch.count)
    return {
        "count": n,
        "p50": _r(quantile(sketch, 0.5, aggregate.prompt_max)),
        "p95": _r(quantile(sketch, 0.95, aggregate.prompt_max)),
        "max": float(aggregate.prompt_max) if n else None,
        "bins": bins,
    }


def merge_all(aggregates: Iterable[Aggregate]) -> Aggregate:
    """One aggregate of many (the report's overall figures)."""
    merged = Aggregate()
    for aggregate in aggregates:
        merged.merge(aggregate)
    return merged
