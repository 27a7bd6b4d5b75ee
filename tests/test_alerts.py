"""The alert engine: SPEC's four rules fire once, resolve once, and do not flap."""

from __future__ import annotations

import datetime as dt
import math
import random
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from pydantic import ValidationError

from pulse_proxy.alerts import AlertEngine
from pulse_proxy.records import AlertEvent, Exchange
from pulse_proxy.settings import ConfigError, build_settings
from pulse_proxy.settings.alerts import AlertRule, AlertSettings
from pulse_proxy.stats import RollingStats

T0 = 1_800_000_000.0  # a multiple of 60 s, so buckets line up with whole minutes
RFC3339_MS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")

Request = Callable[[random.Random], dict[str, Any]]


def make_exchange(**overrides: Any) -> Exchange:
    """A successful chat request with every figure set; override what the test is about."""
    fields: dict[str, Any] = {
        "request_id": "req-1",
        "method": "POST",
        "path": "/v1/chat/completions",
        "endpoint": "chat",
        "model": "gpt-4o",
        "status_code": 200,
        "latency_ms": 800.0,
        "prompt_tokens": 400,
        "completion_tokens": 50,
        "total_tokens": 100,
        "ended_at": T0,
    }
    fields.update(overrides)
    return Exchange(**fields)


class FakeClock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class Harness:
    """Statistics and engine on one driven clock; traffic one second at a time."""

    def __init__(self, rules: list[AlertRule] | None = None, **settings: Any) -> None:
        self.clock = FakeClock()
        self.stats = RollingStats(clock=self.clock)
        if rules is not None:
            settings["rules"] = rules
        self.engine = AlertEngine(AlertSettings(**settings), self.stats, clock=self.clock)
        self.rng = random.Random(42)
        self.log: list[Exchange] = []
        self.events: list[AlertEvent] = []
        self.seen: dict[str, list[float | None]] = {}  # each evaluation's value per rule

    def run(
        self, seconds: int, request: Request, *, per_second: int = 2, every: int = 5
    ) -> list[AlertEvent]:
        """``seconds`` of traffic, evaluating every ``every`` seconds; the events it caused."""
        new: list[AlertEvent] = []
        for _ in range(seconds):
            self.clock.now += 1
            for j in range(per_second):
                ex = make_exchange(ended_at=self.clock.now - j / per_second, **request(self.rng))
                self.stats.add(ex)
                self.log.append(ex)
            if int(self.clock.now - T0) % every == 0:
                new.extend(self.evaluate())
        return new

    def evaluate(self) -> list[AlertEvent]:
        events = self.engine.evaluate()
        self.events.extend(events)
        for rule in self.engine.state()["rules"]:
            self.seen.setdefault(rule["name"], []).append(rule["value"])
        return events

    def in_window(self, window_s: int = 300) -> list[Exchange]:
        """The records the engine's window holds now (whole 10 s buckets)."""
        start = (math.floor(self.clock.now / 10) - window_s // 10 + 1) * 10
        return [ex for ex in self.log if ex.ended_at >= start]


def exact_p95(values: list[float]) -> float:
    """The sample at rank floor(0.95 (n - 1)), the definition the statistics use.

    (Interpolating would put an alert's first p95 between two clusters, normal and slow.)
    """
    return sorted(values)[math.floor(0.95 * (len(values) - 1))]


def uniform(field: str, low: float, high: float, **extra: Any) -> Request:
    return lambda rng: {field: rng.uniform(low, high), **extra}


def alternate(a: Request, b: Request, period_s: int, harness: Harness) -> Request:
    """``a`` and ``b`` in turns of ``period_s``: makes a window figure hover."""
    # The lambda is needed: the turn is decided at each call, by the clock of then.
    return lambda rng: (a if int(harness.clock.now - T0) // period_s % 2 else b)(rng)  # noqa: PLW0108


@dataclass
class Scenario:
    rule: str
    warmup_s: int
    normal: Request
    incident: Request
    hover_low: Request
    hover_high: Request
    exact_value: Callable[[Harness], float]


def _latency_now(h: Harness) -> float:
    return exact_p95([ex.latency_ms or 0.0 for ex in h.in_window()])


def _error_rate_now(h: Harness) -> float:
    window = h.in_window()
    return sum(ex.is_error for ex in window) / len(window)


def _tokens_per_minute_now(h: Harness) -> float:
    start = (math.floor(h.clock.now / 10) - 29) * 10
    return sum(ex.total_tokens or 0 for ex in h.in_window()) / (h.clock.now - start) * 60


def _prompt_p95_now(h: Harness) -> float:
    return exact_p95([float(ex.prompt_tokens or 0) for ex in h.in_window()])


def _errors(share: float) -> Request:
    """Exactly ``share`` of requests fail, evenly spread (no sampling noise in the rate)."""
    sent = [0]

    def request(rng: random.Random) -> dict[str, Any]:
        sent[0] += 1
        failed = math.floor(sent[0] * share) > math.floor((sent[0] - 1) * share)
        return {"outcome": "upstream_error" if failed else "success"}

    return request


SCENARIOS = [
    Scenario(
        "high_latency",
        warmup_s=400,
        normal=uniform("latency_ms", 400, 1200),
        incident=uniform("latency_ms", 2800, 3200),
        hover_low=uniform("latency_ms", 0, 2000),  # p95 about 1,900
        hover_high=uniform("latency_ms", 0, 2250),  # p95 about 2,140
        exact_value=_latency_now,
    ),
    Scenario(
        "error_rate",
        warmup_s=400,
        normal=_errors(0.01),
        incident=_errors(0.20),
        hover_low=_errors(0.040),
        hover_high=_errors(0.060),
        exact_value=_error_rate_now,
    ),
    Scenario(
        "token_spike",
        warmup_s=3900,  # an hour of baseline: 2 req/s × 100 tokens = 12,000 tokens/min
        normal=lambda rng: {"total_tokens": 100},
        incident=lambda rng: {"total_tokens": 1000},
        hover_low=lambda rng: {"total_tokens": 280},  # 2.8× the baseline
        hover_high=lambda rng: {"total_tokens": 320},  # 3.2×
        exact_value=_tokens_per_minute_now,
    ),
    Scenario(
        "prompt_length_spike",
        warmup_s=3900,  # baseline p95 about 490 tokens, so the threshold is about 1,470
        normal=lambda rng: {"prompt_tokens": rng.randint(300, 500)},
        incident=lambda rng: {"prompt_tokens": rng.randint(3000, 5000)},
        hover_low=lambda rng: {"prompt_tokens": rng.randint(0, 1450)},  # p95 about 1,380
        hover_high=lambda rng: {"prompt_tokens": rng.randint(0, 1650)},  # p95 about 1,570
        exact_value=_prompt_p95_now,
    ),
]


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s.rule for s in SCENARIOS])
def test_default_rule_fires_once_holds_and_resolves_once(scenario: Scenario) -> None:
    """Normal traffic is quiet; crossing fires once with the right value; hovering is quiet; recovery resolves once."""
    h = Harness()
    rule = next(r for r in h.engine.settings.rules if r.name == scenario.rule)
    assert h.run(scenario.warmup_s, scenario.normal, every=60) == []

    # The incident: exactly one alert.fired, carrying the value the window really had.
    fired: list[AlertEvent] = []
    for _ in range(120):
        fired += h.run(5, scenario.incident)
        if fired:
            break
    assert [e.event for e in fired] == ["alert.fired"]
    event = fired[0]
    assert event.alert == scenario.rule and event.metric == rule.metric and event.stat == rule.stat
    assert event.value == pytest.approx(scenario.exact_value(h), rel=0.01)
    assert event.value is not None and event.threshold is not None
    assert event.value > event.threshold
    assert event.resolved_at is None and event.duration_s is None
    assert RFC3339_MS.match(event.fired_at)
    assert h.run(120, scenario.incident) == []  # still the same incident

    # Hovering around the threshold: values cross it both ways, no event either way.
    hover = alternate(scenario.hover_low, scenario.hover_high, 60, h)
    before = len(h.seen[scenario.rule])
    assert h.run(900, hover) == []
    tail = [
        v for v in h.seen[scenario.rule][before + 80 :] if v is not None
    ]  # incident flushed out
    assert min(tail) < event.threshold < max(tail)

    # Back to normal: exactly one alert.resolved, with the incident's duration.
    resolved = h.run(600, scenario.normal)
    assert [e.event for e in resolved] == ["alert.resolved"]
    done = resolved[0]
    assert done.fired_at == event.fired_at and done.threshold == event.threshold
    assert done.resolved_at is not None and RFC3339_MS.match(done.resolved_at)
    assert done.duration_s == pytest.approx(_seconds(done.resolved_at) - _seconds(event.fired_at))
    assert done.value is not None and done.value <= event.threshold * rule.resolve_ratio
    assert h.run(600, scenario.normal) == []
    assert {e.alert for e in h.events} == {scenario.rule}


