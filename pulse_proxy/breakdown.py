"""Who is spending: request, error, token and cost totals by user, key and tag.

The per-model figures in :mod:`pulse_proxy.stats` carry quantile sketches; attribution
needs only sums, so it is kept here, lighter: one row of counters per (dimension,
value) per time bucket.  Values are client-controlled, so each dimension keeps its
first ``max_values`` distinct values and folds the rest into ``other``, exactly like
metric labels; old buckets are dropped, so memory is bounded by buckets × values.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from pulse_proxy.labels import BoundedLabel
from pulse_proxy.records import Exchange
from pulse_proxy.stats import window_label

# requests, errors, prompt tokens, completion tokens, total tokens, cost (USD)
_FIELDS = ("requests", "errors", "prompt_tokens", "completion_tokens", "total_tokens", "cost_usd")
_BUCKET_S = 10
_MAX_TAG_KEYS = 20


class Breakdown:
    def __init__(
        self,
        *,
        clock: Callable[[], float] = time.time,
        windows: Sequence[int] = (60, 300, 3600),
        max_values: int = 50,
    ) -> None:
        self._clock = clock
        self.windows = tuple(windows)
        self._span = max(self.windows)
        self._max_values = max_values
        self._labels: dict[str, BoundedLabel] = {}
        self._buckets: dict[int, dict[tuple[str, str], list[float]]] = {}
        self._lock = threading.Lock()

    def _fold(self, dimension: str, value: str) -> str:
        label = self._labels.get(dimension)
        if label is None:
            if dimension.startswith("tag:") and sum(d.startswith("tag:") for d in self._labels) >= _MAX_TAG_KEYS:
                return "other"
            label = self._labels[dimension] = BoundedLabel(self._max_values)
        return label.fold(value)

    def add(self, ex: Exchange) -> None:
        keys: list[tuple[str, str]] = []
        if ex.user:
            keys.append(("user", ex.user))
        if ex.api_key_hash:
            keys.append(("api_key", ex.api_key_hash))
        for tag, value in ex.tags.items():
            keys.append((f"tag:{tag}", value))
        if not keys:
            return
        error = 1.0 if ex.is_error else 0.0
        prompt = float(ex.prompt_tokens or 0)
        completion = float(ex.completion_tokens or 0)
        total = float(ex.total_tokens or 0)
        cost = float(ex.cost_usd or 0.0)
        start = int(ex.ended_at // _BUCKET_S) * _BUCKET_S
        with self._lock:
            bucket = self._buckets.get(start)
            if bucket is None:
                self._expire()
                bucket = self._buckets[start] = {}
            for dimension, value in keys:
                key = (dimension, self._fold(dimension, value))
                totals = bucket.get(key)
                if totals is None:
                    bucket[key] = [1.0, error, prompt, completion, total, cost]
                else:  # spelled out: this runs per request, a loop costs twice as much
                    totals[0] += 1.0
                    totals[1] += error
                    totals[2] += prompt
                    totals[3] += completion
                    totals[4] += total
                    totals[5] += cost

    def _expire(self) -> None:
        oldest = self._clock() - self._span - _BUCKET_S
        for start in [s for s in self._buckets if s < oldest]:
            del self._buckets[start]

    def window(self, window_s: int) -> dict[str, dict[str, dict[str, float]]]:
        """``{dimension: {value: {requests, errors, ..., cost_usd}}}`` for one window."""
        since = self._clock() - window_s
        merged: dict[tuple[str, str], list[float]] = {}
        with self._lock:
            for start, bucket in self._buckets.items():
                if start + _BUCKET_S <= since:
                    continue
                for key, totals in bucket.items():
                    into = merged.setdefault(key, [0.0] * len(_FIELDS))
                    for i, amount in enumerate(totals):
                        into[i] += amount
        out: dict[str, dict[str, dict[str, float]]] = {}
        for (dimension, value), totals in sorted(merged.items(), key=lambda item: -item[1][0]):
            figures: dict[str, Any] = {name: int(v) for name, v in zip(_FIELDS[:-1], totals[:-1])}
            figures["cost_usd"] = round(totals[-1], 8)
            figures["error_rate"] = round(totals[1] / totals[0], 4) if totals[0] else None
            out.setdefault(dimension, {})[value] = figures
        return out

    def to_json(self) -> dict[str, Any]:
        return {window_label(w): self.window(w) for w in self.windows}
