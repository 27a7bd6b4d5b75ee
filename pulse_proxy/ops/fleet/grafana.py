"""A Grafana dashboard of the four standard views, drawn from the proxies' ``/metrics``.

The rows mirror ``pulse-proxy report`` and ``/pulse/``: latency p50/p95 with the
request rate; tokens per request and per minute; the prompt-length distribution with
its spike threshold; the error rate with the alerts that fired.  Figures are summed
across the instances the ``job`` / ``instance`` / ``model`` variables select, the way
the exported rules sum them, and the threshold lines come from the same configured
rules, so what the dashboard shows crossing a line is what the rules alert on.

The data source is a template variable (``${DS_PROMETHEUS}``), so one file works
imported by hand or provisioned; the uid is fixed, so re-importing replaces it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

from pulse_proxy.ops.fleet import promql
from pulse_proxy.ops.fleet.promql import ALERT_FIRING, ERRORS, HISTOGRAMS, REQUESTS, TOKENS, Scope
from pulse_proxy.ops.fleet.rules import number
from pulse_proxy.settings import Settings
from pulse_proxy.settings.alerts import AlertRule

UID = "llm-pulse-fleet"
SCHEMA_VERSION = 39
DATASOURCE: dict[str, str] = {"type": "prometheus", "uid": "${DS_PROMETHEUS}"}
# What the panels read: Grafana widens $__rate_interval to at least four scrapes.
SELECTED = Scope(
    window_s=60,
    range_text="$__rate_interval",
    matchers=('job=~"$job"', 'instance=~"$instance"', 'model=~"$model"'),
)
# llm_alert_firing belongs to a process, not a model: it has no model label.
PROCESS = ('job=~"$job"', 'instance=~"$instance"')
TOKENS_TOTAL = f"token_type=~{promql.quote(promql.TOTAL_TOKEN_TYPES_RE)}"
PANEL_WIDTH = 12
PANEL_HEIGHT = 8


def _target(expr: str, legend: str, ref: str, **extra: Any) -> dict[str, Any]:
    return {
        "datasource": DATASOURCE,
        "expr": expr,
        "legendFormat": legend,
        "range": True,
        "refId": ref,
        **extra,
    }


def _targets(*pairs: tuple[str, str]) -> list[dict[str, Any]]:
    return [_target(expr, legend, chr(ord("A") + i)) for i, (expr, legend) in enumerate(pairs)]


def _timeseries(
    title: str,
    description: str,
    targets: list[dict[str, Any]],
    unit: str,
    threshold: float | None = None,
) -> dict[str, Any]:
    """A time series panel; ``threshold`` draws a rule's fixed threshold as a red line."""
    steps: list[dict[str, Any]] = [{"color": "green", "value": None}]
    if threshold is not None:
        steps.append({"color": "red", "value": threshold})
    return {
        "type": "timeseries",
        "title": title,
        "description": description,
        "datasource": DATASOURCE,
        "targets": targets,
        "fieldConfig": {
            "defaults": {
                "unit": unit,
                "min": 0,
                "custom": {
                    "drawStyle": "line",
                    "lineWidth": 1,
                    "fillOpacity": 10,
                    "showPoints": "never",
                    "spanNulls": False,
                    "thresholdsStyle": {"mode": "line" if threshold is not None else "off"},
                },
                "thresholds": {"mode": "absolute", "steps": steps},
            },
            "overrides": [
                {  # derived lines (thresholds, caps) dashed, so they don't read as traffic
                    "matcher": {"id": "byRegexp", "options": ".*(threshold|cap).*"},
                    "properties": [
                        {"id": "custom.lineStyle", "value": {"fill": "dash", "dash": [10, 10]}},
                        {"id": "color", "value": {"mode": "fixed", "fixedColor": "red"}},
                    ],
                }
            ],
        },
        "options": {
            "legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
            "tooltip": {"mode": "multi", "sort": "desc"},
        },
    }


def _rule(settings: Settings, metric: str, stat: str, *, spike: bool) -> AlertRule | None:
    """The first enabled fleet-wide rule on ``stat`` of ``metric`` (its line goes on the panel)."""
    for rule in settings.alerts.rules:
        if (
            rule.enabled
            and rule.model is None
            and rule.metric == metric
            and rule.stat == stat
            and rule.is_spike == spike
        ):
            return rule
    return None