def _seconds(stamp: str) -> float:
    return dt.datetime.fromisoformat(stamp).timestamp()


def test_spike_thresholds_are_factor_times_baseline() -> None:
    """token_spike reports 3 × the hour before as its threshold, and that baseline excludes the burst."""
    h = Harness()
    h.run(3900, lambda rng: {"total_tokens": 100}, every=60)
    events: list[AlertEvent] = []
    while not events:
        events = h.run(5, lambda rng: {"total_tokens": 1000})
    (event,) = events
    assert event.alert == "token_spike"
    assert event.threshold == pytest.approx(3 * 12_000, rel=0.001)
    assert "baseline of 12,000 tokens/min" in event.message


def test_prompt_hard_cap_fires_on_a_single_prompt() -> None:
    """One prompt above 100,000 tokens fires prompt_length_spike on the window's max, then resolves."""
    h = Harness()
    h.run(600, lambda rng: {"prompt_tokens": 400})
    h.stats.add(make_exchange(prompt_tokens=150_000, ended_at=h.clock.now))
    (event,) = h.evaluate()
    assert (event.alert, event.stat, event.value, event.threshold) == (
        "prompt_length_spike",
        "max",
        150_000,
        100_000,
    )
    assert "hard cap of 100,000 tokens" in event.message
    assert h.run(300, lambda rng: {"prompt_tokens": 400}) == []
    (done,) = h.run(120, lambda rng: {"prompt_tokens": 400})
    assert done.event == "alert.resolved" and done.stat == "max"


