"""The surfaces of issue 3, through a real proxy: /metrics, /pulse/stats, DogStatsD, summary, admin token."""

from __future__ import annotations

import socket

import httpx
import orjson
from conftest import RunningProxy, start_proxy, wait_until
from prometheus_client.parser import text_string_to_metric_families

CHAT = {"model": "gpt-4o", "messages": [{"role": "user", "content": "Say hello"}]}


def _families(text: str) -> dict[str, object]:
    return {family.name: family for family in text_string_to_metric_families(text)}


def test_metrics_exposition_has_spec_names_types_and_labels(proxy: RunningProxy) -> None:
    """/metrics parses with prometheus_client's own parser and carries SPEC's names, types and labels."""
    httpx.post(proxy.base_url + "/chat/completions", json=CHAT)
    httpx.post(proxy.base_url + "/chat/completions", json={**CHAT, "stream": True})
    httpx.post(proxy.base_url + "/chat/completions", json=CHAT, headers={"X-Mock-Status": "500"})
    proxy.wait_for(3)
    families = _families(httpx.get(proxy.url + "/metrics").text)
    expected = {
        "llm_requests": "counter",
        "llm_request_duration_seconds": "histogram",
        "llm_time_to_first_token_seconds": "histogram",
        "llm_tokens": "counter",
        "llm_prompt_length_tokens": "histogram",
        "llm_request_errors": "counter",
        "llm_cost_usd": "counter",
        "llm_request_error_rate": "gauge",
    }
    for name, kind in expected.items():
        assert name in families, name
        assert families[name].type == kind, name  # type: ignore[attr-defined]
    requests = families["llm_requests"].samples  # type: ignore[attr-defined]
    labels = {frozenset(s.labels) for s in requests}
    assert labels == {frozenset({"model", "endpoint", "upstream", "status_class", "stream"})}
    by_class = {(s.labels["status_class"], s.labels["stream"]): s.value for s in requests}
    assert by_class == {("2xx", "false"): 1.0, ("2xx", "true"): 1.0, ("5xx", "false"): 1.0}
    tokens = {s.labels["token_type"] for s in families["llm_tokens"].samples}  # type: ignore[attr-defined]
    assert {"prompt", "completion"} <= tokens
    buckets = sorted(
        float(s.labels["le"])
        for s in families["llm_request_duration_seconds"].samples  # type: ignore[attr-defined]
        if s.name.endswith("_bucket")
        and s.labels["status_class"] == "2xx"
        and s.labels["stream"] == "false"
    )
    assert buckets[:3] == [0.01, 0.02, 0.04] and buckets[-2] == 81.92


def test_distinct_model_names_fold_into_other(mock_url: str) -> None:
    """Hundreds of junk model names keep the model label bounded by the configured limit."""
    with start_proxy(mock_url + "/v1", {"metrics": {"max_label_values": 20}}) as proxy:
        with httpx.Client() as client:
            for i in range(300):
                client.post(
                    proxy.base_url + "/chat/completions", json={**CHAT, "model": f"junk-{i}"}
                )
        proxy.wait_for(300)
        text = httpx.get(proxy.url + "/metrics").text
        families = _families(text)
        models = {s.labels["model"] for s in families["llm_requests"].samples}  # type: ignore[attr-defined]
        assert len(models) <= 21 and "other" in models
        assert len(text) < 300_000
        stats = httpx.get(proxy.url + "/pulse/stats").json()
        assert len(stats["windows"]["5m"]["models"]) <= 51


def test_pulse_stats_reports_the_windows(proxy: RunningProxy) -> None:
    """/pulse/stats has the 1m/5m/1h windows overall and per model with the traffic sent."""
    for _ in range(5):
        httpx.post(proxy.base_url + "/chat/completions", json=CHAT)
    events = proxy.wait_for(5)
    body = httpx.get(proxy.url + "/pulse/stats").json()
    assert set(body["windows"]) == {"1m", "5m", "1h"}
    overall = body["windows"]["1m"]["overall"]
    assert overall["requests"] == 5
    assert "gpt-4o" in body["windows"]["1m"]["models"]
    total = sum(e.total_tokens for e in events)
    assert orjson.dumps(body).count(str(total).encode()) >= 1


def test_dogstatsd_lines_reach_a_udp_socket(mock_url: str) -> None:
    """With statsd enabled, the seed's dotted names arrive over UDP."""
    receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    receiver.bind(("127.0.0.1", 0))
    receiver.settimeout(5)
    port = receiver.getsockname()[1]
    config = {"statsd": {"enabled": True, "host": "127.0.0.1", "port": port, "prefix": "app"}}
    with start_proxy(mock_url + "/v1", config) as proxy:
        httpx.post(proxy.base_url + "/chat/completions", json=CHAT)
        proxy.wait_for(1)
        data = b""
        while b"llm.tokens.used" not in data or b"llm.requests.count" not in data:
            data += receiver.recv(65536) + b"\n"
    receiver.close()
    lines = data.decode().splitlines()
    assert any(line.startswith("app.llm.requests.count:1|c|#") for line in lines)
    assert any(line.startswith("app.llm.request.latency_ms:") for line in lines)
    assert any("model:gpt-4o" in line for line in lines)


def test_summary_event_is_logged(mock_url: str) -> None:
    """An llm.metrics.summary line appears every summary_interval_s."""
    with start_proxy(mock_url + "/v1", {"server": {"summary_interval_s": 0.2}}) as proxy:
        httpx.post(proxy.base_url + "/chat/completions", json=CHAT)
        proxy.wait_for(1)
        # Summaries before the request was accounted show zero; wait for one that has it.

        def summaries() -> list[dict]:
            return [line for line in proxy.log_lines() if line["event"] == "llm.metrics.summary"]

        wait_until(lambda: any(s["overall"]["requests"] == 1 for s in summaries()))
        summary = summaries()[-1]
        assert summary["schema"] == "pulse.v1" and summary["window"] == "1m"
        assert summary["overall"]["requests"] == 1


def test_admin_token_guards_metrics_and_pulse(mock_url: str) -> None:
    """With an admin token, /metrics and /pulse/* demand it; health probes and /v1 do not."""
    with start_proxy(mock_url + "/v1", {"server": {"admin_token": "s3cret-admin"}}) as proxy:
        for path in ("/metrics", "/pulse/stats", "/pulse/alerts"):
            denied = httpx.get(proxy.url + path)
            assert denied.status_code == 401 and denied.json()["error"]["code"] == "unauthorized"
            assert (
                httpx.get(proxy.url + path, headers={"Authorization": "Bearer wrong"}).status_code
                == 401
            )
            assert (
                httpx.get(
                    proxy.url + path, headers={"Authorization": "Bearer s3cret-admin"}
                ).status_code
                == 200
            )
        assert httpx.get(proxy.url + "/healthz").status_code == 200
        assert httpx.post(proxy.base_url + "/chat/completions", json=CHAT).status_code == 200
        proxy.wait_for(1)