def _fixed_threshold(
    settings: Settings, metric: str, stat: str, scale: float = 1.0
) -> float | None:
    rule = _rule(settings, metric, stat, spike=False)
    if rule is None or rule.threshold is None:
        return None
    return rule.threshold / scale


def _spike_threshold(settings: Settings, metric: str, stat: str) -> tuple[str, str] | None:
    """max(factor × baseline, floor) as PromQL, the threshold a spike rule compares with."""
    rule = _rule(settings, metric, stat, spike=True)
    if rule is None or rule.baseline_window_s is None or rule.factor is None:
        return None
    history = Scope(
        window_s=rule.baseline_window_s - rule.window_s,
        offset_s=rule.window_s,
        matchers=SELECTED.matchers,
    )
    baseline = promql.figure(metric, stat, history)
    if baseline is None:
        return None
    expr = f"clamp_min({number(rule.factor)} * ({baseline.expr}), {number(rule.floor / baseline.scale)})"
    return expr, f"{rule.name} threshold"


# -- the four rows ---------------------------------------------------------------------


def _latency_row(settings: Settings) -> tuple[str, list[dict[str, Any]]]:
    hist = HISTOGRAMS["latency_ms"]
    p95_by_model = (
        f"histogram_quantile(0.95, sum by (le, model) ({SELECTED.rate(hist.name + '_bucket')}))"
    )
    return "Latency and requests", [
        _timeseries(
            "Latency p50 / p95 (fleet)",
            "Request latency to the last byte, percentiles of the buckets summed over the "
            "selected instances. The red line is the high-latency rule's threshold.",
            _targets(
                (promql.quantile(SELECTED, hist, 0.5), "p50"),
                (promql.quantile(SELECTED, hist, 0.95), "p95"),
                (p95_by_model, "p95 {{model}}"),
            ),
            "s",
            _fixed_threshold(settings, "latency_ms", "p95", hist.scale),
        ),
        _timeseries(
            "Requests per second by model",
            "Proxied requests per second, all outcomes.",
            _targets(
                (f"sum by (model) ({SELECTED.rate(REQUESTS)})", "{{model}}"),
                (f"sum({SELECTED.rate(REQUESTS)})", "all"),
            ),
            "reqps",
        ),
    ]


def _tokens_row(settings: Settings) -> tuple[str, list[dict[str, Any]]]:
    per_type = f"sum by (token_type) ({SELECTED.rate(TOKENS)})"
    with_usage = f"sum({SELECTED.rate(HISTOGRAMS['prompt_tokens'].name + '_count')})"
    per_minute: list[tuple[str, str]] = [
        (f"{per_type} * 60", "{{token_type}}"),
        (f"sum({SELECTED.rate(TOKENS, TOKENS_TOTAL)}) * 60", "total"),
    ]
    spike = _spike_threshold(settings, "tokens_per_minute", "rate")
    if spike is not None:
        per_minute.append(spike)
    return "Tokens", [
        _timeseries(
            "Tokens per request",
            "Tokens per request that reported usage, by type (cached is part of prompt, "
            "reasoning part of completion).",
            _targets((f"{per_type} / on() group_left() {with_usage}", "{{token_type}}")),
            "short",
        ),
        _timeseries(
            "Tokens per minute",
            "Tokens per minute by type; total is prompt + completion. The dashed line is "
            "the token-spike threshold: factor × the baseline before the rule's window, "
            "never below its floor.",
            _targets(*per_minute),
            "short",
        ),
    ]