def test_spike_rule_needs_a_baseline() -> None:
    """A fresh process has no baseline, so its first traffic is no spike; later it is its own baseline."""
    h = Harness()
    busy = lambda rng: {"total_tokens": 5000, "prompt_tokens": 4000}
    assert h.run(300, busy) == []
    state = {r["name"]: r for r in h.engine.state()["rules"]}
    assert state["token_spike"]["baseline"] is None and state["token_spike"]["state"] == "ok"
    assert state["token_spike"]["value"] == pytest.approx(600_000, rel=0.05)
    assert h.run(900, busy) == []  # the same level, now compared with itself
    state = {r["name"]: r for r in h.engine.state()["rules"]}
    assert state["token_spike"]["baseline"] == pytest.approx(600_000, rel=0.05)
    assert state["prompt_length_spike"]["baseline"] == pytest.approx(4000, rel=0.01)


def test_idle_hour_is_a_zero_rate_baseline() -> None:
    """After an idle hour, a burst of tokens is a spike at once (threshold: the floor); prompt sizes need samples."""
    h = Harness()
    h.clock.now += 3600  # up, but idle
    (event,) = h.run(5, lambda rng: {"total_tokens": 5000, "prompt_tokens": 4000})
    assert (event.alert, event.threshold) == ("token_spike", 5000)
    state = {r["name"]: r for r in h.engine.state()["rules"]}
    assert state["prompt_length_spike"]["baseline"] is None


