"""Who is spending: request, error, token and cost totals by user, key and tag.

The per-model figures in :mod:`pulse_proxy.stats` carry quantile sketches; attribution
needs only sums, so it is kept here, lighter: one row of counters per (dimension,
value) per time bucket.  Everything here is client-controlled, so everything is
bounded, first come first kept, exactly like metric labels:

* each dimension keeps its first ``max_values`` distinct values, the rest fold into
  its ``other`` value;
* tag keys are dimensions a client invents (``X-Pulse-Tags: k1=v``, ``k2=v`` …), so
  only the first ``max_tag_keys`` become dimensions; later keys all count in the one
  dimension ``tag:other`` (value ``other``), where a request with several folded keys
  counts once per key;
* the rows of all dimensions together stop at ``max_rows``; past it a new value of any
  dimension folds into that dimension's ``other``.

Old buckets are dropped, so memory is bounded by buckets × rows and the size of
``/pulse/stats`` by rows, however many distinct values clients send.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from msgspec import Struct

from pulse_proxy.records import Exchange
from pulse_proxy.stats import window_label
from pulse_proxy.stats.labels import BoundedLabel

# A row is eight floats: requests, errors, prompt, completion and total tokens, cost (USD),
# requests with a risk flag, requests throttled (answered 429 by a limit rule, never an error).
_BUCKET_S = 10
_TAG_PREFIX = "tag:"
OTHER_TAG = _TAG_PREFIX + "other"


class Breakdown:
    def __init__(
        self,
        *,
        clock: Callable[[], float] = time.time,
        windows: Sequence[int] = (60, 300, 3600),
        max_values: int = 50,
        max_tag_keys: int = 20,
        max_rows: int = 1000,
    ) -> None:
        self._clock = clock
        self.windows = tuple(windows)
        self._span = max(self.windows)
        self._max_values = max_values
        self._max_tag_keys = max_tag_keys
        self._max_rows = max_rows
        self._labels: dict[str, BoundedLabel] = {}
        self._tag_keys = 0
        self._rows: set[tuple[str, str]] = set()
        self._buckets: dict[int, dict[tuple[str, str], list[float]]] = {}
        self._running = {seconds: _RunningWindow(seconds) for seconds in self.windows}
        self._lock = threading.Lock()

    def _fold(self, dimension: str, value: str, weight: int) -> tuple[str, str]:
        """The bounded (dimension, value) row that a raw pair is counted in."""
        label = self._labels.get(dimension)
        if label is None:
            label = self._new_dimension(dimension)
        if label is None:
            return OTHER_TAG, "other"
        row = (dimension, label.fold(value, weight))
        if row not in self._rows and row[1] != label.other:
            if len(self._rows) >= self._max_rows:
                label.folded += weight
                return dimension, label.other
            self._rows.add(row)
        return row

    def _new_dimension(self, dimension: str) -> BoundedLabel | None:
        """A label for a dimension seen for the first time, or None for a tag key past
        the limit (its requests then count in ``tag:other``)."""
        if dimension.startswith(_TAG_PREFIX) and dimension != OTHER_TAG:
            if self._tag_keys >= self._max_tag_keys:
                return None
            self._tag_keys += 1
        label = self._labels[dimension] = BoundedLabel(self._max_values)
        return label

    def add(self, ex: Exchange) -> None:
        """Count one request (the proxy merges whole batches: :meth:`merge`)."""
        tally = BreakdownTally()
        tally.add(ex)
        self.merge(tally)

    def merge(self, tally: BreakdownTally) -> None:
        """Add a batch's rows: one step per (dimension, value), however many requests."""
        with self._lock:
            now = self._clock()
            self._advance(now)
            running = list(self._running.values())
            for (dimension, value), by_bucket in tally.rows.items():
                weight = sum(int(amounts[0]) for amounts in by_bucket.values())
                key = self._fold(dimension, value, weight)
                for start, amounts in by_bucket.items():
                    bucket = self._buckets.get(start)
                    if bucket is None:
                        self._expire(now)
                        bucket = self._buckets[start] = {}
                    _add_to(bucket, key, amounts)
                    for window in running:
                        if start > window.limit:
                            _add_to(window.totals, key, amounts)

    def _advance(self, now: float) -> None:
        """Take out of each running window the buckets that have aged out of it."""
        for window in self._running.values():
            # Bucket ``start`` is in the window while start + _BUCKET_S > now - seconds.
            limit = (now - window.seconds) // _BUCKET_S * _BUCKET_S - _BUCKET_S
            if limit <= window.limit:
                continue
            for start, bucket in self._buckets.items():
                if window.limit < start <= limit:
                    window.subtract(bucket)
            window.limit = limit

    def _expire(self, now: float) -> None:
        oldest = now - self._span - _BUCKET_S
        for start in [s for s in self._buckets if s < oldest]:
            del self._buckets[start]

    def window(self, window_s: int) -> dict[str, dict[str, dict[str, float]]]:
        """``{dimension: {value: {requests, errors, ..., cost_usd, flagged, throttled}}}`` for
        one window (``flagged``: requests whose prompt raised a risk flag; ``throttled``:
        requests a limit refused)."""
        with self._lock:
            now = self._clock()
            running = self._running.get(window_s)
            if running is not None:
                self._advance(now)
                merged = {key: list(totals) for key, totals in running.totals.items()}
            else:
                merged = self._sum_buckets(now - window_s)
        out: dict[str, dict[str, dict[str, float]]] = {}
        for (dimension, value), totals in sorted(merged.items(), key=lambda item: -item[1][0]):
            requests, errors, prompt, completion, total, cost, flagged, throttled = totals
            # Spelled out: a dict display costs a third of a comprehension over the names.
            figures: dict[str, Any] = {
                "requests": int(requests),
                "errors": int(errors),
                "prompt_tokens": int(prompt),
                "completion_tokens": int(completion),
                "total_tokens": int(total),
                "cost_usd": round(cost, 8),
                "error_rate": round(errors / requests, 4) if requests else None,
                "flagged": int(flagged),
                "throttled": int(throttled),
            }
            dimension_rows = out.get(dimension)
            if dimension_rows is None:
                dimension_rows = out[dimension] = {}
            dimension_rows[value] = figures
        return out

    def _sum_buckets(self, since: float) -> dict[tuple[str, str], list[float]]:
        """A window that is not kept running: summed from the buckets (slower)."""
        merged: dict[tuple[str, str], list[float]] = {}
        for start, bucket in self._buckets.items():
            if start + _BUCKET_S > since:
                for key, totals in bucket.items():
                    _add_to(merged, key, totals)
        return merged

    def to_json(self) -> dict[str, Any]:
        return {window_label(w): self.window(w) for w in self.windows}