def _prompt_row(settings: Settings) -> tuple[str, list[dict[str, Any]]]:
    hist = HISTOGRAMS["prompt_tokens"]
    heatmap = {
        "type": "heatmap",
        "title": "Prompt length distribution",
        "description": "Prompts per prompt-length bucket (tokens; buckets are powers of 4).",
        "datasource": DATASOURCE,
        "targets": [
            _target(
                f"sum by (le) ({SELECTED.increase(hist.name + '_bucket')})",
                "{{le}}",
                "A",
                format="heatmap",
            )
        ],
        "options": {
            "calculate": False,
            "cellGap": 1,
            "color": {"mode": "scheme", "scheme": "Oranges", "steps": 64},
            "yAxis": {"axisPlacement": "left", "unit": "short"},
            "rowsFrame": {"layout": "auto"},
            "tooltip": {"show": True, "yHistogram": True},
        },
        "fieldConfig": {"defaults": {}, "overrides": []},
    }
    lines: list[tuple[str, str]] = [
        (promql.quantile(SELECTED, hist, 0.5), "p50"),
        (promql.quantile(SELECTED, hist, 0.95), "p95"),
    ]
    spike = _spike_threshold(settings, "prompt_tokens", "p95")
    if spike is not None:
        lines.append(spike)
    capped = next(
        (
            r
            for r in settings.alerts.rules
            if r.enabled and r.metric == "prompt_tokens" and r.hard_cap
        ),
        None,
    )
    if capped is not None and capped.hard_cap is not None:
        lines.append((f"vector({number(capped.hard_cap)})", f"{capped.name} hard cap"))
    return "Prompt length", [
        heatmap,
        _timeseries(
            "Prompt tokens p50 / p95",
            "Prompt-length percentiles with the prompt-spike threshold (factor × the "
            "baseline p95, never below the floor) and the hard cap.",
            _targets(*lines),
            "short",
        ),
    ]


def _alert_names(settings: Settings) -> str:
    names = [r.name for r in settings.alerts.rules if r.enabled]
    return "|".join(re.escape(n) for n in names) or ".+"


def _errors_row(settings: Settings) -> tuple[str, list[dict[str, Any]]]:
    window = Scope(window_s=300, matchers=SELECTED.matchers)
    rule = _rule(settings, "error_rate", "rate", spike=False)
    if rule is not None:
        window = Scope(window_s=rule.window_s, matchers=SELECTED.matchers)
    alerts = _alert_names(settings)
    firing = {
        "type": "timeseries",
        "title": "Firing alerts",
        "description": "Prometheus's own ALERTS for the exported rules (fleet-wide), and "
        "each proxy's llm_alert_firing (its local view).",
        "datasource": DATASOURCE,
        "targets": _targets(
            (
                f'sum by (alertname, severity) (ALERTS{{alertstate="firing",alertname=~{promql.quote(alerts)}}})',
                "{{alertname}} ({{severity}})",
            ),
            (f"max by (alert) ({ALERT_FIRING}{{{','.join(PROCESS)}}})", "{{alert}} (proxy)"),
        ),
        "fieldConfig": {
            "defaults": {
                "min": 0,
                "max": 1,
                "custom": {"drawStyle": "line", "lineInterpolation": "stepAfter"},
            },
            "overrides": [],
        },
        "options": {"legend": {"displayMode": "list", "placement": "bottom", "showLegend": True}},
    }
    return "Errors and alerts", [
        _timeseries(
            "Error rate",
            "Share of requests that failed upstream (upstream_error, timeout, "
            "connection_error), as the proxy's error rate counts them. The red line is "
            "the error-rate rule's threshold.",
            _targets(
                (promql.error_rate(SELECTED), "error rate"),
                (
                    promql.error_rate(window),
                    f"over {promql.duration(window.window_s)} (as the rule)",
                ),
            ),
            "percentunit",
            _fixed_threshold(settings, "error_rate", "rate"),
        ),
        _timeseries(
            "Errors by type",
            "Requests per second that did not succeed, by error type and outcome (client "
            "errors and disconnects included; they do not count in the error rate).",
            _targets(
                (
                    f"sum by (error_type, outcome) ({SELECTED.rate(ERRORS)})",
                    "{{error_type}} / {{outcome}}",
                )
            ),
            "reqps",
        ),
        firing,
    ]


# -- assembly --------------------------------------------------------------------------


def _layout(rows: list[tuple[str, list[dict[str, Any]]]]) -> list[dict[str, Any]]:
    """Rows of two panels side by side; ids and grid positions assigned in order."""
    panels: list[dict[str, Any]] = []
    y = 0
    for title, row_panels in rows:
        panels.append(
            {
                "type": "row",
                "title": title,
                "collapsed": False,
                "panels": [],
                "gridPos": {"h": 1, "w": 24, "x": 0, "y": y},
            }
        )
        y += 1
        for i, panel in enumerate(row_panels):
            x = (i % 2) * PANEL_WIDTH
            if i and i % 2 == 0:
                y += PANEL_HEIGHT
            panel["gridPos"] = {"h": PANEL_HEIGHT, "w": PANEL_WIDTH, "x": x, "y": y}
            panels.append(panel)
        y += PANEL_HEIGHT
    for number_, panel in enumerate(panels, start=1):
        panel["id"] = number_
    return panels