def test_min_samples_respected() -> None:
    """error_rate waits for 20 requests in the window, however bad the first 19 are."""
    h = Harness()
    assert h.run(19, lambda rng: {"outcome": "timeout"}, per_second=1, every=1) == []
    (event,) = h.run(1, lambda rng: {"outcome": "timeout"}, per_second=1, every=1)
    assert (event.alert, event.value, event.severity) == ("error_rate", 1.0, "critical")
    assert event.message == (
        "error_rate: error rate over the last 5m is 100.0 %, above the threshold of 5.0 % (20 samples)"
    )


def test_for_s_respected() -> None:
    """A rule with for_s fires only after the condition has held that long, and not on a blip."""
    rule = AlertRule(
        name="slow", metric="latency_ms", stat="max", window_s=10, threshold=1000, for_s=30
    )
    h = Harness(rules=[rule])
    slow = lambda rng: {"latency_ms": 5000.0}
    fast = lambda rng: {"latency_ms": 100.0}
    assert h.run(15, slow, every=1) == []
    assert h.engine.state()["rules"][0]["state"] == "pending"
    assert h.run(30, fast, every=1) == []  # the blip left the window before 30 s: back to ok
    assert h.engine.state()["rules"][0]["state"] == "ok"
    assert h.run(30, slow, every=1) == []
    (event,) = h.run(1, slow, every=1)
    assert event.event == "alert.fired"
    start = T0 + 45 + 1  # the first evaluation that saw the second slow stretch
    assert _seconds(event.fired_at) == start + 30


def test_resolves_when_traffic_stops() -> None:
    """A firing rule whose window empties (too few samples) resolves after its hold."""
    h = Harness()
    (fired,) = h.run(30, lambda rng: {"outcome": "timeout"})
    assert fired.alert == "error_rate"
    quiet: list[AlertEvent] = []
    for _ in range(100):
        h.clock.now += 5
        quiet += h.evaluate()
    assert [(e.alert, e.event, e.value) for e in quiet] == [("error_rate", "alert.resolved", None)]


def test_state_and_firing_surfaces() -> None:
    """state() lists every rule with config and state, the active alerts and bounded recent history."""
    h = Harness(history_size=3)
    body = h.engine.state()
    assert body["evaluated_at"] is None and body["active"] == [] and body["recent"] == []
    assert [r["name"] for r in body["rules"]] == [
        "high_latency",
        "token_spike",
        "error_rate",
        "prompt_length_spike",
    ]
    assert body["rules"][0]["config"]["threshold"] == 2000 and body["rules"][0]["state"] == "ok"
    assert h.engine.firing() == dict.fromkeys(
        ["high_latency", "token_spike", "error_rate", "prompt_length_spike"], False
    )

    h.run(60, lambda rng: {"outcome": "timeout", "latency_ms": 9000.0})
    body = h.engine.state()
    assert RFC3339_MS.match(body["evaluated_at"])
    assert {a["alert"] for a in body["active"]} == {"error_rate", "high_latency"}
    assert all(a["event"] == "alert.fired" for a in body["active"])
    assert h.engine.firing()["error_rate"] is True and h.engine.firing()["token_spike"] is False
    states = {r["name"]: r for r in body["rules"]}
    assert states["error_rate"]["state"] == "firing" and states["error_rate"]["value"] == 1.0
    assert states["error_rate"]["samples"] == 120

    h.run(600, lambda rng: {})  # both resolve: four transitions, three kept
    body = h.engine.state()
    assert body["active"] == [] and len(body["recent"]) == 3
    assert body["recent"][0]["event"] == "alert.resolved"  # newest first
    assert not any(h.engine.firing().values())


