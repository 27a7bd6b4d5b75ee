"""The dashboard's chart pieces: one time slot of a series, and the prompt-length histogram."""

from __future__ import annotations

from typing import Any

from pulse_proxy.stats.aggregate import Aggregate
from pulse_proxy.stats.display import _r


def _point(t: float, step_s: float, aggregate: Aggregate | None) -> dict[str, Any]:
    """One time slot of a chart.  Per-minute figures divide by the whole slot, so the
    slot still filling up reads low until it closes."""
    a = aggregate or Aggregate()
    per_request = a.total_sum / a.token_requests if a.token_requests else None
    return {
        "t": t,
        "requests": a.requests,
        "errors": a.errors,
        "error_rate": _r(a.errors / a.forwarded, 4) if a.forwarded else None,
        "latency_p50": _r(a.latency.quantile(0.5)),
        "latency_p95": _r(a.latency.quantile(0.95)),
        "tokens": a.total_sum,
        "prompt_tokens": a.prompt_sum,
        "completion_tokens": a.completion_sum,
        "tokens_per_request": _r(per_request, 1),
        "tokens_per_minute": _r(a.total_sum / step_s * 60.0, 1),
        "prompt_p95": _r(a.prompt.quantile(0.95)),
        "prompt_max": float(a.prompt_max) if a.prompt.count else None,
        "flags": dict(sorted(a.flags.items())),
        "failovers": a.failovers,
        "throttled": a.outcomes.get("throttled", 0),
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
    zero = float(sketch.zero)
    for value, weight in sketch.bin_values():
        tokens = max(1, round(value))
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
        "p50": _r(sketch.quantile(0.5)),
        "p95": _r(sketch.quantile(0.95)),
        "max": float(aggregate.prompt_max) if n else None,
        "bins": bins,
    }
