"""Fleet exports: the Prometheus rules file and the Grafana dashboard.

promtool (Debian's ``prometheus`` package) is the judge of the rules: ``check rules``
for the exported files, and ``test rules`` for what they mean, with synthetic series
generated here: each seed rule fires on an incident summed across two instances and
stays quiet on a calm fleet (and on the near misses that the proxy also ignores).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from conftest import RunningProxy, start_proxy

from pulse_proxy.ops.cli import main
from pulse_proxy.ops.fleet import grafana_dashboard, prometheus_rules
from pulse_proxy.ops.fleet.grafana import UID, expressions
from pulse_proxy.ops.fleet.promql import duration, le
from pulse_proxy.settings import Settings, build_settings
from pulse_proxy.sinks.prometheus import DURATION_BUCKETS, TOKEN_BUCKETS

PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"
needs_promtool = pytest.mark.skipif(
    not Path(PROMTOOL).exists(), reason="promtool not installed (Debian package 'prometheus')"
)
CHAT = {"model": "gpt-4o", "messages": [{"role": "user", "content": "hello"}]}

CUSTOM_RULES: list[dict[str, Any]] = [
    {"name": "slow_gpt4o", "metric": "latency_ms", "stat": "p99", "threshold": 1500, "model": "gpt-4o",
     "min_samples": 5, "for_s": 120, "resolve_for_s": 30, "severity": "critical", "labels": {"team": "search"}},
    {"name": "slow_first_token", "metric": "ttft_ms", "stat": "mean", "window_s": 60, "threshold": 800},
    {"name": "traffic_gone", "metric": "requests", "stat": "rate", "op": "<", "threshold": 0.1, "window_s": 600},
    {"name": "any_slow", "metric": "latency_ms", "stat": "max", "threshold": 30000},
    {"name": "huge_prompt", "metric": "prompt_tokens", "stat": "max", "hard_cap": 65536},
    {"name": "spend", "metric": "cost_usd", "stat": "sum", "threshold": 50, "window_s": 3600, "min_samples": 3},
    {"name": "mean_cost", "metric": "cost_usd", "stat": "mean", "threshold": 0.5},
    {"name": "biggest_answer", "metric": "total_tokens", "stat": "max", "threshold": 100000},
    {"name": "quiet", "metric": "error_rate", "stat": "rate", "threshold": 0.5, "enabled": False},
]  # fmt: skip


def custom_settings() -> Settings:
    return build_settings({"alerts": {"rules": CUSTOM_RULES}})


def promtool(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PROMTOOL, *args], check=False, capture_output=True, text=True, cwd=cwd, timeout=60
    )


def rules_of(text: str) -> list[dict[str, Any]]:
    (group,) = yaml.safe_load(text)["groups"]
    return list(group["rules"])


# -- metric names a PromQL expression reads --------------------------------------------

_KEYWORDS = frozenset({
    "and", "or", "unless", "by", "without", "on", "ignoring", "group_left", "group_right",
    "offset", "bool", "inf", "nan",
})  # fmt: skip
_PROMETHEUS_MADE = frozenset({"ALERTS", "ALERTS_FOR_STATE"})


def metric_names(expr: str) -> set[str]:
    """The series names ``expr`` selects (functions, keywords, labels and durations removed)."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    text = re.sub(r"\{[^}]*\}|\[[^\]]*\]", " ", text)
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    names = set()
    for match in re.finditer(r"(?<![\w.$])([a-zA-Z_:][\w:]*)\b(?!\s*\()", text):
        if match.group(1) not in _KEYWORDS:
            names.add(match.group(1))
    return names


def exposed_names(metrics_text: str) -> set[str]:
    """Sample names in a /metrics body (``llm_x_bucket``, ``llm_x_total`` …)."""
    names = set()
    for line in metrics_text.splitlines():
        if line and not line.startswith("#"):
            names.add(re.split(r"[{ ]", line, maxsplit=1)[0])
    return names


def dashboard_exprs(text: str, substitutions: dict[str, str] | None = None) -> list[str]:
    """Every expression of the dashboard, Grafana's variables replaced by what they select."""
    subs = substitutions or {
        "$__rate_interval": "1m",
        "$job": ".*",
        "$instance": ".*",
        "$model": ".*",
    }
    out = []
    for expr in expressions(json.loads(text)):
        for variable, value in subs.items():
            expr = expr.replace(variable, value)
        assert "$" not in expr, expr
        out.append(expr)
    return out


