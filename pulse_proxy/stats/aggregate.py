"""One slice of traffic as counters, sums and sketches: :class:`Aggregate`, and merging them.

Every figure is mergeable, so the aggregate of a window is just the merge of its buckets'
aggregates and no raw sample is ever kept.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

from msgspec import Struct, field

from pulse_proxy.records import ERROR_OUTCOMES, Exchange
from pulse_proxy.stats.display import _r
from pulse_proxy.stats.metrics import QUANTILES, SUPPORTED_STATS, Measurement
from pulse_proxy.stats.sketch import Sketch


class Aggregate(Struct, array_like=True):
    """Counters, sums and sketches for a set of requests; two aggregates merge exactly.

    One Struct for every use: the accounting process fills one per model and time
    bucket, it crosses to the event loop as it is, and the rolling windows merge it.
    """

    requests: int = 0
    errors: int = 0
    outcomes: dict[str, int] = {}
    flags: dict[str, int] = {}  # requests per risk flag (the detectors' names: a few)
    failovers: int = 0  # requests answered by another upstream than the first one tried
    latency: Sketch = field(default_factory=Sketch)
    ttft: Sketch = field(default_factory=Sketch)
    prompt: Sketch = field(default_factory=Sketch)
    prompt_sum: int = 0
    completion_sum: int = 0
    total_sum: int = 0
    total_max: float = -math.inf
    token_requests: int = 0
    cost_sum: float = 0.0
    cost_requests: int = 0
    drift_sum: int = 0
    drift_requests: int = 0

    def add(self, ex: Exchange) -> None:
        """Count one request (the hot loop of the statistics: plain attribute updates)."""
        self.requests += 1
        outcome = ex.outcome
        if outcome in ERROR_OUTCOMES:
            self.errors += 1
        self.outcomes[outcome] = self.outcomes.get(outcome, 0) + 1
        if ex.failover_from:
            self.failovers += 1
        if ex.risk_flags:
            flags = self.flags
            for flag in ex.risk_flags:
                flags[flag] = flags.get(flag, 0) + 1
        value: Any = ex.latency_ms
        if value is not None:
            self.latency.add(value)
        value = ex.ttft_ms
        if value is not None:
            self.ttft.add(value)
        prompt = ex.prompt_tokens
        completion = ex.completion_tokens
        if prompt is not None:
            self.prompt.add(prompt)
            self.prompt_sum += prompt
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
            # A comparison rather than max(): a builtin call costs more than the test.
            if total > self.total_max:
                self.total_max = total
        cost = ex.cost_usd
        if cost is not None:
            self.cost_sum += cost
            self.cost_requests += 1

    @property
    def forwarded(self) -> int:
        """Requests the error rate is over: all but those a limit answered 429, so
        that throttling neither dilutes it nor (for a limit switched on by the
        error_rate alert) resolves that alert by itself."""
        return self.requests - self.outcomes.get("throttled", 0)

    def merge(self, other: Aggregate) -> None:
        """Fold ``other`` in, as if its requests had been added here."""
        if not other.requests:
            return
        self.requests += other.requests
        self.errors += other.errors
        mine = self.outcomes
        for outcome, count in other.outcomes.items():
            mine[outcome] = mine.get(outcome, 0) + count
        self.failovers += other.failovers
        if other.flags:
            flags = self.flags
            for flag, count in other.flags.items():
                flags[flag] = flags.get(flag, 0) + count
        self.latency.merge(other.latency)
        self.ttft.merge(other.ttft)
        self.prompt.merge(other.prompt)
        self.prompt_sum += other.prompt_sum
        self.completion_sum += other.completion_sum
        self.total_sum += other.total_sum
        if other.total_max > self.total_max:
            self.total_max = other.total_max
        self.token_requests += other.token_requests
        self.cost_sum += other.cost_sum
        self.cost_requests += other.cost_requests
        self.drift_sum += other.drift_sum
        self.drift_requests += other.drift_requests

    # The exact maxima are the sketches' own.
    @property
    def latency_max(self) -> float:
        return self.latency.max

    @property
    def ttft_max(self) -> float:
        return self.ttft.max

    @property
    def prompt_max(self) -> float:
        return self.prompt.max

    def distribution(self, metric: str) -> Sketch:
        if metric == "latency_ms":
            return self.latency
        if metric == "ttft_ms":
            return self.ttft
        if metric == "prompt_tokens":
            return self.prompt
        raise ValueError(f"{metric} has no distribution")

    def measure(self, metric: str, stat: str, span_s: float) -> Measurement:
        """``stat`` of ``metric`` over these requests, ``span_s`` seconds of them (for rates)."""
        if stat not in SUPPORTED_STATS.get(metric, ()):
            raise ValueError(f"unsupported metric/stat pair: {metric}/{stat}")
        span = max(span_s, 1e-9)
        if metric in ("latency_ms", "ttft_ms", "prompt_tokens"):
            sketch = self.distribution(metric)
            n = int(sketch.count)
            if n == 0:
                return Measurement(None, 0)
            if stat in QUANTILES:
                return Measurement(sketch.quantile(QUANTILES[stat]), n)
            figures = {"max": sketch.max, "mean": sketch.avg, "sum": sketch.sum, "count": n}
            return Measurement(float(figures[stat]), n)
        if metric == "requests":
            n = self.requests
            return Measurement(float(n) if stat == "count" else n / span, n)
        if metric == "error_rate":
            n = self.forwarded
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
        sketch = self.distribution(metric)
        n = int(sketch.count)
        summary: dict[str, float | int | None] = {"count": n}
        summary["mean"] = _r(sketch.avg) if n else None
        for name, q in QUANTILES.items():
            summary[name] = _r(sketch.quantile(q))
        summary["max"] = _r(float(sketch.max)) if n else None
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
            "error_rate": _r(self.errors / self.forwarded, 4) if self.forwarded else None,
            "outcomes": dict(sorted(self.outcomes.items())),
            "risk_flags": dict(sorted(self.flags.items())),
            "failovers": self.failovers,
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
