from __future__ import annotations

from typing import Any

import pytest
from factories import make_exchange
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families

from pulse_proxy.sinks.prometheus import (
    DURATION_BUCKETS,
    TOKEN_BUCKETS,
    TTFT_BUCKETS,
    PrometheusSink,
    exposition,
)

COMMON = {"model", "endpoint", "upstream", "status_class", "stream"}


def scrape(registry: CollectorRegistry) -> dict[str, Metric]:
    """The exposition as /metrics serves it, parsed by prometheus_client's own parser."""
    body, content_type = exposition(registry)
    assert content_type.startswith("text/plain; version=0.0.4")
    return {family.name: family for family in text_string_to_metric_families(body.decode())}


def samples(family: Metric, name: str) -> list[Any]:
    return [s for s in family.samples if s.name == name]


def value(family: Metric, name: str, **labels: str) -> float:
    found = [
        s.value
        for s in samples(family, name)
        if all(s.labels.get(k) == v for k, v in labels.items())
    ]
    assert len(found) == 1, (name, labels, found)
    return float(found[0])


def le_bounds(family: Metric) -> list[float]:
    bounds = {float(s.labels["le"]) for s in family.samples if s.name.endswith("_bucket")}
    return sorted(b for b in bounds if b != float("inf"))


def test_names_types_and_label_sets() -> None:
    """Every SPEC metric is exposed with its Prometheus type and the common labels."""
    registry = CollectorRegistry()
    sink = PrometheusSink(
        registry, error_rate=lambda: 0.0, alert_firing=lambda: {"high_latency": False}
    )
    sink.on_exchange(
        make_exchange(
            stream=True, ttft_ms=95.0, risk_flags=["pii"], cached_tokens=8, reasoning_tokens=3
        )
    )
    sink.on_exchange(
        make_exchange(
            status_code=503, outcome="upstream_error", error_type="server_error", prompt_tokens=None
        )
    )
    families = scrape(registry)
    expected = {
        "llm_requests": "counter",
        "llm_request_duration_seconds": "histogram",
        "llm_time_to_first_token_seconds": "histogram",
        "llm_tokens": "counter",
        "llm_prompt_length_tokens": "histogram",
        "llm_request_errors": "counter",
        "llm_cost_usd": "counter",
        "llm_prompt_risk": "counter",
        "llm_tokens_drift": "histogram",
        "llm_unpriced_requests": "counter",
        "llm_request_error_rate": "gauge",
        "llm_alert_firing": "gauge",
    }
    for name, kind in expected.items():
        assert families[name].type == kind, name
    assert samples(families["llm_requests"], "llm_requests_total")
    assert samples(families["llm_cost_usd"], "llm_cost_usd_total")
    extra = {
        "llm_requests": set(),
        "llm_request_duration_seconds": {"le"},
        "llm_tokens": {"token_type"},
        "llm_request_errors": {"error_type", "outcome"},
        "llm_prompt_risk": {"flag"},
    }
    for name, more in extra.items():
        for sample in families[name].samples:
            wanted = COMMON | more if sample.name.endswith("_bucket") else COMMON | (more - {"le"})
            assert set(sample.labels) == wanted, (name, sample)
    assert set(samples(families["llm_alert_firing"], "llm_alert_firing")[0].labels) == {"alert"}
    assert not any(s.name.endswith("_created") for f in families.values() for s in f.samples)