def _query_variable(name: str, label: str, query: str) -> dict[str, Any]:
    return {
        "name": name,
        "label": label,
        "type": "query",
        "datasource": DATASOURCE,
        "definition": query,
        "query": query,  # the plain string form every Grafana version reads
        "refresh": 2,
        "includeAll": True,
        "multi": True,
        "allValue": ".*",
        "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
        "options": [],
        "sort": 1,
        "hide": 0,
        "regex": "",
    }


def _variables() -> list[dict[str, Any]]:
    return [
        {
            "name": "DS_PROMETHEUS",
            "label": "Data source",
            "type": "datasource",
            "query": "prometheus",
            "current": {},
            "hide": 0,
            "refresh": 1,
            "regex": "",
            "options": [],
        },
        _query_variable("job", "Job", f"label_values({REQUESTS}, job)"),
        _query_variable(
            "instance", "Instance", f'label_values({REQUESTS}{{job=~"$job"}}, instance)'
        ),
        _query_variable(
            "model",
            "Model",
            f'label_values({REQUESTS}{{job=~"$job",instance=~"$instance"}}, model)',
        ),
    ]


def _annotations(settings: Settings) -> list[dict[str, Any]]:
    alerts = promql.quote(_alert_names(settings))
    return [
        {
            "builtIn": 1,
            "datasource": {"type": "grafana", "uid": "-- Grafana --"},
            "enable": True,
            "hide": True,
            "iconColor": "rgba(0, 211, 255, 1)",
            "name": "Annotations & Alerts",
            "type": "dashboard",
        },
        {
            "datasource": DATASOURCE,
            "enable": True,
            "expr": f'ALERTS{{alertstate="firing",alertname=~{alerts}}}',
            "iconColor": "red",
            "name": "Fleet alerts (Prometheus rules)",
            "step": "30s",
            "titleFormat": "{{alertname}}",
            "textFormat": "{{severity}}",
            "tagKeys": "alertname,severity",
            "useValueForTime": False,
        },
        {
            "datasource": DATASOURCE,
            "enable": False,
            "expr": f"max by (alert) ({ALERT_FIRING}{{{','.join(PROCESS)}}}) > 0",
            "iconColor": "orange",
            "name": "Proxy alerts (llm_alert_firing)",
            "step": "30s",
            "titleFormat": "{{alert}}",
            "tagKeys": "alert",
            "useValueForTime": False,
        },
    ]


def dashboard(settings: Settings) -> dict[str, Any]:
    """The dashboard as a dict (``grafana_dashboard`` serialises it)."""
    rows = [
        _latency_row(settings),
        _tokens_row(settings),
        _prompt_row(settings),
        _errors_row(settings),
    ]
    return {
        "annotations": {"list": _annotations(settings)},
        "description": "LLM Pulse: latency, tokens, prompt length and errors over the proxies' /metrics, fleet-wide.",
        "editable": True,
        "graphTooltip": 1,
        "id": None,
        "links": [],
        "panels": _layout(rows),
        "refresh": "30s",
        "schemaVersion": SCHEMA_VERSION,
        "tags": ["llm", "llm-pulse"],
        "templating": {"list": _variables()},
        "time": {"from": "now-1h", "to": "now"},
        "timepicker": {},
        "timezone": "",
        "title": "LLM Pulse (fleet)",
        "uid": UID,
        "version": 1,
    }


def expressions(board: dict[str, Any]) -> Iterator[str]:
    """Every PromQL expression in ``board``: panel targets, annotations, variable queries."""
    for panel in board["panels"]:
        for target in panel.get("targets", []):
            yield target["expr"]
    for annotation in board["annotations"]["list"]:
        if "expr" in annotation:
            yield annotation["expr"]
    for variable in board["templating"]["list"]:
        if variable["type"] == "query":
            match = re.fullmatch(r"label_values\((.*), *\w+\)", variable["definition"])
            assert match is not None, variable["definition"]
            yield match.group(1)


def grafana_dashboard(settings: Settings) -> str:
    """The dashboard JSON, keys in a stable order so an export diffs cleanly."""
    return json.dumps(dashboard(settings), indent=2, ensure_ascii=False) + "\n"