def rule_exprs(text: str) -> list[str]:
    return [rule["expr"] for rule in rules_of(text)]


def drive_traffic(proxy: RunningProxy) -> None:
    """One of each kind of request, so every lazily created series exists."""
    with httpx.Client(timeout=30) as client:
        client.post(proxy.base_url + "/chat/completions", json=CHAT)
        client.post(proxy.base_url + "/chat/completions", json={**CHAT, "stream": True})
        client.post(
            proxy.base_url + "/chat/completions", json=CHAT, headers={"X-Mock-Status": "500"}
        )
        client.post(
            proxy.base_url + "/chat/completions", json=CHAT, headers={"X-Mock-Cached-Tokens": "2"}
        )
    proxy.wait_for(4)


# -- the rules file --------------------------------------------------------------------


def test_default_export_has_the_four_seed_rules_over_fleet_sums() -> None:
    text = prometheus_rules(Settings())
    assert text.startswith("# Prometheus alerting rules")
    assert "Generated by `pulse-proxy export prometheus-rules`" in text
    rules = {(r["alert"], r["labels"].get("trigger", "")): r for r in rules_of(text)}
    assert sorted(rules) == sorted(
        [("high_latency", ""), ("token_spike", ""), ("error_rate", ""),
         ("prompt_length_spike", ""), ("prompt_length_spike", "hard_cap")]
    )  # fmt: skip
    latency = rules[("high_latency", "")]
    assert latency["expr"].splitlines() == [
        "histogram_quantile(0.95, sum by (le) (rate(llm_request_duration_seconds_bucket[5m]))) > 2",
        "and",
        "sum(increase(llm_request_duration_seconds_count[5m])) >= 10",
    ]
    assert latency["labels"] == {"severity": "warning"}
    assert latency["keep_firing_for"] == "1m" and "for" not in latency
    assert "{{ $value | humanizeDuration }}" in latency["annotations"]["summary"]
    assert rules[("error_rate", "")]["labels"] == {"severity": "critical"}
    # The proxy's error rate counts only the service's failures: so does the rule.
    assert 'outcome=~"connection_error|timeout|upstream_error"' in rules[("error_rate", "")]["expr"]
    spike = rules[("token_spike", "")]["expr"]
    assert "[55m] offset 5m" in spike and "> 5000" in spike
    assert 'le="65536.0"' in rules[("prompt_length_spike", "hard_cap")]["expr"]
    for rule in rules.values():
        assert "instance" not in rule["expr"]  # fleet-wide: nothing groups by instance


def test_export_is_stable() -> None:
    assert prometheus_rules(Settings()) == prometheus_rules(Settings())
    assert grafana_dashboard(Settings()) == grafana_dashboard(Settings())


def test_custom_rules_keep_their_settings_and_skips_are_explained() -> None:
    text = prometheus_rules(custom_settings())
    rules = {r["alert"]: r for r in rules_of(text)}
    assert sorted(rules) == [
        "any_slow",
        "huge_prompt",
        "slow_first_token",
        "slow_gpt4o",
        "spend",
        "traffic_gone",
    ]
    slow = rules["slow_gpt4o"]
    assert slow["for"] == "2m" and slow["keep_firing_for"] == "30s"
    assert slow["labels"] == {"team": "search", "severity": "critical", "model": "gpt-4o"}
    assert 'llm_request_duration_seconds_bucket{model="gpt-4o"}[5m]' in slow["expr"]
    assert "histogram_quantile(0.99," in slow["expr"] and "> 1.5\n" in slow["expr"]
    assert (
        "> 0.8" in rules["slow_first_token"]["expr"] and "[1m]" in rules["slow_first_token"]["expr"]
    )
    assert "sum(rate(llm_requests_total[10m])) < 0.1" in rules["traffic_gone"]["expr"]
    assert 'le="20.48"' in rules["any_slow"]["expr"]  # 30 s -> the bucket bound below it
    assert rules["huge_prompt"]["labels"]["trigger"] == "hard_cap"
    assert 'le="65536.0"' in rules["huge_prompt"]["expr"]  # exact: the cap is a bound
    assert "keep_firing_for" not in rules["traffic_gone"]  # no for_s, no resolve hold
    assert "# quiet: skipped, disabled in the config" in text
    assert "# mean_cost: skipped, mean of cost_usd has no Prometheus equivalent" in text
    assert "# biggest_answer: skipped, total_tokens has no histogram" in text
    assert "#   threshold: a histogram has no maximum" in text  # any_slow's approximation


