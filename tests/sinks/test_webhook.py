from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from conftest import run_server, wait_until
from factories import make_alert
from pydantic import ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from pulse_proxy.settings.sinks import WebhookSettings, WebhookTarget
from pulse_proxy.sinks.webhook import WebhookSink, json_payload, slack_payload


class Receiver:
    """A real HTTP server recording every POST; some paths fail, block or refuse on purpose."""

    def __init__(self) -> None:
        self.received: list[tuple[str, dict[str, str], Any]] = []
        self.attempts: dict[str, int] = {}
        self.release = threading.Event()  # /block waits for this
        self.entered = threading.Event()  # set when /block has a request waiting
        self.app = Starlette(routes=[Route("/{name}", self.handle, methods=["POST"])])

    async def handle(self, request: Request) -> Response:
        name = request.path_params["name"]
        attempt = self.attempts[name] = self.attempts.get(name, 0) + 1
        body = orjson.loads(await request.body())
        if name == "flaky" and attempt <= 2:
            return Response(status_code=503)
        if name == "limited" and attempt == 1:
            return Response(status_code=429, headers={"Retry-After": "0"})
        if name == "bad":
            return Response(status_code=400)
        if name == "block":
            self.entered.set()
            while not self.release.is_set():  # noqa: ASYNC110 - a threading.Event, set by the test
                await asyncio.sleep(0.005)
        self.received.append((name, dict(request.headers), body))
        return Response(status_code=204)

    def bodies(self, name: str) -> list[Any]:
        return [body for path, _, body in self.received if path == name]


@pytest.fixture(scope="module")
def receiver() -> Iterator[tuple[Receiver, str]]:
    hooks = Receiver()
    with run_server(hooks.app) as url:
        yield hooks, url
        hooks.release.set()


@pytest.fixture
def hooks(receiver: tuple[Receiver, str]) -> tuple[Receiver, str]:
    """The module's receiver, with its records and switches reset."""
    hooks, url = receiver
    hooks.received.clear()
    hooks.attempts.clear()
    hooks.release.clear()
    hooks.entered.clear()
    return hooks, url


def target(name: str, url: str, **fields: Any) -> WebhookTarget:
    return WebhookTarget(name=name, url=url, **fields)


def closed_port_url() -> str:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    return f"http://127.0.0.1:{port}/dead"


def test_json_payload_is_the_alert_event(hooks: tuple[Receiver, str]) -> None:
    """A JSON target receives the alert event's fields, with its configured headers."""
    receiver, url = hooks
    alert = make_alert()

    async def main() -> WebhookSink:
        sink = WebhookSink([target("audit", url + "/json", headers={"X-Token": "t0ken"})])
        sink.on_alert(alert)
        await sink.aclose()
        return sink

    sink = asyncio.run(main())
    assert sink.delivered == 1 and sink.failed == sink.dropped == 0
    [(_, headers, body)] = receiver.received
    assert body == {"event": "alert.fired", "schema": "pulse.v1", **alert.to_event()}
    assert (
        body["alert"] == "high_latency"
        and body["value"] == 2450.0
        and body["labels"] == {"team": "llm"}
    )
    assert headers["x-token"] == "t0ken"
    assert headers["content-type"] == "application/json"


def test_slack_payload_is_a_readable_summary(hooks: tuple[Receiver, str]) -> None:
    """A Slack target receives text and blocks naming rule, severity, value vs threshold and window."""
    receiver, url = hooks

    async def main() -> None:
        sink = WebhookSink([target("slack", url + "/slack", format="slack")])
        sink.on_alert(make_alert())
        sink.on_alert(
            make_alert(
                event="alert.resolved",
                value=900.0,
                resolved_at="2025-01-01T12:07:30.000Z",
                duration_s=450.0,
            )
        )
        await sink.aclose()

    asyncio.run(main())
    fired, resolved = receiver.bodies("slack")
    assert (
        fired["text"]
        == ":warning: [WARNING] high_latency fired: p95 latency_ms over 5m is 2,450 ms (threshold 2,000 ms)"
    )
    assert fired["blocks"][0] == {
        "type": "header",
        "text": {"type": "plain_text", "text": "high_latency fired"},
    }
    fields = [f["text"] for f in fired["blocks"][2]["fields"]]
    assert (
        "*Rule*\nhigh_latency" in fields
        and "*Severity*\nwarning" in fields
        and "*Window*\n5m" in fields
    )
    assert "*Threshold*\n2,000 ms" in fields
    assert fired["blocks"][-1]["elements"][0]["text"] == "team=llm"
    assert resolved["text"].startswith(
        ":white_check_mark: [WARNING] high_latency resolved: p95 latency_ms over 5m is 900 ms"
    )
    assert "*Duration*\n7m 30s" in [f["text"] for f in resolved["blocks"][2]["fields"]]


