"""RollingStats: the 1 m / 5 m / 1 h windows of traffic, overall and per model.

Records are counted into time buckets (see :mod:`pulse_proxy.stats.rings`) under one
lock; every query merges the buckets its window covers into one :class:`WindowView`,
or into the bodies of ``/pulse/stats`` and the dashboard's ``/pulse/series``.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from msgspec import Struct

from pulse_proxy.records import Exchange
from pulse_proxy.sinks.log import rfc3339
from pulse_proxy.stats.aggregate import Aggregate, merge_all
from pulse_proxy.stats.charts import _point, prompt_histogram
from pulse_proxy.stats.display import _r, window_label
from pulse_proxy.stats.metrics import Measurement
from pulse_proxy.stats.rings import BucketRings

OTHER_MODEL = "other"
FINE_S = 10  # seconds per fine bucket
UNKNOWN_MODEL = "unknown"


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


class StatsPart(Struct, array_like=True):
    """One model's requests in one fine bucket, and when the latest of them ended
    (how long the model's name stays in use)."""

    aggregate: Aggregate
    latest: float


class StatsTally(Struct, array_like=True):
    """A batch of records summed per (fine bucket, model): what :meth:`RollingStats.merge` files.

    Built where the batch is accounted (the accounting process), so the event loop
    merges one aggregate per model and bucket instead of adding every record.
    """

    fine_s: int = FINE_S
    earliest: float = math.inf
    # (fine bucket index, model name) -> its part
    parts: dict[tuple[int, str], StatsPart] = {}

    def add(self, ex: Exchange) -> None:
        t = ex.ended_at
        key = (int(t // self.fine_s), ex.model or ex.response_model or UNKNOWN_MODEL)
        part = self.parts.get(key)
        if part is None:
            part = self.parts[key] = StatsPart(Aggregate(), t)
        elif t > part.latest:
            part.latest = t
        part.aggregate.add(ex)
        if t < self.earliest:
            self.earliest = t


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
        fine_s: int = FINE_S,
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
        self.horizon_s = max(*self.windows, fine_span_s)
        self._rings = BucketRings(
            clock=clock,
            horizon_s=self.horizon_s,
            fine_s=fine_s,
            fine_span_s=fine_span_s,
            coarse_s=coarse_s,
        )
        self._models: dict[str, float] = {}
        self._next_eviction = -math.inf
        self._started_at = clock()
        self._lock = threading.Lock()
        self.dropped_late = 0

    # -- ingestion -----------------------------------------------------------------

    def add(self, ex: Exchange) -> None:
        """Count one finished request (the proxy merges whole batches: :meth:`merge`)."""
        tally = StatsTally(fine_s=self._fine_s)
        tally.add(ex)
        self.merge(tally)

    def merge(self, tally: StatsTally) -> None:
        """File a batch's records: one merge per model and bucket, however many records."""
        if tally.fine_s != self._fine_s:
            raise ValueError(
                f"a tally of {tally.fine_s} s buckets cannot merge into {self._fine_s} s ones"
            )
        with self._lock:
            if tally.earliest < self._started_at:
                self._started_at = tally.earliest
            for (index, name), part in tally.parts.items():
                model = self._model_key(name, part.latest)
                if not self._rings.add(index, model, part.aggregate):
                    self.dropped_late += part.aggregate.requests

    def _model_key(self, name: str, t: float) -> str:
        models = self._models
        seen = models.get(name)
        if seen is not None:
            if t > seen:
                models[name] = t
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

    # -- queries -------------------------------------------------------------------

    def view(self, window_s: float, *, before_s: float = 0, model: str | None = None) -> WindowView:
        """The merged figures of the window (``model`` or overall)."""
        with self._lock:
            buckets, start, end = self._rings.covering(window_s, before_s, self._started_at)
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
            buckets, start, end = self._rings.covering(window_s, 0, self._started_at)
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
            buckets, _, _ = self._rings.covering(window_s, 0, self._started_at)
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
                is_open_fine = not fine and self._rings.is_open(bucket)
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
