"""What failover shows: Prometheus families, /pulse/upstreams, /readyz per upstream,
breaker events, the error-rate alert's actions, the report, and two pulse-mocks."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import openai
import orjson
from conftest import clean_env, free_port, proxy_process, start_proxy, wait_until
from prometheus_client.parser import text_string_to_metric_families
from test_failover import (  # noqa: F401 - primary and fallback are fixtures
    MESSAGES,
    Mock,
    _config,
    fallback,
    primary,
)

from pulse_proxy.ops.report import run_report

TOKEN = "admin-token"


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_metrics_endpoint_readiness_events_and_alert_actions(
    primary: Mock,  # noqa: F811 - the fixture
    fallback: Mock,  # noqa: F811 - the fixture
) -> None:
    """A primary failing 503 shows in every output: counters, breaker gauge, endpoint, readiness, alert."""
    primary.fail(status=503)
    config = _config(
        primary.url,
        fallback.url,
        retry={"attempts": 1},
        breaker={
            "consecutive_failures": 3,
            "min_requests": 1000,
            "open_for_s": 600,
            "max_open_for_s": 600,
        },
    )
    config["server"] = {"admin_token": TOKEN}
    config["upstream"]["probe_interval_s"] = 0.2
    auth = {"Authorization": f"Bearer {TOKEN}"}
    with (
        start_proxy(primary.url + "/v1", config) as proxy,
        httpx.Client(base_url=proxy.url, timeout=30) as client,
    ):
        body = {"model": "gpt-4o-mini", "messages": MESSAGES}
        statuses = [client.post("/v1/chat/completions", json=body).status_code for _ in range(25)]
        assert statuses == [503] * 3 + [200] * 22
        proxy.wait_for(25)

        metrics = _samples(client.get("/metrics", headers=auth).text)
        assert (
            metrics[
                (
                    "llm_upstream_attempts_total",
                    (("result", "server_error"), ("upstream", "primary")),
                )
            ]
            == 3
        )
        assert (
            metrics[
                ("llm_upstream_attempts_total", (("result", "success"), ("upstream", "fallback")))
            ]
            == 22
        )
        assert metrics[("llm_upstream_breaker_state", (("upstream", "primary"),))] == 2
        assert metrics[("llm_upstream_breaker_state", (("upstream", "fallback"),))] == 0
        # attempts 1: no request moved mid-way, the open primary was skipped up front.
        assert not any(name == "llm_failovers_total" for name, _ in metrics)

        assert client.get("/pulse/upstreams").status_code == 401
        listed = client.get("/pulse/upstreams", headers=auth).json()["upstreams"]
        assert [(u["name"], u["state"]) for u in listed] == [
            ("primary", "open"),
            ("fallback", "closed"),
        ]
        assert listed[0]["error_rate"] == 1.0 and listed[0]["window_requests"] == 3
        assert listed[1]["latency_ms"] is not None

        wait_until(lambda: "primary" in proxy.app.readiness.reason)
        ready = client.get("/readyz")
        assert ready.status_code == 200
        assert "primary: upstream answered 503" in ready.json()["reason"]
        assert "fallback" not in ready.json()["reason"]

        def fired_yet() -> bool:
            # The figures reach the statistics just after the events reach the sink.
            proxy.app.evaluate_alerts()
            return any(a.alert == "error_rate" for a in proxy.sink.alerts)

        wait_until(fired_yet)
        (fired,) = [a for a in proxy.sink.alerts if a.alert == "error_rate"]
        (active,) = client.get("/pulse/alerts", headers=auth).json()["active"]
        assert active["actions"] == fired.actions
        wanted = {"upstream.breaker_opened", "alert.fired"}
        wait_until(lambda: wanted <= {line["event"] for line in proxy.log_lines()})
        lines = proxy.log_lines()
    assert fired.event == "alert.fired"
    opened, traffic = fired.actions
    assert opened["action"] == "breaker_opened" and opened["upstream"] == "primary"
    assert opened["reason"] == "consecutive_failures" and opened["consecutive_failures"] == 3
    assert traffic == {"action": "traffic_to", "upstream": "fallback"}
    (event,) = [line for line in lines if line["event"] == "upstream.breaker_opened"]
    assert event["level"] == "warning" and event["open_for_s"] == 600
    (alert_line,) = [line for line in lines if line["event"] == "alert.fired"]
    assert alert_line["actions"] == [opened, traffic]


def test_failovers_are_counted_by_source_and_target(
    primary: Mock,  # noqa: F811 - the fixture
    fallback: Mock,  # noqa: F811 - the fixture
) -> None:
    """llm_failovers_total{from,to} counts each move to another upstream."""
    primary.fail(status=502)
    with (
        start_proxy(primary.url + "/v1", _config(primary.url, fallback.url)) as proxy,
        httpx.Client(base_url=proxy.url, timeout=30) as client,
    ):
        body = {"model": "gpt-4o-mini", "messages": MESSAGES}
        for _ in range(3):
            assert client.post("/v1/chat/completions", json=body).status_code == 200
        metrics = _samples(client.get("/metrics").text)
    assert metrics[("llm_failovers_total", (("from", "primary"), ("to", "fallback")))] == 3


def _event(**fields: Any) -> str:
    base = {"event": "llm.request", "timestamp": "2026-01-01T00:00:00.000Z", "model": "m"}
    return orjson.dumps({**base, **fields}).decode()


def test_report_shows_attempts_and_failovers() -> None:
    """The report counts tries, the upstreams that answered, failovers and breaker changes."""
    lines = [
        _event(upstream="primary", attempts=1, failover_from=None, outcome="success"),
        _event(upstream="fallback", attempts=2, failover_from=["primary"], outcome="success"),
        _event(upstream="primary", attempts=3, failover_from=["primary", "fallback"]),
        orjson.dumps({"event": "upstream.breaker_opened", "upstream": "primary"}).decode(),
    ]
    out = io.StringIO()
    assert run_report(lines, out) == 0
    text = out.getvalue()
    assert "served by: primary 2, fallback 1" in text
    assert "attempts: 6 upstream tries for 3 requests; 2 requests needed more than one" in text
    assert "failovers: primary -> fallback 2, fallback -> primary 1" in text
    assert "breakers: primary opened 1" in text


def test_pulse_mock_runs_twice_and_fails_one_on_demand() -> None:
    """Two pulse-mock processes on two ports; a fault on one leaves the other answering."""
    ports = [free_port(), free_port()]
    mocks = [
        subprocess.Popen(
            [sys.executable, "-m", "mock_upstream", "--port", str(port), "--log-level", "warning"],
            env=clean_env(),
        )
        for port in ports
    ]
    try:
        urls = [f"http://127.0.0.1:{port}" for port in ports]

        def up() -> bool:
            try:
                return all(httpx.get(u + "/v1/models").status_code == 200 for u in urls)
            except httpx.HTTPError:
                return False

        wait_until(up, timeout=30)
        httpx.put(urls[0] + "/_mock/fault", json={"status": 503}).raise_for_status()
        assert httpx.get(urls[0] + "/v1/models").status_code == 503
        assert httpx.get(urls[1] + "/v1/models").status_code == 200
        httpx.delete(urls[0] + "/_mock/fault").raise_for_status()
        assert httpx.get(urls[0] + "/v1/models").status_code == 200
        assert httpx.put(urls[0] + "/_mock/fault", json={"status": 200}).status_code == 400
    finally:
        for mock in mocks:
            mock.terminate()
            mock.wait(timeout=15)


def test_bundled_mock_serves_as_a_fallback(tmp_path: Path) -> None:
    """``url: mock`` in a fallback starts the bundled mock behind a primary nobody listens on."""
    config = tmp_path / "pulse.yaml"
    config.write_text(
        "upstream:\n"
        f"  url: http://127.0.0.1:{free_port()}/v1\n"
        "  name: openai\n"
        "  fallbacks:\n"
        "    - {url: mock, name: local, models: {gpt-4o-mini: 'llama3.1:8b'}}\n"
        "  retry: {attempts: 2}\n"
    )
    with proxy_process("--config", str(config)) as proc:
        (started,) = proc.events("pulse.started")
        assert "serves as fallback 'local'" in started["message"]
        client = openai.OpenAI(base_url=proc.url + "/v1", api_key="sk-test", max_retries=0)
        reply = client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
        assert reply.model == "llama3.1:8b"
        wait_until(lambda: bool(proc.events("llm.request")))
        code, stderr = proc.stop()
    assert code == 0, stderr
    (event,) = proc.events("llm.request")
    assert event["upstream"] == "local" and event["failover_from"] == ["openai"]
    assert event["attempts"] == 2 and event["retry_wait_ms"] == 0.0