def test_values_of_one_request() -> None:
    """A streamed request lands in the right counters and histogram buckets, in seconds."""
    registry = CollectorRegistry()
    sink = PrometheusSink(registry)
    sink.on_exchange(
        make_exchange(
            stream=True, latency_ms=1500.0, ttft_ms=90.0, prompt_tokens=100, prompt_tokens_local=97,
            completion_tokens=20, cached_tokens=64, reasoning_tokens=5, cost_usd=0.002,
            risk_flags=["pii", "secret"],
        )
    )  # fmt: skip
    families = scrape(registry)
    common = {
        "model": "gpt-4o",
        "endpoint": "chat",
        "upstream": "mock",
        "status_class": "2xx",
        "stream": "true",
    }
    assert value(families["llm_requests"], "llm_requests_total", **common) == 1
    duration = families["llm_request_duration_seconds"]
    assert value(duration, "llm_request_duration_seconds_sum", **common) == pytest.approx(1.5)
    assert value(duration, "llm_request_duration_seconds_bucket", le="1.28") == 0
    assert value(duration, "llm_request_duration_seconds_bucket", le="2.56") == 1
    ttft = families["llm_time_to_first_token_seconds"]
    assert value(ttft, "llm_time_to_first_token_seconds_bucket", le="0.08") == 0
    assert value(ttft, "llm_time_to_first_token_seconds_bucket", le="0.1") == 1
    tokens = families["llm_tokens"]
    types = ("prompt", "completion", "cached", "reasoning")
    by_type = {t: value(tokens, "llm_tokens_total", token_type=t) for t in types}
    assert by_type == {"prompt": 100, "completion": 20, "cached": 64, "reasoning": 5}
    prompt = families["llm_prompt_length_tokens"]
    assert value(prompt, "llm_prompt_length_tokens_bucket", le="64.0") == 0
    assert value(prompt, "llm_prompt_length_tokens_bucket", le="256.0") == 1
    assert value(families["llm_cost_usd"], "llm_cost_usd_total") == pytest.approx(0.002)
    risk = families["llm_prompt_risk"]
    assert (
        value(risk, "llm_prompt_risk_total", flag="pii")
        == value(risk, "llm_prompt_risk_total", flag="secret")
        == 1
    )
    drift = families["llm_tokens_drift"]
    assert value(drift, "llm_tokens_drift_bucket", le="1.0") == 0
    assert value(drift, "llm_tokens_drift_bucket", le="4.0") == 1
    assert "llm_request_errors_total" not in {
        s.name for s in families["llm_request_errors"].samples
    }


def test_bucket_boundaries_follow_spec() -> None:
    """Histogram buckets are SPEC's (OpenTelemetry GenAI advice), plus +Inf."""
    registry = CollectorRegistry()
    PrometheusSink(registry).on_exchange(make_exchange(stream=True, ttft_ms=50.0))
    families = scrape(registry)
    assert le_bounds(families["llm_request_duration_seconds"]) == [
        0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92,
    ]  # fmt: skip
    assert le_bounds(families["llm_time_to_first_token_seconds"]) == [
        0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10,
    ]  # fmt: skip
    assert le_bounds(families["llm_prompt_length_tokens"]) == [4.0**i for i in range(12)]
    assert le_bounds(families["llm_prompt_length_tokens"])[-1] == 4_194_304
    assert (list(DURATION_BUCKETS), list(TTFT_BUCKETS), list(TOKEN_BUCKETS)) == (
        le_bounds(families["llm_request_duration_seconds"]),
        le_bounds(families["llm_time_to_first_token_seconds"]),
        le_bounds(families["llm_prompt_length_tokens"]),
    )


def test_errors_are_counted_by_type_and_outcome() -> None:
    """Every non-success request is an error sample; error_type falls back to the outcome."""
    registry = CollectorRegistry()
    sink = PrometheusSink(registry)
    sink.on_exchange(
        make_exchange(status_code=429, outcome="client_error", error_type="rate_limit_exceeded")
    )
    sink.on_exchange(
        make_exchange(status_code=None, outcome="timeout", error_type=None, latency_ms=600_000.0)
    )
    sink.on_exchange(make_exchange())
    errors = scrape(registry)["llm_request_errors"]
    assert (
        value(
            errors, "llm_request_errors_total", error_type="rate_limit_exceeded", status_class="4xx"
        )
        == 1
    )
    assert (
        value(
            errors,
            "llm_request_errors_total",
            error_type="timeout",
            outcome="timeout",
            status_class="none",
        )
        == 1
    )
    assert len(samples(errors, "llm_request_errors_total")) == 2


def test_ten_thousand_model_names_keep_the_exposition_small() -> None:
    """A flood of distinct model names folds into 'other': bounded series, small exposition."""
    registry = CollectorRegistry()
    sink = PrometheusSink(registry, max_label_values=20)
    for i in range(10_000):
        sink.on_exchange(make_exchange(model=f"junk-model-{i}", risk_flags=["jailbreak"]))
    body, _ = exposition(registry)
    assert len(body) < 200_000
    families = {f.name: f for f in text_string_to_metric_families(body.decode())}
    models = {s.labels["model"] for s in families["llm_requests"].samples}
    assert len(models) == 21 and "other" in models
    assert value(families["llm_requests"], "llm_requests_total", model="other") == 9_980
    assert (
        value(
            families["pulse_label_values_folded"], "pulse_label_values_folded_total", label="model"
        )
        == 9_980
    )
    assert b"_created" not in generate_latest(registry)  # they would double the series


