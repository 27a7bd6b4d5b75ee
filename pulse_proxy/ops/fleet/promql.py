"""PromQL for the proxy's figures, summed across every instance of a fleet.

Each sidecar computes its statistics over its own requests; a fleet is judged on the
sum.  Counters and histogram buckets add up exactly across instances, so every
figure here is built as ``sum(rate(...))`` or ``histogram_quantile(q, sum by (le)
(rate(..._bucket)))`` with no ``instance`` label left: what Prometheus computes is
what one proxy would have computed had it seen all the traffic.

The proxy's metric names and label values come from
:mod:`pulse_proxy.sinks.prometheus` and :mod:`pulse_proxy.records`, never from
literals repeated here, so a renamed outcome or bucket cannot silently drift apart.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from prometheus_client.utils import floatToGoString

from pulse_proxy.records import ERROR_OUTCOMES
from pulse_proxy.sinks.prometheus import DURATION_BUCKETS, TOKEN_BUCKETS, TTFT_BUCKETS

REQUESTS = "llm_requests_total"
ERRORS = "llm_request_errors_total"
TOKENS = "llm_tokens_total"
COST = "llm_cost_usd_total"
ALERT_FIRING = "llm_alert_firing"

# The proxy's error rate counts only the service's failures (records.ERROR_OUTCOMES);
# llm_request_errors_total counts every non-success, told apart by its outcome label.
ERROR_OUTCOMES_RE = "|".join(sorted(ERROR_OUTCOMES))
# cached is part of prompt and reasoning part of completion: these two make the total.
TOTAL_TOKEN_TYPES_RE = "prompt|completion"


@dataclass(frozen=True, slots=True)
class Histogram:
    """A proxy distribution as Prometheus sees it: name, buckets, and its unit there."""

    name: str
    buckets: tuple[float, ...]
    # Proxy units per Prometheus unit: latency is in ms in the proxy, seconds here.
    scale: float


HISTOGRAMS: dict[str, Histogram] = {
    "latency_ms": Histogram("llm_request_duration_seconds", DURATION_BUCKETS, 1000.0),
    "ttft_ms": Histogram("llm_time_to_first_token_seconds", TTFT_BUCKETS, 1000.0),
    "prompt_tokens": Histogram("llm_prompt_length_tokens", TOKEN_BUCKETS, 1.0),
}


def duration(seconds: float) -> str:
    """A Prometheus duration: ``300`` -> ``5m``, ``3300`` -> ``55m``, ``1.5`` -> ``1500ms``."""
    ms = round(seconds * 1000)
    for unit, size in (("h", 3_600_000), ("m", 60_000), ("s", 1000)):
        if ms >= size and ms % size == 0:
            return f"{ms // size}{unit}"
    return f"{ms}ms"


def quote(value: str) -> str:
    """A PromQL string literal (JSON's escaping is a subset of what PromQL reads)."""
    return json.dumps(value, ensure_ascii=False)


def le(bound: float) -> str:
    """The ``le`` label value exactly as prometheus_client writes it (``65536.0``, ``+Inf``)."""
    text: str = floatToGoString(bound)  # type: ignore[no-untyped-call]
    return text


@dataclass(frozen=True, slots=True)
class Scope:
    """Which series a figure reads and over which range: label matchers, window, offset.

    ``model`` narrows to one model (a rule's ``model:``); ``matchers`` are extra raw
    PromQL matchers, as the Grafana dashboard's ``model=~"$model"``.
    """

    window_s: float
    offset_s: float = 0.0
    model: str | None = None
    matchers: tuple[str, ...] = ()
    # A raw range, e.g. Grafana's ``$__rate_interval``; overrides window_s.
    range_text: str | None = None

    def select(self, name: str, *extra: str) -> str:
        parts = list(self.matchers)
        if self.model is not None:
            parts.append(f"model={quote(self.model)}")
        parts.extend(extra)
        return f"{name}{{{','.join(parts)}}}" if parts else name

    def range(self) -> str:
        text = f"[{self.range_text or duration(self.window_s)}]"
        return f"{text} offset {duration(self.offset_s)}" if self.offset_s else text

    def rate(self, name: str, *extra: str) -> str:
        return f"rate({self.select(name, *extra)}{self.range()})"

    def increase(self, name: str, *extra: str) -> str:
        return f"increase({self.select(name, *extra)}{self.range()})"


def quantile(scope: Scope, hist: Histogram, q: float) -> str:
    """The fleet's ``q`` quantile: buckets summed over instances, then interpolated."""
    return f"histogram_quantile({q:g}, sum by (le) ({scope.rate(hist.name + '_bucket')}))"


def above_bound(scope: Scope, hist: Histogram, bound: float) -> str:
    """Observations in the window greater than ``bound`` (a bucket bound), fleet-wide."""
    count = f"sum({scope.increase(hist.name + '_count')})"
    if bound not in hist.buckets:
        return count
    return f"{count} - sum({scope.increase(hist.name + '_bucket', f'le={quote(le(bound))}')})"


def bucket_at_or_below(hist: Histogram, limit: float) -> float | None:
    """The largest bucket bound ``<= limit``: counting above it misses no value over ``limit``."""
    bounds = [b for b in hist.buckets if b <= limit]
    return max(bounds) if bounds else None


def error_rate(scope: Scope) -> str:
    """Failed / all requests; no failure series at all reads as zero failures."""
    errors = scope.rate(ERRORS, f"outcome=~{quote(ERROR_OUTCOMES_RE)}")
    return f"(sum({errors}) or vector(0)) / sum({scope.rate(REQUESTS)})"


def tokens(scope: Scope, fn: str = "rate") -> str:
    """Prompt + completion tokens (the proxy's ``total_tokens``), as a rate or an increase."""
    selector = getattr(scope, fn)(TOKENS, f"token_type=~{quote(TOTAL_TOKEN_TYPES_RE)}")
    return f"sum({selector})"


def requests_with_tokens(scope: Scope) -> str:
    """Requests that reported token usage: those with a prompt length observed."""
    return f"sum({scope.increase(HISTOGRAMS['prompt_tokens'].name + '_count')})"


@dataclass(frozen=True, slots=True)
class Figure:
    """A proxy statistic as PromQL, and how to read its value.

    ``scale`` converts the rule's threshold (proxy units) into the expression's units;
    ``humanize`` is the Prometheus template function that prints ``$value`` well.
    """

    expr: str
    scale: float = 1.0
    humanize: str = "humanize"


def figure(metric: str, stat: str, scope: Scope) -> Figure | None:
    """``stat`` of ``metric`` fleet-wide, or ``None`` when Prometheus has no equivalent."""
    hist = HISTOGRAMS.get(metric)
    if hist is not None:
        human = "humanizeDuration" if hist.scale == 1000.0 else "humanize"
        count = f"sum({scope.increase(hist.name + '_count')})"
        exprs = {
            "p50": quantile(scope, hist, 0.5),
            "p95": quantile(scope, hist, 0.95),
            "p99": quantile(scope, hist, 0.99),
            "mean": f"sum({scope.rate(hist.name + '_sum')}) / sum({scope.rate(hist.name + '_count')})",
            "sum": f"sum({scope.increase(hist.name + '_sum')})",
            "count": count,
        }
        if stat not in exprs:
            return None  # max: see rules.py, only as "some value above a bound"
        if stat == "count":
            return Figure(count)
        return Figure(exprs[stat], hist.scale, human)
    if metric == "requests":
        if stat == "rate":
            return Figure(f"sum({scope.rate(REQUESTS)})")
        return Figure(f"sum({scope.increase(REQUESTS)})")
    if metric == "error_rate":
        if stat in ("rate", "mean"):
            return Figure(error_rate(scope), humanize="humanizePercentage")
        if stat == "sum":
            errors = scope.increase(ERRORS, f"outcome=~{quote(ERROR_OUTCOMES_RE)}")
            return Figure(f"(sum({errors}) or vector(0))")
        return Figure(f"sum({scope.increase(REQUESTS)})")
    if metric == "tokens_per_minute":
        if stat == "rate":
            return Figure(f"{tokens(scope)} * 60")
        if stat == "sum":
            return Figure(tokens(scope, "increase"))
        return Figure(requests_with_tokens(scope))
    if metric == "total_tokens":
        exprs = {
            "rate": tokens(scope),
            "sum": tokens(scope, "increase"),
            "count": requests_with_tokens(scope),
            "mean": f"{tokens(scope, 'increase')} / {requests_with_tokens(scope)}",
        }
        return Figure(exprs[stat]) if stat in exprs else None
    if metric == "cost_usd":
        # The proxy's mean and count are over requests with a known price; Prometheus
        # has no counter of those, so only the sum and its rate translate.
        if stat == "rate":
            return Figure(f"sum({scope.rate(COST)})")
        if stat == "sum":
            return Figure(f"sum({scope.increase(COST)})")
        return None
    return None


def samples(metric: str, scope: Scope) -> str:
    """How many requests stand behind ``metric`` in the window (a rule's ``min_samples``)."""
    hist = HISTOGRAMS.get(metric)
    if hist is not None:
        return f"sum({scope.increase(hist.name + '_count')})"
    if metric in ("tokens_per_minute", "total_tokens"):
        return requests_with_tokens(scope)
    return f"sum({scope.increase(REQUESTS)})"
