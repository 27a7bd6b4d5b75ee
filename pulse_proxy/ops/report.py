"""``pulse-proxy report [FILE|-]``: the four standard views (latency, tokens, prompt length, errors) from JSON log lines, as text.

Reads ``llm.request`` and ``alert.*`` lines (``docker logs pulse | pulse-proxy report -``)
and prints (1) latency per model, (2) tokens per request and per minute, (3) the
prompt-length distribution with spikes called out, (4) error rates and the alerts that
fired.  Logs are messy: lines that are not JSON, or are other events, are counted and
skipped, never fatal.  Figures come from the same mergeable aggregates and DDSketch
quantiles as the live statistics (``pulse_proxy.stats``), so memory stays bounded however
long the log: per-minute slots coarsen when there are too many, and models past
``MAX_MODELS`` fold into ``other``.
"""

from __future__ import annotations

import datetime as dt
import heapq
import itertools
import math
from collections import Counter, deque
from collections.abc import Iterable, Sequence
from typing import Any, TextIO

import orjson

from pulse_proxy.alerts import format_value
from pulse_proxy.records import ERROR_OUTCOMES, Exchange
from pulse_proxy.stats import OTHER_MODEL, UNKNOWN_MODEL, Aggregate, merge_all
from pulse_proxy.text import escape_control

MAX_MODELS = 50
MAX_SLOTS = 1024  # timeline slots kept; past this they double in length
TIMELINE_ROWS = 24
SPIKE_FACTOR = 3.0  # as the prompt_length_spike rule
ALERTS_SHOWN = 30


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def _integer(value: Any) -> int | None:
    number = _number(value)
    return None if number is None else int(number)


def _epoch(value: Any) -> float | None:
    if not isinstance(value, str):
        return None
    try:
        moment = dt.datetime.fromisoformat(value)
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return moment.timestamp()


def _printable(record: dict[str, Any]) -> dict[str, Any]:
    """The record with control characters escaped in every text field: anyone who can
    write a log line (a model name, a user, a forged line) could otherwise send escape
    sequences to the terminal of whoever reads the report."""
    return {
        key: escape_control(value) if isinstance(value, str) else value
        for key, value in record.items()
    }


def _exchange(record: dict[str, Any], ended_at: float) -> Exchange:
    """An Exchange from a logged event, keeping only well-typed figures."""
    model = record.get("model") or record.get("response_model")
    outcome = record.get("outcome")
    return Exchange(
        request_id=str(record.get("request_id") or ""),
        method=str(record.get("method") or ""),
        path=str(record.get("path") or ""),
        model=str(model) if model else None,
        outcome=outcome if isinstance(outcome, str) else "unknown",  # type: ignore[arg-type]
        latency_ms=_number(record.get("latency_ms")),
        ttft_ms=_number(record.get("ttft_ms")),
        prompt_tokens=_integer(record.get("prompt_tokens")),
        completion_tokens=_integer(record.get("completion_tokens")),
        total_tokens=_integer(record.get("total_tokens")),
        prompt_tokens_local=_integer(record.get("prompt_tokens_local")),
        cost_usd=_number(record.get("cost_usd")),
        ended_at=ended_at,
    )


