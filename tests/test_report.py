"""``pulse-proxy report``: the four dashboards from log lines, tolerant of anything else."""

from __future__ import annotations

import datetime as dt
import io
import json
import re
from typing import Any

from pulse_proxy.ops.report import run_report

T0 = 1_800_000_000.0  # 2027-01-15T08:00:00Z


def stamp(epoch: float) -> str:
    return (
        dt.datetime.fromtimestamp(epoch, dt.UTC)
        .isoformat(timespec="milliseconds")
        .replace("+00:00", "Z")
    )


def request_line(i: int, **overrides: Any) -> str:
    """One ``llm.request`` line as the log sink writes it."""
    event: dict[str, Any] = {
        "event": "llm.request",
        "timestamp": stamp(T0 + i),
        "level": "info",
        "schema": "pulse.v1",
        "request_id": f"req-{i}",
        "model": "gpt-4o",
        "outcome": "success",
        "latency_ms": 1000.0,
        "ttft_ms": 200.0,
        "prompt_tokens": 100,
        "completion_tokens": 20,
        "total_tokens": 120,
        "cost_usd": 0.01,
    }
    event.update(overrides)
    return json.dumps(event)


def alert_line(kind: str, **fields: Any) -> str:
    event = {
        "event": kind,
        "timestamp": stamp(T0 + 500),
        "alert": "error_rate",
        "severity": "critical",
        "metric": "error_rate",
        "stat": "rate",
        "value": 0.125,
        "threshold": 0.05,
        "window_s": 300,
        "message": "error_rate: error rate over the last 5m is 12.5 %",
        "fired_at": stamp(T0 + 500),
        "resolved_at": None,
        "duration_s": None,
        "labels": {},
    }
    event.update(fields)
    return json.dumps(event)


def report(lines: list[str], width: int = 100) -> tuple[int, str]:
    out = io.StringIO()
    code = run_report(lines, out, width=width)
    return code, out.getvalue()


def section(text: str, title: str) -> str:
    """The text of one numbered dashboard."""
    start = text.index(title)
    following = re.search(r"\n\d\. ", text[start + 1 :])
    return text[start : start + 1 + following.start()] if following else text[start:]


def row(text: str, first_cell: str) -> list[str]:
    """The cells of the table row that starts with ``first_cell``."""
    for line in text.splitlines():
        if line.startswith(first_cell + " "):
            return line[len(first_cell) :].split()
    raise AssertionError(f"no row {first_cell!r} in:\n{text}")


def assert_figures(cells: list[str], expected: list[float]) -> None:
    """Each printed figure within 1 % (the sketch's promise) of the exact one."""
    figures = [float(cell.replace(",", "")) for cell in cells]
    assert len(figures) == len(expected), cells
    for figure, exact in zip(figures, expected):
        assert abs(figure - exact) <= 0.01 * exact, (cells, expected)


def sample_lines() -> list[str]:
    lines = []
    # 120 requests over two minutes: gpt-4o at 1,000 ms, mini at 200..2,180 ms, 10 % mini errors.
    for i in range(60):
        lines.append(request_line(2 * i))
        lines.append(
            request_line(
                2 * i + 1,
                model="gpt-4o-mini",
                latency_ms=200.0 + 33 * (i + 1) if i < 59 else 2180.0,
                outcome="upstream_error"
                if i % 10 == 0
                else ("client_error" if i == 5 else "success"),
                prompt_tokens=5000 if i == 30 else 100,
                total_tokens=5020 if i == 30 else 120,
                cost_usd=None,
            )
        )
    lines += [
        "not json at all",
        '{"event": "pulse.started", "upstream": "mock"}',  # ours, but not a dashboard event
        '{"unrelated": true}',  # someone else's JSON
        "[1, 2, 3]",
        '{"event": "llm.request", "timestamp": 12, "latency_ms": "fast", "model": "gpt-4o"',  # cut off
        "",
        "2027-01-15T08:00:00.000000000Z " + request_line(200, latency_ms=3000.0),  # docker logs -t
        alert_line("alert.fired"),
        alert_line("alert.resolved", value=0.01, resolved_at=stamp(T0 + 800), duration_s=300.0),
    ]
    return lines


def test_counts_and_skips_foreign_lines() -> None:
    """Garbage, truncated JSON and other events are counted as skipped, never fatal."""
    code, text = report(sample_lines())
    assert code == 0
    assert "121 requests and 2 alert events" in text
    assert "skipped 5 lines: 3 malformed, 2 other events" in text
    assert "2027-01-15 08:00:00Z to 2027-01-15 08:03:20Z (3m 20s)" in text


