"""Each default alert fires once and resolves once, end to end through the real proxy.

Real sockets all the way: the SDK-shaped traffic goes through the proxy to the bundled
mock, the engine reads the statistics those requests produced, and a real HTTP
receiver gets the webhooks.  Only the clock is driven, so an hour passes in seconds.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest
from conftest import RunningProxy, run_server, start_proxy, wait_until
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from pulse_proxy.settings.alerts import default_rules


class FakeClock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class Receiver:
    """A real HTTP server that records what webhooks deliver."""

    def __init__(self) -> None:
        self.posts: list[tuple[str, dict[str, Any]]] = []

        async def hook(request: Request) -> Response:
            self.posts.append((request.path_params["name"], orjson.loads(await request.body())))
            return Response(status_code=204)

        self.app = Starlette(routes=[Route("/hook/{name}", hook, methods=["POST"])])


@pytest.fixture(scope="module")
def receiver() -> Iterator[tuple[Receiver, str]]:
    rec = Receiver()
    with run_server(rec.app) as url:
        yield rec, url


def _proxy_for(rule: str, mock_url: str, receiver_url: str, clock: FakeClock, name: str) -> Any:
    rules = [r.model_dump() for r in default_rules() if r.name == rule]
    config = {
        "alerts": {"evaluation_interval_s": 3600, "rules": rules},
        "webhooks": {
            "targets": [
                {"name": "generic", "url": f"{receiver_url}/hook/{name}-json", "format": "json"},
                {"name": "slack", "url": f"{receiver_url}/hook/{name}-slack", "format": "slack"},
            ]
        },
    }
    return start_proxy(mock_url + "/v1", config, clock=clock)


def _send(
    proxy: RunningProxy,
    count: int,
    *,
    headers: dict[str, str] | None = None,
    content: str = "Say hello",
    parallel: bool = False,
) -> None:
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": content}]}

    def one() -> None:
        httpx.post(
            proxy.base_url + "/chat/completions", json=body, headers=headers or {}, timeout=30
        )

    if parallel:
        threads = [threading.Thread(target=one) for _ in range(count)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    else:
        for _ in range(count):
            one()


def _settle(proxy: RunningProxy, total: int) -> None:
    wait_until(lambda: len(proxy.sink.exchanges) >= total)


def _transitions(proxy: RunningProxy, rule: str) -> list[Any]:
    return [a for a in proxy.sink.alerts if a.alert == rule]


def _run_incident(
    proxy: RunningProxy, clock: FakeClock, rule: str, crossing: Any, normal: Any
) -> list[Any]:
    """Normal → crossing → back to normal, evaluating as the clock moves."""
    app = proxy.app
    sent = normal(0)
    _settle(proxy, sent)
    app.evaluate_alerts()
    assert _transitions(proxy, rule) == [], "fired on normal traffic"
    clock.advance(900)  # a spike rule's baseline needs more history than its window
    sent += crossing()
    _settle(proxy, sent)
    app.evaluate_alerts()
    app.evaluate_alerts()  # a second look at the same condition must not fire again
    fired = _transitions(proxy, rule)
    assert [a.event for a in fired] == ["alert.fired"]
    clock.advance(360)
    sent += normal(sent)
    _settle(proxy, sent)
    app.evaluate_alerts()
    clock.advance(65)
    app.evaluate_alerts()
    clock.advance(30)
    app.evaluate_alerts()
    transitions = _transitions(proxy, rule)
    assert [a.event for a in transitions] == ["alert.fired", "alert.resolved"]
    return transitions


def _webhooks_got_both(rec: Receiver, name: str, rule: str) -> None:
    wait_until(lambda: len([p for p in rec.posts if p[0].startswith(name)]) >= 4, timeout=15)
    generic = [body for hook, body in rec.posts if hook == f"{name}-json"]
    slack = [body for hook, body in rec.posts if hook == f"{name}-slack"]
    assert [b["event"] for b in generic] == ["alert.fired", "alert.resolved"]
    assert all(b["alert"] == rule for b in generic)
    assert len(slack) == 2 and all("text" in b and "blocks" in b for b in slack)


def test_high_latency(mock_url: str, receiver: tuple[Receiver, str]) -> None:
    """Slow answers push p95 latency over 2000 ms: one fired with that value, one resolved, both webhooks."""
    rec, url = receiver
    clock = FakeClock()
    with _proxy_for("high_latency", mock_url, url, clock, "latency") as proxy:
        transitions = _run_incident(
            proxy,
            clock,
            "high_latency",
            crossing=lambda: (
                _send(proxy, 12, headers={"X-Mock-Latency-Ms": "2100"}, parallel=True) or 12
            ),
            normal=lambda _: _send(proxy, 12) or 12,
        )
        fired = transitions[0]
        assert fired.value is not None and fired.value > 2000 and fired.threshold == 2000
        assert fired.metric == "latency_ms" and fired.stat == "p95" and fired.window_s == 300
        assert transitions[1].duration_s is not None and transitions[1].duration_s > 0
        _webhooks_got_both(rec, "latency", "high_latency")

        # The log sink writes on its own thread: wait for the line rather than race it.
        def alert_lines() -> list[dict[str, Any]]:
            return [line for line in proxy.log_lines() if line["event"].startswith("alert.")]

        wait_until(lambda: len(alert_lines()) >= 2)
        lines = alert_lines()
        assert [line["event"] for line in lines] == ["alert.fired", "alert.resolved"]


def test_error_rate(mock_url: str, receiver: tuple[Receiver, str]) -> None:
    """A burst of 500s pushes the error rate over 5 %: one fired, one resolved."""
    rec, url = receiver
    clock = FakeClock()
    with _proxy_for("error_rate", mock_url, url, clock, "errors") as proxy:
        transitions = _run_incident(
            proxy,
            clock,
            "error_rate",
            crossing=lambda: _send(proxy, 25, headers={"X-Mock-Status": "500"}) or 25,
            normal=lambda _: _send(proxy, 25) or 25,
        )
        assert transitions[0].value == pytest.approx(1.0) and transitions[0].severity == "critical"
        _webhooks_got_both(rec, "errors", "error_rate")


def test_token_spike(mock_url: str, receiver: tuple[Receiver, str]) -> None:
    """A burst of large completions spikes tokens per minute over 3× the baseline: one fired, one resolved."""
    rec, url = receiver
    clock = FakeClock()
    with _proxy_for("token_spike", mock_url, url, clock, "tokens") as proxy:
        transitions = _run_incident(
            proxy,
            clock,
            "token_spike",
            crossing=lambda: _send(proxy, 15, headers={"X-Mock-Completion-Tokens": "2500"}) or 15,
            normal=lambda _: _send(proxy, 10) or 10,
        )
        fired = transitions[0]
        assert (
            fired.value is not None
            and fired.threshold is not None
            and fired.value > fired.threshold >= 5000
        )
        _webhooks_got_both(rec, "tokens", "token_spike")


def test_prompt_length_spike(mock_url: str, receiver: tuple[Receiver, str]) -> None:
    """A burst of long prompts spikes p95 prompt tokens over 3× the baseline: one fired, one resolved."""
    rec, url = receiver
    clock = FakeClock()
    long_prompt = "lorem ipsum dolor sit amet " * 600
    with _proxy_for("prompt_length_spike", mock_url, url, clock, "prompts") as proxy:
        transitions = _run_incident(
            proxy,
            clock,
            "prompt_length_spike",
            crossing=lambda: _send(proxy, 12, content=long_prompt) or 12,
            normal=lambda _: _send(proxy, 12) or 12,
        )
        fired = transitions[0]
        assert fired.value is not None and fired.value > 2000
        assert fired.threshold is not None and fired.value > fired.threshold
        _webhooks_got_both(rec, "prompts", "prompt_length_spike")


def test_alerts_endpoint_and_gauge(mock_url: str) -> None:
    """/pulse/alerts shows rules and state, and llm_alert_firing follows it."""
    clock = FakeClock()
    config = {
        "alerts": {
            "evaluation_interval_s": 3600,
            "rules": [r.model_dump() for r in default_rules()],
        }
    }
    with start_proxy(mock_url + "/v1", config, clock=clock) as proxy:
        _send(proxy, 25, headers={"X-Mock-Status": "503"})
        _settle(proxy, 25)
        proxy.app.evaluate_alerts()
        state = httpx.get(proxy.url + "/pulse/alerts").json()
        assert {rule["name"] for rule in state["rules"]} == {
            "high_latency",
            "token_spike",
            "error_rate",
            "prompt_length_spike",
        }
        assert [a["alert"] for a in state["active"]] == ["error_rate"]
        metrics = httpx.get(proxy.url + "/metrics").text
        assert 'llm_alert_firing{alert="error_rate"} 1.0' in metrics
        assert 'llm_alert_firing{alert="high_latency"} 0.0' in metrics