def test_exposition_stops_growing_at_the_label_limit() -> None:
    """With the default limit, 10,000 names give the same series as the first 101 did."""
    registry = CollectorRegistry()
    sink = PrometheusSink(registry)
    for i in range(101):
        sink.on_exchange(make_exchange(model=f"m-{i:05d}"))
    lines = exposition(registry)[0].count(b"\n")
    for i in range(101, 10_000):
        sink.on_exchange(make_exchange(model=f"m-{i:05d}"))
    body, _ = exposition(registry)
    assert body.count(b"\n") == lines
    models = {s.labels["model"] for s in scrape(registry)["llm_requests"].samples}
    assert len(models) == 101


def test_missing_model_and_status() -> None:
    """No model reads 'unknown' (as in /pulse/stats); no response reads status_class 'none'."""
    registry = CollectorRegistry()
    sink = PrometheusSink(registry)
    sink.on_exchange(
        make_exchange(model=None, response_model=None, status_code=None, outcome="connection_error")
    )
    requests = scrape(registry)["llm_requests"]
    assert value(requests, "llm_requests_total", model="unknown", status_class="none") == 1


def test_gauges_read_their_callables_at_scrape_time() -> None:
    """llm_request_error_rate and llm_alert_firing show the value at the moment of the scrape."""
    state: dict[str, Any] = {"rate": 0.01, "firing": {"error_rate": False, "high_latency": False}}
    registry = CollectorRegistry()
    PrometheusSink(registry, error_rate=lambda: state["rate"], alert_firing=lambda: state["firing"])
    first = scrape(registry)
    assert value(first["llm_request_error_rate"], "llm_request_error_rate") == pytest.approx(0.01)
    assert value(first["llm_alert_firing"], "llm_alert_firing", alert="error_rate") == 0
    state["rate"] = 0.2
    state["firing"] = {"error_rate": True, "high_latency": False}
    second = scrape(registry)
    assert value(second["llm_request_error_rate"], "llm_request_error_rate") == pytest.approx(0.2)
    assert value(second["llm_alert_firing"], "llm_alert_firing", alert="error_rate") == 1
    assert value(second["llm_alert_firing"], "llm_alert_firing", alert="high_latency") == 0


def test_a_broken_callable_does_not_break_the_scrape() -> None:
    """A source that raises (or has no data yet) leaves its gauge without a sample."""

    def broken() -> float:
        raise RuntimeError("boom")

    registry = CollectorRegistry()
    PrometheusSink(
        registry,
        error_rate=broken,
        alert_firing=lambda: {"a": True},
        dropped=lambda: {"dispatcher": 3},
    )
    families = scrape(registry)
    assert samples(families["llm_request_error_rate"], "llm_request_error_rate") == []
    assert value(families["llm_alert_firing"], "llm_alert_firing", alert="a") == 1
    assert (
        value(
            families["pulse_dropped_events"], "pulse_dropped_events_total", component="dispatcher"
        )
        == 3
    )


def test_unpriced_requests_are_counted() -> None:
    """A successful request with usage but no price shows in llm_unpriced_requests_total."""
    registry = CollectorRegistry()
    sink = PrometheusSink(registry)
    sink.on_exchange(make_exchange(model="my-finetune", cost_usd=None))
    sink.on_exchange(
        make_exchange(endpoint="models", cost_usd=None, prompt_tokens=None, completion_tokens=None)
    )
    unpriced = scrape(registry)["llm_unpriced_requests"]
    assert value(unpriced, "llm_unpriced_requests_total", model="my-finetune") == 1


def test_odd_values_do_not_raise() -> None:
    """NaN latency, negative cost and hostile label values are absorbed, not raised."""
    registry = CollectorRegistry()
    sink = PrometheusSink(registry)
    sink.on_exchange(
        make_exchange(
            latency_ms=float("nan"), cost_usd=-1.0, model='x"}\n# EVIL 1', status_code=999
        )
    )
    families = scrape(registry)
    models = {s.labels["model"] for s in families["llm_requests"].samples}
    assert models == {'x"}\\n# EVIL 1'}
    assert "EVIL" not in {f.name for f in families.values()}


def test_sinks_do_not_share_series_across_registries() -> None:
    """Two sinks on two registries are independent (no default registry anywhere)."""
    first, second = CollectorRegistry(), CollectorRegistry()
    PrometheusSink(first).on_exchange(make_exchange())
    PrometheusSink(second)
    assert first.get_sample_value("llm_requests_total", {
        "model": "gpt-4o", "endpoint": "chat", "upstream": "mock", "status_class": "2xx", "stream": "false",
    }) == 1  # fmt: skip
    assert samples(scrape(second)["llm_requests"], "llm_requests_total") == []
