"""One slice of traffic as counters, sums and sketches: :class:`Aggregate`, and merging them.

Every figure is mergeable, so the aggregate of a window is just the merge of its buckets'
aggregates and no raw sample is ever kept.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

from ddsketch.ddsketch import BaseDDSketch

from pulse_proxy.records import ERROR_OUTCOMES, Exchange
from pulse_proxy.stats.display import _r
from pulse_proxy.stats.metrics import QUANTILES, SUPPORTED_STATS, Measurement
from pulse_proxy.stats.sketch import merge_sketch_state, new_sketch, quantile, sketch_state


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
        # Comparisons rather than max(): a builtin call costs more than the test itself.
        value: Any = ex.latency_ms
        if value is not None:
            self.latency.add(value)
            if value > self.latency_max:
                self.latency_max = value
        value = ex.ttft_ms
        if value is not None:
            self.ttft.add(value)
            if value > self.ttft_max:
                self.ttft_max = value
        prompt = ex.prompt_tokens
        completion = ex.completion_tokens
        if prompt is not None:
            self.prompt.add(prompt)
            self.prompt_sum += prompt
            if prompt > self.prompt_max:
                self.prompt_max = prompt
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
            if total > self.total_max:
                self.total_max = total
        cost = ex.cost_usd
        if cost is not None:
            self.cost_sum += cost
            self.cost_requests += 1

    def state(self) -> tuple[Any, ...]:
        """Every figure as plain values (sketches too): what crosses between processes
        and what :meth:`merge_state` takes.  Loading plain values is several times
        cheaper than loading an aggregate and its sketches as objects."""
        return (
            self.requests,
            self.errors,
            self.outcomes,
            sketch_state(self.latency),
            self.latency_max,
            sketch_state(self.ttft),
            self.ttft_max,
            sketch_state(self.prompt),
            self.prompt_max,
            self.prompt_sum,
            self.completion_sum,
            self.total_sum,
            self.total_max,
            self.token_requests,
            self.cost_sum,
            self.cost_requests,
            self.drift_sum,
            self.drift_requests,
        )

    def merge(self, other: Aggregate) -> None:
        """Fold ``other`` in, as if its requests had been added here."""
        self.merge_state(other.state())

    def merge_state(self, state: tuple[Any, ...]) -> None:
        """Fold in another aggregate's :meth:`state`."""
        (
            requests,
            errors,
            outcomes,
            latency,
            latency_max,
            ttft,
            ttft_max,
            prompt,
            prompt_max,
            prompt_sum,
            completion_sum,
            total_sum,
            total_max,
            token_requests,
            cost_sum,
            cost_requests,
            drift_sum,
            drift_requests,
        ) = state
        if requests == 0:
            return
        self.requests += requests
        self.errors += errors
        mine = self.outcomes
        for outcome, count in outcomes.items():
            mine[outcome] = mine.get(outcome, 0) + count
        if latency is not None:
            merge_sketch_state(self.latency, latency)
            if latency_max > self.latency_max:
                self.latency_max = latency_max
        if ttft is not None:
            merge_sketch_state(self.ttft, ttft)
            if ttft_max > self.ttft_max:
                self.ttft_max = ttft_max
        if prompt is not None:
            merge_sketch_state(self.prompt, prompt)
            if prompt_max > self.prompt_max:
                self.prompt_max = prompt_max
        self.prompt_sum += prompt_sum
        self.completion_sum += completion_sum
        self.total_sum += total_sum
        if total_max > self.total_max:
            self.total_max = total_max
        self.token_requests += token_requests
        self.cost_sum += cost_sum
        self.cost_requests += cost_requests
        self.drift_sum += drift_sum
        self.drift_requests += drift_requests

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


def merge_all(aggregates: Iterable[Aggregate]) -> Aggregate:
    """One aggregate of many (the report's overall figures)."""
    merged = Aggregate()
    for aggregate in aggregates:
        merged.merge(aggregate)
    return merged