def test_slack_text_is_escaped() -> None:
    """Slack control characters in a message cannot turn into links or mentions."""
    payload = slack_payload(make_alert(message="<!channel> & <http://x|y>"))
    assert payload["blocks"][1]["text"]["text"] == "&lt;!channel&gt; &amp; &lt;http://x|y&gt;"


def test_alert_actions_reach_both_payloads() -> None:
    """What the proxy switched (breaker opened, where traffic went) is in the JSON and in Slack's summary."""
    actions = [
        {"action": "breaker_opened", "upstream": "primary", "reason": "error_rate"},
        {"action": "traffic_to", "upstream": "azure"},
    ]
    alert = make_alert(metric="error_rate", actions=actions)
    assert json_payload(alert)["actions"] == actions
    context = slack_payload(alert)["blocks"][-1]["elements"][0]["text"]
    assert context == "breaker opened: primary (error_rate); traffic to: azure"


def test_retries_until_the_receiver_recovers(hooks: tuple[Receiver, str]) -> None:
    """A receiver that answers 503 twice gets the alert on the third attempt."""
    receiver, url = hooks

    async def main() -> WebhookSink:
        sink = WebhookSink([target("flaky", url + "/flaky")], retries=3, backoff_s=0.01)
        sink.on_alert(make_alert())
        await sink.aclose()
        return sink

    sink = asyncio.run(main())
    assert receiver.attempts["flaky"] == 3
    assert len(receiver.bodies("flaky")) == 1
    assert (sink.delivered, sink.failed) == (1, 0)


def test_429_is_retried_after_retry_after(hooks: tuple[Receiver, str]) -> None:
    """A 429 is retried (after its Retry-After), not treated as final."""
    receiver, url = hooks

    async def main() -> WebhookSink:
        sink = WebhookSink([target("limited", url + "/limited")], backoff_s=5.0)
        sink.on_alert(make_alert())
        await sink.aclose(timeout=3)
        return sink

    sink = asyncio.run(main())
    assert receiver.attempts["limited"] == 2 and sink.delivered == 1


def test_a_client_error_is_final(hooks: tuple[Receiver, str]) -> None:
    """A 4xx other than 429 is not retried: the alert counts as failed at once."""
    receiver, url = hooks

    async def main() -> WebhookSink:
        sink = WebhookSink([target("bad", url + "/bad")], retries=3, backoff_s=0.01)
        sink.on_alert(make_alert())
        await sink.aclose()
        return sink

    sink = asyncio.run(main())
    assert receiver.attempts["bad"] == 1
    assert (sink.delivered, sink.failed) == (0, 1)


def test_a_dead_receiver_is_counted_as_failed() -> None:
    """Connection refused on every attempt ends, after the retries, in the failed count."""
    logged: list[tuple[str, dict[str, Any]]] = []

    class Log:
        def warning(self, event: str, **fields: Any) -> None:
            logged.append((event, fields))

    dead = closed_port_url()

    async def main() -> WebhookSink:
        sink = WebhookSink([target("dead", dead)], retries=2, backoff_s=0.01, logger=Log())
        sink.on_alert(make_alert())
        await sink.aclose()
        return sink

    sink = asyncio.run(main())
    assert (sink.delivered, sink.failed, sink.dropped) == (0, 1, 0)
    assert logged == [
        (
            "pulse.webhook_failed",
            {"webhook": "dead", "reason": "ClientConnectorError after 3 attempts"},
        )
    ]
    assert dead not in repr(logged)  # a webhook URL can be a credential: never logged


def test_on_alert_returns_while_the_receiver_hangs(hooks: tuple[Receiver, str]) -> None:
    """on_alert only queues: it returns while a delivery is stuck inside the receiver."""
    receiver, url = hooks

    async def main() -> WebhookSink:
        sink = WebhookSink([target("block", url + "/block")])
        sink.on_alert(make_alert())
        await asyncio.to_thread(wait_until, receiver.entered.is_set)
        sink.on_alert(make_alert(alert="error_rate"))  # the receiver is still holding the first
        assert not receiver.release.is_set() and sink.delivered == 0
        receiver.release.set()
        await sink.aclose()
        return sink

    sink = asyncio.run(main())
    assert sink.delivered == 2
    assert [b["alert"] for b in receiver.bodies("block")] == ["high_latency", "error_rate"]