class _Collector:
    """Everything the dashboards need, in bounded memory."""

    def __init__(self) -> None:
        self.lines = 0
        self.malformed = 0
        self.foreign = 0
        self.models: dict[str, Aggregate] = {}
        self.first: float | None = None
        self.last: float | None = None
        self.slot_s = 60
        self.slots: dict[int, Aggregate] = {}
        self.prompt_buckets: Counter[int] = Counter()
        self.largest: list[tuple[int, str, str, str]] = []  # min-heap of the 5 largest prompts
        self.alerts: deque[dict[str, Any]] = deque(maxlen=ALERTS_SHOWN)
        self.alert_counts: Counter[tuple[str, str]] = Counter()
        # Failover: tries, answers per upstream, moves between upstreams, breakers.
        self.attempts = 0
        self.retried = 0
        self.served: Counter[str] = Counter()
        self.failovers: Counter[tuple[str, str]] = Counter()
        self.breaker_events: Counter[tuple[str, str]] = Counter()
        # Requests answered 429 by a limit rule, per rule (bounded like the models).
        self.throttled: Counter[str] = Counter()

    @property
    def requests(self) -> int:
        return sum(a.requests for a in self.models.values())

    def feed(self, line: str) -> None:
        text = line.strip()
        if not text:
            return
        self.lines += 1
        if not text.startswith("{") and "{" in text:
            text = text[text.index("{") :]  # e.g. `docker logs -t` puts a timestamp first
        try:
            record = orjson.loads(text)
        except orjson.JSONDecodeError:
            self.malformed += 1
            return
        if not isinstance(record, dict):
            self.malformed += 1
            return
        record = _printable(record)
        event = record.get("event")
        if event == "llm.request":
            self._request(record)
        elif event in ("upstream.breaker_opened", "upstream.breaker_closed"):
            self._breaker(str(record.get("upstream")), event.rsplit("_", 1)[1])
        elif event in ("alert.fired", "alert.resolved"):
            self.alerts.append(record)
            self.alert_counts[(str(record.get("alert")), str(event))] += 1
        else:
            self.foreign += 1

    def _breaker(self, upstream: str, change: str) -> None:
        if (upstream, change) in self.breaker_events or len(self.breaker_events) < MAX_MODELS:
            self.breaker_events[(upstream, change)] += 1

    def _tries(self, record: dict[str, Any]) -> None:
        """Attempts and failovers (upstream names are few: bounded like models)."""
        attempts = _integer(record.get("attempts"))
        if attempts:
            self.attempts += attempts
            self.retried += attempts > 1
        served = str(record.get("upstream") or "-")
        if served in self.served or len(self.served) < MAX_MODELS:
            self.served[served] += 1
        before = record.get("failover_from")
        if isinstance(before, list) and before:
            path = [str(name) for name in before] + [served]
            for source, target in itertools.pairwise(path):
                key = (source, target)
                if source != target and (key in self.failovers or len(self.failovers) < MAX_MODELS):
                    self.failovers[key] += 1

    def _request(self, record: dict[str, Any]) -> None:
        self._tries(record)
        at = _epoch(record.get("timestamp"))
        ex = _exchange(record, at if at is not None else 0.0)
        name = ex.model or UNKNOWN_MODEL
        if name not in self.models and len(self.models) >= MAX_MODELS:
            name = OTHER_MODEL
        self.models.setdefault(name, Aggregate()).add(ex)
        if ex.outcome == "throttled":
            rule = record.get("throttled_by")
            rule = rule if isinstance(rule, str) and rule else "(unnamed)"
            if rule not in self.throttled and len(self.throttled) >= MAX_MODELS:
                rule = OTHER_MODEL
            self.throttled[rule] += 1
        if ex.prompt_tokens is not None:
            size = max(ex.prompt_tokens, 0)
            self.prompt_buckets[0 if size == 0 else (size.bit_length() - 1) // 2 + 1] += (
                1  # 1 + floor(log4)
            )
            entry = (size, str(record.get("timestamp") or ""), name, ex.request_id)
            if len(self.largest) < 5:
                heapq.heappush(self.largest, entry)
            elif entry > self.largest[0]:
                heapq.heapreplace(self.largest, entry)
        if at is None:
            return
        self.first = at if self.first is None else min(self.first, at)
        self.last = at if self.last is None else max(self.last, at)
        self.slots.setdefault(int(at // self.slot_s), Aggregate()).add(ex)
        if len(self.slots) > MAX_SLOTS:
            self._coarsen()

    def _coarsen(self) -> None:
        self.slot_s *= 2
        merged: dict[int, Aggregate] = {}
        for index, aggregate in self.slots.items():
            merged.setdefault(index // 2, Aggregate()).merge(aggregate)
        self.slots = merged

    @property
    def span_s(self) -> float:
        if self.first is None or self.last is None:
            return 0.0
        return self.last - self.first


# -- formatting ---------------------------------------------------------------------


def _fmt(value: float | None, digits: int = 0) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def _pct(part: int, whole: int) -> str:
    return "-" if not whole else f"{part / whole * 100:.2f} %"


def _clock(epoch: float | None) -> str:
    if epoch is None:
        return "-"
    return dt.datetime.fromtimestamp(epoch, dt.UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def _duration(seconds: float) -> str:
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m" if hours else f"{minutes}m {secs:02d}s"


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    """Left-aligned first column, right-aligned figures, every column as wide as its
    longest cell.  Names are never cut: two fine-tuned models often differ only in
    their last characters, and a cut name cannot be searched for in the logs."""
    widths = [max(len(str(row[i])) for row in [headers, *rows]) for i in range(len(headers))]

    def line(cells: Sequence[str]) -> str:
        parts = [str(cells[0]).ljust(widths[0])] + [
            str(c).rjust(w) for c, w in zip(cells[1:], widths[1:])
        ]
        return "  ".join(parts).rstrip()

    return [line(headers), line(["-" * w for w in widths]), *(line(row) for row in rows)]


def _bar(value: float, top: float, width: int) -> str:
    return "#" * (max(1, round(value / top * width)) if value > 0 and top > 0 else 0)


def _title(out: TextIO, text: str) -> None:
    out.write(f"\n{text}\n{'=' * len(text)}\n")


# -- the four dashboards ------------------------------------------------------------


def _ranked(data: _Collector) -> list[tuple[str, Aggregate]]:
    return sorted(data.models.items(), key=lambda item: (-item[1].requests, item[0]))


def _latency(data: _Collector, overall: Aggregate, out: TextIO, width: int) -> None:
    _title(out, "1. Latency per model")
    rows = []
    for name, a in [*_ranked(data), ("(all models)", overall)]:
        rows.append(
            [
                name,
                _fmt(a.requests),
                _fmt(a.latency.quantile(0.5)),
                _fmt(a.latency.quantile(0.95)),
                _fmt(a.latency.quantile(0.99)),
                _fmt(a.ttft.quantile(0.5)),
                _fmt(a.ttft.quantile(0.95)),
            ]
        )
    headers = ["model", "requests", "p50 ms", "p95 ms", "p99 ms", "ttft p50", "ttft p95"]
    out.write("\n".join(_table(headers, rows)) + "\n")


def _tokens(data: _Collector, overall: Aggregate, out: TextIO, width: int) -> None:
    _title(out, "2. Tokens per request and per minute")
    minutes = max(data.span_s, 60.0) / 60.0
    rows = []
    for name, a in [*_ranked(data), ("(all models)", overall)]:
        per_request = a.total_sum / a.token_requests if a.token_requests else None
        cost = _fmt(a.cost_sum, 4) if a.cost_requests else "-"
        rows.append(
            [
                name,
                _fmt(a.requests),
                _fmt(a.prompt_sum),
                _fmt(a.completion_sum),
                _fmt(a.total_sum),
                _fmt(per_request, 1),
                _fmt(a.total_sum / minutes, 1),
                cost,
            ]
        )
    headers = [
        "model",
        "requests",
        "prompt",
        "completion",
        "total",
        "tok/req",
        "tok/min",
        "cost USD",
    ]
    out.write("\n".join(_table(headers, rows)) + "\n")
    out.write(
        f"(tokens per minute over the {_duration(data.span_s)} the log covers; a minute at least)\n"
    )
    timeline = _timeline(data)
    if timeline:
        out.write("\nTokens per minute over time\n")
        top = max(a.total_sum / (size / 60.0) for _, size, a in timeline) or 1.0
        for start, size, a in timeline:
            rate = a.total_sum / (size / 60.0)
            label = dt.datetime.fromtimestamp(start, dt.UTC).strftime("%m-%d %H:%M")
            out.write(
                f"  {label}  {_fmt(rate).rjust(12)}  {_bar(rate, top, max(10, width - 32))}\n"
            )


def _timeline(data: _Collector) -> list[tuple[float, float, Aggregate]]:
    """At most TIMELINE_ROWS rows of (start, length s, merged slots) across the log."""
    if not data.slots:
        return []
    first, last = min(data.slots), max(data.slots)
    per_row = max(1, math.ceil((last - first + 1) / TIMELINE_ROWS))
    rows = []
    for row_start in range(first, last + 1, per_row):
        merged = merge_all(
            data.slots[i] for i in range(row_start, row_start + per_row) if i in data.slots
        )
        rows.append((float(row_start * data.slot_s), float(per_row * data.slot_s), merged))
    return rows


def _bucket_label(index: int) -> str:
    if index == 0:
        return "0"
    low, high = 4 ** (index - 1), 4**index - 1
    return f"{low:,}" if low == high else f"{low:,}-{high:,}"


def _prompts(data: _Collector, overall: Aggregate, out: TextIO, width: int) -> None:
    _title(out, "3. Prompt length (tokens)")
    if not data.prompt_buckets:
        out.write("no prompt token counts in these lines\n")
        return
    median = overall.prompt.quantile(0.5)
    p95 = overall.prompt.quantile(0.95)
    out.write(
        f"{int(overall.prompt.count):,} prompts: p50 {_fmt(median)}, p95 {_fmt(p95)}, "
        f"max {_fmt(overall.prompt_max)}\n\n"
    )
    low, high = min(data.prompt_buckets), max(data.prompt_buckets)
    top = max(data.prompt_buckets.values())
    labels = [_bucket_label(i) for i in range(low, high + 1)]
    label_width = max(len(label) for label in labels)
    for index, label in zip(range(low, high + 1), labels):
        count = data.prompt_buckets.get(index, 0)
        bar = _bar(count, top, max(10, width - label_width - 14))
        out.write(f"  {label.rjust(label_width)} | {_fmt(count).rjust(8)} {bar}\n")
    # A spike, as for the prompt_length_spike rule: a stretch whose p95 is over 3x the
    # baseline.  The baseline is the typical stretch's p95 (the median across the
    # timeline), which a short burst cannot inflate the way it would the overall p95.
    timeline = [(start, a) for start, _, a in _timeline(data) if a.prompt.count]
    typical = _median([a.prompt.quantile(0.95) or 0.0 for _, a in timeline])
    if not typical:
        return
    limit = SPIKE_FACTOR * typical
    spikes = [(start, a) for start, a in timeline if (a.prompt.quantile(0.95) or 0) > limit]
    out.write(
        f"\nSpikes (p95 above {SPIKE_FACTOR:g}x the typical p95 of {_fmt(typical)}, i.e. {_fmt(limit)} tokens):"
    )
    if not spikes:
        out.write(" none\n")
    else:
        out.write("\n")
        for start, a in spikes:
            spike_p95 = a.prompt.quantile(0.95)
            out.write(
                f"  ! from {_clock(start)}: p95 {_fmt(spike_p95)}, max {_fmt(a.prompt_max)} tokens\n"
            )
    out.write("Largest prompts:\n")
    for size, stamp, model, request_id in sorted(data.largest, reverse=True):
        flag = "  ! spike" if size > limit else ""
        out.write(f"  {size:>12,}  {stamp or '-'}  {model}  {request_id or '-'}{flag}\n")


def _median(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[len(ordered) // 2] if ordered else 0.0


def _errors(data: _Collector, overall: Aggregate, out: TextIO, width: int) -> None:
    _title(out, "4. Errors and alerts")
    out.write(
        f"{overall.errors:,} errors in {overall.requests:,} requests "
        f"({_pct(overall.errors, overall.requests)}); errors are {', '.join(sorted(ERROR_OUTCOMES))}\n"
    )
    outcomes = ", ".join(
        f"{k} {v:,}" for k, v in sorted(overall.outcomes.items(), key=lambda kv: -kv[1])
    )
    out.write(f"outcomes: {outcomes or '-'}\n")
    _upstreams(data, overall, out)
    if data.throttled:
        by_rule = ", ".join(f"{rule} {count:,}" for rule, count in data.throttled.most_common())
        out.write(f"throttled (answered 429 by a limit rule, not errors): {by_rule}\n")
    out.write("\n")
    rows = []
    for name, a in [*_ranked(data), ("(all models)", overall)]:
        failures = {k: v for k, v in a.outcomes.items() if k != "success"}
        breakdown = " ".join(f"{k}={v}" for k, v in sorted(failures.items())) or "-"
        rows.append([name, _fmt(a.requests), _fmt(a.errors), _pct(a.errors, a.requests), breakdown])
    headers = ["model", "requests", "errors", "error rate", "non-success outcomes"]
    out.write("\n".join(_table(headers, rows)) + "\n")
    out.write("\nAlerts\n")
    if not data.alert_counts:
        out.write("none fired\n")
        return
    names = sorted({name for name, _ in data.alert_counts})
    for name in names:
        fired = data.alert_counts[(name, "alert.fired")]
        resolved = data.alert_counts[(name, "alert.resolved")]
        out.write(f"  {name}: fired {fired}, resolved {resolved}\n")
    rows = []
    for alert in data.alerts:
        resolved = alert.get("event") == "alert.resolved"
        stamp = alert.get("resolved_at") if resolved else alert.get("fired_at")
        metric, stat = str(alert.get("metric") or ""), str(alert.get("stat") or "")
        rows.append(
            [
                str(alert.get("alert")),
                "resolved" if resolved else "FIRED",
                _clock(_epoch(stamp or alert.get("timestamp"))),
                str(alert.get("severity") or "-"),
                format_value(_number(alert.get("value")), metric, stat),
                format_value(_number(alert.get("threshold")), metric, stat),
                _duration(_number(alert.get("duration_s")) or 0) if resolved else "-",
            ]
        )
    out.write(f"\nLast {len(rows)} alert events\n")
    headers = ["alert", "event", "at", "severity", "value", "threshold", "lasted"]
    out.write("\n".join(_table(headers, rows)) + "\n")


def _upstreams(data: _Collector, overall: Aggregate, out: TextIO) -> None:
    """Which upstreams answered, and how often requests needed more than one try."""
    served = ", ".join(f"{name} {count:,}" for name, count in data.served.most_common())
    out.write(f"served by: {served or '-'}\n")
    if data.attempts:
        out.write(
            f"attempts: {data.attempts:,} upstream tries for {overall.requests:,} requests; "
            f"{data.retried:,} requests needed more than one "
            f"({_pct(data.retried, overall.requests)})\n"
        )
    failovers = ", ".join(
        f"{source} -> {target} {count:,}"
        for (source, target), count in data.failovers.most_common()
    )
    out.write(f"failovers: {failovers or 'none'}\n")
    if data.breaker_events:
        changes = ", ".join(
            f"{upstream} {change} {count:,}"
            for (upstream, change), count in sorted(data.breaker_events.items())
        )
        out.write(f"breakers: {changes}\n")


def run_report(lines: Iterable[str], out: TextIO, *, width: int = 100) -> int:
    """Print the dashboards for ``lines``; 0, or 1 when no line was usable."""
    data = _Collector()
    for line in lines:
        data.feed(line)
    skipped = data.malformed + data.foreign
    alerts = sum(data.alert_counts.values())
    if not data.requests and not alerts:
        out.write(
            f"pulse-proxy report: no llm.request or alert.* lines among {data.lines:,} "
            f"({data.malformed:,} malformed, {data.foreign:,} other events skipped)\n"
        )
        return 1
    overall = merge_all(data.models.values())
    out.write("LLM Pulse report\n")
    out.write(
        f"{data.requests:,} requests and {alerts:,} alert events, "
        f"{_clock(data.first)} to {_clock(data.last)} ({_duration(data.span_s)})\n"
    )
    out.write(
        f"skipped {skipped:,} lines: {data.malformed:,} malformed, {data.foreign:,} other events\n"
    )
    for dashboard in (_latency, _tokens, _prompts, _errors):
        dashboard(data, overall, out, width)
    return 0