class _RunningWindow:
    """One window's totals, kept up to date instead of summed when asked for.

    Summing an hour of 10 s buckets took about a second once every row was in use,
    holding the lock (and so the event loop's next merge) meanwhile.  Rows are added
    to the totals as they arrive, and a bucket's rows are subtracted once, when the
    window's ``limit`` passes its start; a batch arriving for a bucket that already
    left the window is not added, so adding and subtracting always match.
    """

    __slots__ = ("limit", "seconds", "totals")

    def __init__(self, seconds: int) -> None:
        self.seconds = seconds
        self.limit = -math.inf  # buckets starting at or before this have left the window
        self.totals: dict[tuple[str, str], list[float]] = {}

    def subtract(self, bucket: dict[tuple[str, str], list[float]]) -> None:
        for key, amounts in bucket.items():
            totals = self.totals.get(key)
            if totals is None:
                continue
            for i, amount in enumerate(amounts):
                totals[i] -= amount
            if totals[0] < 0.5:  # no request left: drop the row, and its rounding residue
                del self.totals[key]


def _add_to(
    rows: dict[tuple[str, str], list[float]], key: tuple[str, str], amounts: list[float]
) -> None:
    totals = rows.get(key)
    if totals is None:
        rows[key] = list(amounts)
    else:
        _add_row(totals, amounts)


def _add_row(totals: list[float], amounts: list[float]) -> None:
    # Spelled out: this runs for every row of every batch, and a loop costs twice as much.
    totals[0] += amounts[0]
    totals[1] += amounts[1]
    totals[2] += amounts[2]
    totals[3] += amounts[3]
    totals[4] += amounts[4]
    totals[5] += amounts[5]
    totals[6] += amounts[6]
    totals[7] += amounts[7]


class BreakdownTally(Struct, array_like=True):
    """A batch's rows by raw (unbounded) value, summed where the batch was accounted;
    :meth:`Breakdown.merge` bounds the values and adds them to its buckets.  Rows are
    kept by value first, so values reach the bound in the order they first came."""

    # (dimension, raw value) -> {bucket start: [requests, errors, ..., cost, flagged, throttled]}
    rows: dict[tuple[str, str], dict[int, list[float]]] = {}

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
        amounts = [
            1.0,
            1.0 if ex.is_error else 0.0,
            float(ex.prompt_tokens or 0),
            float(ex.completion_tokens or 0),
            float(ex.total_tokens or 0),
            float(ex.cost_usd or 0.0),
            1.0 if ex.risk_flags else 0.0,
            1.0 if ex.outcome == "throttled" else 0.0,
        ]
        start = int(ex.ended_at // _BUCKET_S) * _BUCKET_S
        for key in keys:
            by_bucket = self.rows.get(key)
            if by_bucket is None:
                by_bucket = self.rows[key] = {}
            totals = by_bucket.get(start)
            if totals is None:
                by_bucket[start] = list(amounts)
            else:
                _add_row(totals, amounts)