def test_a_full_queue_drops_and_counts(hooks: tuple[Receiver, str]) -> None:
    """With the worker stuck and the queue full, further alerts are dropped and counted."""
    receiver, url = hooks

    async def main() -> WebhookSink:
        sink = WebhookSink([target("block", url + "/block")], queue_size=2)
        sink.on_alert(make_alert())
        await asyncio.to_thread(wait_until, receiver.entered.is_set)  # one in flight
        for _ in range(9):
            sink.on_alert(make_alert())
        assert sink.dropped == 7
        receiver.release.set()
        await sink.aclose()
        return sink

    sink = asyncio.run(main())
    assert (sink.delivered, sink.dropped) == (3, 7)


def test_close_gives_up_on_a_hung_receiver(hooks: tuple[Receiver, str]) -> None:
    """aclose waits only its deadline; what could not be delivered counts as dropped."""
    receiver, url = hooks

    async def main() -> WebhookSink:
        sink = WebhookSink([target("block", url + "/block")], timeout_s=30)
        for _ in range(3):
            sink.on_alert(make_alert())
        await asyncio.to_thread(wait_until, receiver.entered.is_set)
        started = time.monotonic()
        await sink.aclose(timeout=0.2)
        assert time.monotonic() - started < 2
        return sink

    sink = asyncio.run(main())
    receiver.release.set()
    assert (sink.delivered, sink.dropped) == (0, 3)


def test_routing_by_rule_and_target_filters() -> None:
    """A rule's webhooks list picks targets; a target's alerts and min_severity filter further."""
    oncall = target("oncall", "https://hooks.example/a", format="slack", min_severity="critical")
    audit = target(
        "audit",
        "https://audit.example/b",
        alerts=["high_latency", "token_spike"],
        send_resolved=False,
    )
    sink = WebhookSink(
        [oncall, audit], rule_webhooks={"error_rate": ["oncall"], "token_spike": ["oncall"]}
    )

    def routed(**fields: Any) -> list[str]:
        return [t.name for t in sink.routes(make_alert(**fields))]

    assert routed(alert="high_latency", severity="warning") == ["audit"]  # no route: every target
    assert routed(alert="high_latency", severity="critical") == ["oncall", "audit"]
    assert routed(alert="error_rate", severity="critical") == ["oncall"]
    assert routed(alert="token_spike", severity="critical") == [
        "oncall"
    ]  # audit not named by the rule
    assert routed(alert="high_latency", severity="warning", event="alert.resolved") == []
    with pytest.raises(ValueError, match=r"error_rate\.pager"):
        WebhookSink([oncall], rule_webhooks={"error_rate": ["pager"]})


def test_settings_validate_and_redact() -> None:
    """WebhookSettings rejects bad keys, URLs and duplicate names; redaction hides secrets."""
    settings = WebhookSettings.model_validate(
        {"targets": [{"name": "slack", "url": "https://hooks.slack.com/services/T0/B0/SECRET", "format": "slack",
                      "headers": {"Authorization": "Bearer abc"}}], "retries": 5}
    )  # fmt: skip
    assert settings.targets[0].format == "slack" and settings.retries == 5
    shown = settings.redacted()["targets"][0]
    assert shown["url"] == "https://hooks.slack.com/***" and shown["headers"] == {
        "Authorization": "***"
    }
    for bad in (
        {"targets": [{"name": "x", "url": "ftp://x/"}]},
        {"targets": [{"name": "x", "url": "http://x/", "colour": "red"}]},
        {"targets": [{"name": "x", "url": "http://x/"}, {"name": "x", "url": "http://y/"}]},
        {"targets": [{"name": "x", "url": "http://x/", "headers": {"A": "b\r\nEvil: 1"}}]},
        {"retries": -1},
    ):
        with pytest.raises(ValidationError):
            WebhookSettings.model_validate(bad)
    with pytest.raises(ValidationError):
        setattr(settings, "retries", 1)  # noqa: B010 - assigning is the point
    sink = WebhookSink.from_settings(settings, rule_webhooks={"error_rate": ["slack"]})
    assert sink.retries == 5 and list(sink.targets) == ["slack"]


def test_json_payload_has_only_alert_fields() -> None:
    """The generic body is the event and schema plus AlertEvent's fields, nothing else."""
    alert = make_alert()
    assert set(json_payload(alert)) == {"event", "schema", *alert.to_event()}