def test_rules_with_none_left_still_make_a_valid_file(tmp_path: Path) -> None:
    settings = build_settings({"alerts": {"rules": [CUSTOM_RULES[-1]]}})
    text = prometheus_rules(settings)
    assert rules_of(text) == []
    if Path(PROMTOOL).exists():
        (tmp_path / "rules.yml").write_text(text)
        assert promtool("check", "rules", str(tmp_path / "rules.yml")).returncode == 0


@needs_promtool
@pytest.mark.parametrize("config", ["default", "custom"])
def test_promtool_checks_the_exported_rules(tmp_path: Path, config: str) -> None:
    """Through the CLI, as CI runs it: export to a file, then ``promtool check rules``."""
    args = ["export", "prometheus-rules", "-o", str(tmp_path / "rules.yml")]
    if config == "custom":
        (tmp_path / "pulse.yaml").write_text(yaml.safe_dump({"alerts": {"rules": CUSTOM_RULES}}))
        args += ["--config", str(tmp_path / "pulse.yaml")]
    with pytest.raises(SystemExit) as exit_:
        main(args)
    assert exit_.value.code == 0
    result = promtool("check", "rules", str(tmp_path / "rules.yml"))
    assert result.returncode == 0, result.stdout + result.stderr
    expected = 5 if config == "default" else 6
    assert f"SUCCESS: {expected} rules found" in result.stdout


# -- what the seed rules mean: promtool test rules on synthetic series ---------------------

MINUTES = 70
EVAL = "65m"  # 60 calm minutes of baseline, then the judged 5 minutes
FLEET = ({"job": "pulse", "instance": "a:8080"}, {"job": "pulse", "instance": "b:8080"})


def _series(name: str, labels: dict[str, str], per_minute: Sequence[float]) -> dict[str, str]:
    """A counter that grows by ``per_minute[i]`` in minute ``i`` (explicit values)."""
    values, total = ["0"], 0.0
    for step in per_minute:
        total += step
        values.append(f"{total:g}")
    selector = ",".join(f'{k}="{v}"' for k, v in labels.items())
    return {"series": f"{name}{{{selector}}}", "values": " ".join(values)}


def _phases(calm: float, incident: float, start: int = 60) -> list[float]:
    return [calm if minute < start else incident for minute in range(MINUTES)]


def _histogram(
    name: str,
    buckets: Iterable[float],
    labels: dict[str, str],
    observations: dict[float, list[float]],
) -> list[dict[str, str]]:
    """Bucket, count and sum series for observations ``{value: per-minute counts}``."""
    out = []
    for bound in (*buckets, float("inf")):
        per_minute = [
            sum(counts[m] for value, counts in observations.items() if value <= bound)
            for m in range(MINUTES)
        ]
        out.append(_series(f"{name}_bucket", {**labels, "le": le(bound)}, per_minute))
    totals = [sum(counts[m] for counts in observations.values()) for m in range(MINUTES)]
    out.append(_series(f"{name}_count", labels, totals))
    sums = [
        sum(value * counts[m] for value, counts in observations.items()) for m in range(MINUTES)
    ]
    out.append(_series(f"{name}_sum", labels, sums))
    return out


def _latency(per_instance: dict[float, list[float]]) -> list[dict[str, str]]:
    labels = {"model": "gpt-4o", "endpoint": "chat", "status_class": "2xx"}
    return [
        s for inst in FLEET
        for s in _histogram("llm_request_duration_seconds", DURATION_BUCKETS, {**inst, **labels}, per_instance)
    ]  # fmt: skip


def _requests(per_minute: list[float], errors: dict[str, list[float]]) -> list[dict[str, str]]:
    out = []
    for inst in FLEET:
        out.append(_series("llm_requests_total", {**inst, "model": "gpt-4o"}, per_minute))
        for outcome, counts in errors.items():
            labels = {**inst, "model": "gpt-4o", "error_type": outcome, "outcome": outcome}
            out.append(_series("llm_request_errors_total", labels, counts))
    return out


def _tokens(
    prompt: list[float], completion: list[float], cached: list[float], requests: list[float]
) -> list[dict[str, str]]:
    out = []
    for inst in FLEET:
        for kind, counts in (("prompt", prompt), ("completion", completion), ("cached", cached)):
            out.append(
                _series("llm_tokens_total", {**inst, "model": "gpt-4o", "token_type": kind}, counts)
            )
        out += _histogram(
            "llm_prompt_length_tokens",
            TOKEN_BUCKETS,
            {**inst, "model": "gpt-4o"},
            {100.0: requests},
        )
    return out