def test_disabled_rule_never_fires() -> None:
    """enabled: false keeps a rule listed but silent."""
    rules = [
        AlertRule(name="errors", metric="error_rate", stat="rate", threshold=0.05, enabled=False)
    ]
    h = Harness(rules=rules)
    assert h.run(60, lambda rng: {"outcome": "timeout"}) == []
    assert h.engine.state()["rules"][0]["state"] == "disabled"
    assert h.engine.firing() == {"errors": False}


def test_model_scoped_rule_and_labels() -> None:
    """A rule scoped to one model ignores the others; its labels and template reach the event."""
    rule = AlertRule(
        name="mini_slow",
        metric="latency_ms",
        stat="p50",
        threshold=1000,
        model="gpt-4o-mini",
        labels={"team": "search"},
        message="{alert} ({severity}): {model} {stat} {value:,.0f} ms > {threshold:,.0f} ms",
    )
    h = Harness(rules=[rule])
    assert h.run(60, lambda rng: {"latency_ms": 5000.0}) == []  # gpt-4o only
    (event,) = h.run(5, lambda rng: {"latency_ms": 3000.0, "model": "gpt-4o-mini"})
    assert event.labels == {"team": "search"}
    assert re.fullmatch(
        r"mini_slow \(warning\): gpt-4o-mini p50 [23],\d{3} ms > 1,000 ms", event.message
    )
    assert event.to_event()["labels"] == {"team": "search"}


def test_defaults_follow_spec() -> None:
    """The four default rules carry SPEC's metrics, windows, thresholds and sample minimums."""
    rules = {r.name: r for r in AlertSettings().rules}
    assert AlertSettings().evaluation_interval_s == 5
    latency = rules["high_latency"]
    assert (latency.metric, latency.stat, latency.window_s, latency.threshold, latency.min_samples) == (
        "latency_ms", "p95", 300, 2000, 10,
    )  # fmt: skip
    errors = rules["error_rate"]
    assert (errors.metric, errors.threshold, errors.min_samples) == ("error_rate", 0.05, 20)
    tokens = rules["token_spike"]
    assert (tokens.metric, tokens.window_s, tokens.baseline_window_s, tokens.factor) == (
        "tokens_per_minute", 300, 3600, 3,
    )  # fmt: skip
    assert tokens.floor > 0
    prompts = rules["prompt_length_spike"]
    assert (prompts.stat, prompts.baseline_window_s, prompts.factor, prompts.hard_cap) == (
        "p95",
        3600,
        3,
        100_000,
    )


@pytest.mark.parametrize(
    ("rule", "field"),
    [
        ({"metric": "error_rate", "stat": "p95", "threshold": 1}, "stat"),
        (
            {
                "metric": "latency_ms",
                "stat": "p95",
                "threshold": 1,
                "factor": 3,
                "baseline_window_s": 3600,
            },
            "threshold",
        ),
        ({"metric": "latency_ms", "stat": "p95", "factor": 3}, "baseline_window_s"),
        ({"metric": "latency_ms", "stat": "p95", "threshold": 1, "severity": "loud"}, "severity"),
        ({"metric": "latency_ms", "stat": "p95", "threshold": 1, "wat": 1}, "wat"),
        ({"metric": "requests", "stat": "rate", "hard_cap": 10}, "hard_cap"),
        ({"metric": "latency_ms", "stat": "p95", "threshold": 1, "message": "{nope}"}, "message"),
    ],
)
def test_bad_rule_names_the_field(rule: dict[str, Any], field: str) -> None:
    """A bad rule in config fails start-up with a message naming the offending field."""
    with pytest.raises(ConfigError, match=rf"alerts\.rules\.0.*{field}"):
        build_settings({"alerts": {"rules": [{"name": "r", **rule}]}})


def test_duplicate_rule_names_refused() -> None:
    """Two rules with one name would share a gauge series: refused."""
    rule = {"name": "r", "metric": "latency_ms", "stat": "p95", "threshold": 1}
    with pytest.raises(ValidationError, match="duplicate rule name"):
        AlertSettings.model_validate({"rules": [rule, rule]})