def test_latency_dashboard() -> None:
    """Per model: request count and latency p50/p95 (sketch, within 1 %), overall last."""
    text = section(report(sample_lines())[1], "1. Latency per model")
    # Quantiles are the sample at rank floor(q (n - 1)), as in the live statistics.
    # gpt-4o: 60 requests at 1,000 ms and one at 3,000: p99 (rank 59.4) is still 1,000.
    assert_figures(row(text, "gpt-4o"), [61, 1000, 1000, 1000, 200, 200])
    # mini: 233, 266, .. 2,147, 2,180 ms: p50 (rank 29) 1,190, p95 (rank 56) 2,081, p99 (58) 2,147.
    assert_figures(row(text, "gpt-4o-mini"), [60, 1190, 2081, 2147, 200, 200])
    assert row(text, "(all models)")[0] == "121"


def test_tokens_dashboard() -> None:
    """Token sums, tokens per request and per minute, and cost totals per model."""
    text = section(report(sample_lines())[1], "2. Tokens per request and per minute")
    # The log spans 200 s: tokens per minute = total / (200 / 60).
    assert row(text, "gpt-4o") == ["61", "6,100", "1,220", "7,320", "120.0", "2,196.0", "0.6100"]
    assert row(text, "gpt-4o-mini") == ["60", "10,900", "1,200", "12,100", "201.7", "3,630.0", "-"]
    assert row(text, "(all models)")[3:6] == ["19,420", "160.5", "5,826.0"]
    assert "Tokens per minute over time" in text


def test_prompt_length_dashboard() -> None:
    """A power-of-4 histogram of prompt sizes, with the outlier prompt called out."""
    text = section(report(sample_lines())[1], "3. Prompt length (tokens)")
    assert "121 prompts: p50 100, p95 100, max 5,000" in text
    assert re.search(r"64-255 \|\s+120 #+", text)
    assert re.search(r"4,096-16,383 \|\s+1 #", text)
    assert "5,000  2027-01-15T08:01:01.000Z  gpt-4o-mini  req-61  ! spike" in text


def test_errors_and_alerts_dashboard() -> None:
    """Error rate overall and per model with the outcome breakdown, then the alerts."""
    text = section(report(sample_lines())[1], "4. Errors and alerts")
    assert "6 errors in 121 requests (4.96 %)" in text
    assert row(text, "gpt-4o-mini") == [
        "60",
        "6",
        "10.00",
        "%",
        "client_error=1",
        "upstream_error=6",
    ]
    assert row(text, "gpt-4o")[:4] == ["61", "0", "0.00", "%"]
    assert "error_rate: fired 1, resolved 1" in text
    assert row(text, "error_rate")[:5] == ["FIRED", "2027-01-15", "08:08:20Z", "critical", "12.5"]
    assert row(text, "error_rate")[-1] == "-"
    resolved = [line for line in text.splitlines() if "resolved  2027" in line]
    assert resolved and resolved[0].rstrip().endswith("5m 00s")


def test_no_usable_lines_returns_one() -> None:
    """Only foreign lines: a one-line explanation and exit code 1."""
    code, text = report(["hello", '{"event": "pulse.started"}'])
    assert code == 1
    assert (
        text
        == "pulse-proxy report: no llm.request or alert.* lines among 2 (1 malformed, 1 other events skipped)\n"
    )


def test_long_model_names_are_shown_whole() -> None:
    """Model names are never cut: the name column widens to the longest, so two
    fine-tunes differing only in their last character stay distinct and aligned."""
    stem = "ft:gpt-4o-mini-2024-07-18:acme-research:customer-support-summaries:9abcDEF"
    names = [stem + "a", stem + "b"]
    lines = [request_line(i, model=names[i % 2]) for i in range(6)]
    code, text = report(lines, width=80)
    assert code == 0
    for title in ("1. Latency", "2. Tokens", "4. Errors"):
        table = section(text, title)
        rows = [line for line in table.splitlines() if line.startswith(stem)]
        assert sorted(line.split()[0] for line in rows) == names, table
        # The name column is exactly as wide as the longest name, on every row.
        header = next(line for line in table.splitlines() if line.startswith("model "))
        width = len(names[0])
        assert header[width : width + 2 + len("requests")] == "  requests", table
        assert all(line[width : width + 2] == "  " for line in rows), table


def test_throttled_requests_counted_per_rule() -> None:
    """Throttled requests are counted per limit rule and are not errors."""
    lines = [request_line(i) for i in range(4)]
    lines += [
        request_line(10 + i, outcome="throttled", throttled_by="per_key", total_tokens=None)
        for i in range(3)
    ]
    lines.append(request_line(20, outcome="throttled", throttled_by="token_brake"))
    text = section(report(lines)[1], "4. Errors and alerts")
    assert "0 errors in 8 requests" in text
    assert "throttled (answered 429 by a limit rule, not errors): per_key 3, token_brake 1" in text