def _prompts(observations: dict[float, list[float]]) -> list[dict[str, str]]:
    return [
        s for inst in FLEET
        for s in _histogram("llm_prompt_length_tokens", TOKEN_BUCKETS, {**inst, "model": "gpt-4o"}, observations)
    ]  # fmt: skip


# Per instance: each scenario's numbers are per instance, and two instances run.
SCENARIOS: dict[str, tuple[str, list[dict[str, str]], list[dict[str, str]]]] = {
    # 1.5 slow requests a minute per instance: 7.5 in 5 min each, below min_samples
    # alone, 15 as a fleet: the fleet fires.
    "high_latency fires on the fleet's p95": (
        "high_latency", _latency({3.0: _phases(0, 1.5)}), [{}]
    ),
    "high_latency stays quiet while fast": ("high_latency", _latency({0.1: _phases(1.5, 1.5)}), []),
    "high_latency stays quiet on too few requests": ("high_latency", _latency({3.0: _phases(0, 0.5)}), []),
    "error_rate fires on upstream errors": (
        "error_rate", _requests(_phases(10, 10), {"upstream_error": _phases(0, 1.5)}), [{}]
    ),
    # Client errors are not the service's failures: the proxy does not count them either.
    "error_rate ignores client errors": (
        "error_rate", _requests(_phases(10, 10), {"client_error": _phases(5, 5)}), []
    ),
    "error_rate stays quiet with no error series": ("error_rate", _requests(_phases(10, 10), {}), []),
    "token_spike fires past 3x the baseline and the floor": (
        "token_spike", _tokens(_phases(1000, 6000), _phases(500, 500), _phases(0, 0), _phases(3, 3)), [{}]
    ),
    "token_spike stays quiet on steady traffic": (
        "token_spike", _tokens(_phases(1000, 1000), _phases(500, 500), _phases(0, 0), _phases(3, 3)), []
    ),
    # Cached tokens are part of prompt: a jump in them alone is no new traffic.
    "token_spike ignores cached tokens": (
        "token_spike", _tokens(_phases(1000, 1000), _phases(500, 500), _phases(0, 20000), _phases(3, 3)), []
    ),
    "token_spike stays quiet under the floor": (
        "token_spike", _tokens(_phases(100, 1000), _phases(0, 0), _phases(0, 0), _phases(3, 3)), []
    ),
    "prompt_length_spike fires on a p95 jump": (
        "prompt_length_spike", _prompts({150.0: _phases(3, 0), 3000.0: _phases(0, 3)}), [{}]
    ),
    "prompt_length_spike stays quiet on steady prompts": (
        "prompt_length_spike", _prompts({150.0: _phases(3, 3)}), []
    ),
    "prompt_length_spike fires on one prompt over the hard cap": (
        "prompt_length_spike",
        _prompts({150.0: _phases(10, 10), 150_000.0: [1.0 if m == 62 else 0.0 for m in range(MINUTES)]}),
        [{"trigger": "hard_cap"}],
    ),
}  # fmt: skip


def _without_annotations(text: str) -> str:
    """The rules as exported, minus annotations: their text embeds $value, and this
    test is about when rules fire; promtool check rules already validates templates."""
    doc = yaml.safe_load(text)
    for rule in doc["groups"][0]["rules"]:
        rule.pop("annotations", None)
    stripped: str = yaml.safe_dump(doc, sort_keys=False)
    return stripped


def _severity(alert: str) -> str:
    return {"error_rate": "critical"}.get(alert, "warning")


