"""Which statistics each metric answers, and :class:`Measurement`, one such answer."""

from __future__ import annotations

from dataclasses import dataclass

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


@dataclass(frozen=True, slots=True)
class Measurement:
    """One statistic over one window, with the number of samples behind it."""

    value: float | None
    samples: int