@needs_promtool
def test_promtool_unit_tests_seed_rules_fire_and_stay_quiet(tmp_path: Path) -> None:
    (tmp_path / "rules.yml").write_text(_without_annotations(prometheus_rules(Settings())))
    tests = []
    for name, (alert, series, expected) in SCENARIOS.items():
        exp = [{"exp_labels": {"severity": _severity(alert), **extra}} for extra in expected]
        tests.append(
            {
                "name": name,
                "interval": "1m",
                "input_series": series,
                "alert_rule_test": [{"eval_time": EVAL, "alertname": alert, "exp_alerts": exp}],
            }
        )
    doc = {"rule_files": ["rules.yml"], "evaluation_interval": "1m", "tests": tests}
    (tmp_path / "test.yml").write_text(yaml.safe_dump(doc, sort_keys=False))
    result = promtool("test", "rules", "test.yml", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


# -- the Grafana dashboard ---------------------------------------------------------------


def _panels(board: dict[str, Any]) -> Iterator[dict[str, Any]]:
    return (p for p in board["panels"] if p["type"] != "row")


def test_dashboard_is_grafana_json_with_variables_and_four_rows() -> None:
    board = json.loads(grafana_dashboard(Settings()))
    assert board["uid"] == UID and board["schemaVersion"] == 39
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variables["DS_PROMETHEUS"]["type"] == "datasource"
    for name in ("job", "instance", "model"):
        assert variables[name]["definition"].startswith("label_values(")
        assert variables[name]["includeAll"] and variables[name]["allValue"] == ".*"
    rows = [p["title"] for p in board["panels"] if p["type"] == "row"]
    assert rows == ["Latency and requests", "Tokens", "Prompt length", "Errors and alerts"]
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids))
    for panel in _panels(board):
        assert panel["datasource"] == {"type": "prometheus", "uid": "${DS_PROMETHEUS}"}
        assert panel["targets"], panel["title"]
    types = {p["title"]: p["type"] for p in _panels(board)}
    assert types["Prompt length distribution"] == "heatmap"
    annotations = [a for a in board["annotations"]["list"] if "expr" in a]
    assert any(a["expr"].startswith("ALERTS{") for a in annotations)
    assert any("llm_alert_firing" in a["expr"] for a in annotations)


def test_dashboard_draws_the_configured_thresholds() -> None:
    board = json.loads(grafana_dashboard(Settings()))
    panels = {p["title"]: p for p in _panels(board)}
    steps = panels["Latency p50 / p95 (fleet)"]["fieldConfig"]["defaults"]["thresholds"]["steps"]
    assert steps[-1]["value"] == 2.0  # 2000 ms, in seconds
    steps = panels["Error rate"]["fieldConfig"]["defaults"]["thresholds"]["steps"]
    assert steps[-1]["value"] == 0.05
    prompt = [t["expr"] for t in panels["Prompt tokens p50 / p95"]["targets"]]
    assert "vector(100000)" in prompt
    assert any(
        e.startswith("clamp_min(3 * (histogram_quantile(0.95") and e.endswith(", 1000)")
        for e in prompt
    )
    tokens = [t["expr"] for t in panels["Tokens per minute"]["targets"]]
    assert any("[55m] offset 5m" in e and e.endswith(", 5000)") for e in tokens)


@needs_promtool
def test_dashboard_expressions_parse(tmp_path: Path) -> None:
    """promtool parses PromQL offline when it checks rules: one recording rule per expr."""
    exprs = dashboard_exprs(grafana_dashboard(Settings()))
    group = {
        "name": "dashboard",
        "rules": [{"record": f"dashboard:expr_{i}", "expr": e} for i, e in enumerate(exprs)],
    }
    (tmp_path / "exprs.yml").write_text(yaml.safe_dump({"groups": [group]}))
    result = promtool("check", "rules", str(tmp_path / "exprs.yml"))
    assert result.returncode == 0, result.stdout + result.stderr


def test_metric_name_extraction() -> None:
    expr = 'histogram_quantile(0.95, sum by (le) (rate(a_bucket{x="y(z)"}[5m] offset 1h))) > 2 and on() sum(b_total) or vector(0)'
    assert metric_names(expr) == {"a_bucket", "b_total"}


def test_exports_read_only_metrics_a_live_proxy_exposes(mock_url: str) -> None:
    with start_proxy(mock_url + "/v1") as proxy:
        drive_traffic(proxy)
        exposed = exposed_names(httpx.get(proxy.url + "/metrics").text)
    used: set[str] = set()
    for expr in dashboard_exprs(grafana_dashboard(Settings())):
        used |= metric_names(expr)
    for text in (prometheus_rules(Settings()), prometheus_rules(custom_settings())):
        for expr in rule_exprs(text):
            used |= metric_names(expr)
    assert used - _PROMETHEUS_MADE <= exposed, sorted(used - _PROMETHEUS_MADE - exposed)
    assert {"llm_request_duration_seconds_bucket", "llm_requests_total", "llm_tokens_total"} <= used


def test_duration_format() -> None:
    assert [duration(s) for s in (300, 3300, 3600, 90, 1.5, 5400)] == [
        "5m",
        "55m",
        "1h",
        "90s",
        "1500ms",
        "90m",
    ]
