"""Retries, failover and circuit breaking, end to end: two real mock upstreams on
their own sockets (one failed on demand through its ``/_mock/fault`` control), the
proxy in front, and the official ``openai`` SDK with its own retries turned off."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest
from conftest import RunningProxy, free_port, run_server, start_proxy, wait_until

from mock_upstream.app import MockApp, create_app

MESSAGES: list[Any] = [{"role": "user", "content": "Say hello"}]
DEPLOYMENT = "my-gpt-4o-mini-deployment"


class Counting:
    """The mock, counting the ``/v1`` POSTs it is sent (its recorder keeps only the last 200)."""

    def __init__(self, app: MockApp) -> None:
        self.app = app
        self.posts = 0

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if (
            scope["type"] == "http"
            and scope["method"] == "POST"
            and scope["path"].startswith("/v1/")
        ):
            self.posts += 1
        await self.app(scope, receive, send)


class Mock:
    """One mock upstream served on a loopback port, with its fault switch."""

    def __init__(self, app: Counting, url: str) -> None:
        self.app = app.app
        self.counting = app
        self.url = url

    @property
    def tries(self) -> int:
        return self.counting.posts

    def fail(self, **fault: Any) -> None:
        httpx.put(self.url + "/_mock/fault", json=fault).raise_for_status()

    def heal(self) -> None:
        httpx.delete(self.url + "/_mock/fault").raise_for_status()

    def posts(self) -> list[Any]:
        """The requests the proxy forwarded (the readiness probe's GETs left out)."""
        return [r for r in self.app.recorder.all() if r.method == "POST"]


@contextlib.contextmanager
def _mock() -> Iterator[Mock]:
    app = Counting(create_app())
    with run_server(app) as url:
        mock = Mock(app, url)
        try:
            yield mock
        finally:
            mock.heal()  # release any request held by a hang


@pytest.fixture
def primary() -> Iterator[Mock]:
    with _mock() as mock:
        yield mock


@pytest.fixture
def fallback() -> Iterator[Mock]:
    with _mock() as mock:
        yield mock


class Clock:
    """A wall clock the test moves forward: breaker cool-downs pass in no time."""

    def __init__(self) -> None:
        import time

        self.now = time.time()

    def __call__(self) -> float:
        return self.now


def _config(primary_url: str, fallback_url: str, **upstream: Any) -> dict[str, Any]:
    config: dict[str, Any] = {
        "url": primary_url + "/v1",
        "name": "primary",
        "fallbacks": [
            {"url": fallback_url + "/v1", "name": "fallback", "models": {"gpt-4o-mini": DEPLOYMENT}}
        ],
        "retry": {"attempts": 3, "backoff_s": 0.01, "max_backoff_s": 2},
    }
    for key, value in upstream.items():
        config[key] = {**config.get(key, {}), **value} if isinstance(value, dict) else value
    return {"upstream": config}


def _client(proxy: RunningProxy) -> openai.OpenAI:
    return openai.OpenAI(base_url=proxy.base_url, api_key="sk-test", max_retries=0, timeout=30)


def _served_by_fallback(proxy: RunningProxy, fallback: Mock, *, stream: bool = False) -> Any:
    """Exactly one event, recording the failed primary then the fallback's answer."""
    (event,) = proxy.wait_for(1)
    assert event.upstream == "fallback"
    assert event.attempts == 2
    assert event.failover_from == ["primary"]
    assert event.status_code == 200 and event.outcome == "success"
    assert event.stream is stream
    assert event.model == "gpt-4o-mini"  # as the client asked for it
    (forwarded,) = fallback.posts()
    assert forwarded.x_request_id == event.request_id
    return event


@pytest.mark.parametrize(
    "failure",
    [
        pytest.param({"status": 503}, id="503"),
        pytest.param({"status": 429, "retry_after": "1"}, id="429-retry-after"),
        pytest.param({"hang": True}, id="hang-until-read-timeout"),
    ],
)
def test_sdk_call_succeeds_through_the_fallback(
    primary: Mock, fallback: Mock, failure: dict[str, Any]
) -> None:
    """A primary answering 503 or 429, or never answering, is replaced by the fallback, model mapped."""
    primary.fail(**failure)
    config = _config(primary.url, fallback.url, read_timeout_s=0.5)
    config["upstream"]["fallbacks"][0]["read_timeout_s"] = 30
    with start_proxy(primary.url + "/v1", config) as proxy:
        reply = _client(proxy).chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
        assert reply.model == DEPLOYMENT  # the fallback was asked for its own name
        event = _served_by_fallback(proxy, fallback)
    assert primary.tries == 1
    # Moving to another upstream needs no wait, whatever the primary's Retry-After.
    assert event.retry_wait_ms == 0.0
    assert event.upstream_ms is not None and event.overhead_ms is not None


def test_sdk_call_succeeds_when_the_primary_refuses_connections(fallback: Mock) -> None:
    """A primary nobody listens on is skipped for the fallback within the same request."""
    dead = f"http://127.0.0.1:{free_port()}"
    with start_proxy(dead + "/v1", _config(dead, fallback.url)) as proxy:
        reply = _client(proxy).chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
        assert reply.model == DEPLOYMENT
        _served_by_fallback(proxy, fallback)


def test_model_is_left_alone_without_a_map_entry(primary: Mock, fallback: Mock) -> None:
    """The fallback gets the client's body byte for byte when no map entry applies."""
    primary.fail(status=503)
    with start_proxy(primary.url + "/v1", _config(primary.url, fallback.url)) as proxy:
        reply = _client(proxy).chat.completions.create(model="gpt-4o", messages=MESSAGES)
        assert reply.model == "gpt-4o"
        (event,) = proxy.wait_for(1)
    (seen_by_primary,) = primary.posts()
    (seen_by_fallback,) = fallback.posts()
    assert seen_by_fallback.body_sha256 == seen_by_primary.body_sha256
    assert event.upstream == "fallback"


def test_a_client_error_is_passed_through_untouched_with_one_attempt(
    primary: Mock, fallback: Mock
) -> None:
    """A 400 from the primary reaches the client as sent, and is never retried."""
    primary.fail(status=400)
    with start_proxy(primary.url + "/v1", _config(primary.url, fallback.url)) as proxy:
        with pytest.raises(openai.BadRequestError) as refused:
            _client(proxy).chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
        (event,) = proxy.wait_for(1)
    assert refused.value.status_code == 400
    assert event.attempts == 1 and event.failover_from is None
    assert event.upstream == "primary" and event.outcome == "client_error"
    assert fallback.posts() == []


def test_with_every_upstream_failing_the_client_gets_the_last_answer(
    primary: Mock, fallback: Mock
) -> None:
    """Primary, fallback, primary; then the last upstream's own 503 goes to the client."""
    primary.fail(status=503)
    fallback.fail(status=502)
    with start_proxy(primary.url + "/v1", _config(primary.url, fallback.url)) as proxy:
        with pytest.raises(openai.InternalServerError) as failed:
            _client(proxy).chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
        (event,) = proxy.wait_for(1)
    assert failed.value.status_code == 503
    assert event.attempts == 3
    assert event.failover_from == ["primary", "fallback"]
    assert event.upstream == "primary" and event.outcome == "upstream_error"
    assert primary.tries == 2 and fallback.tries == 1


def test_one_upstream_retries_go_to_it_after_a_wait(primary: Mock) -> None:
    """With one upstream, retries return to it after its back-off; the wait is recorded."""
    primary.fail(status=500)
    config = {"upstream": {"url": primary.url + "/v1", "retry": {"attempts": 2, "backoff_s": 0.05}}}
    with start_proxy(primary.url + "/v1", config) as proxy:
        with pytest.raises(openai.InternalServerError):
            _client(proxy).chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
        (event,) = proxy.wait_for(1)
    assert primary.tries == 2
    assert event.attempts == 2
    assert event.failover_from == ["127.0.0.1"]
    assert event.retry_wait_ms >= 0.0


def test_streamed_request_fails_over_before_headers(primary: Mock, fallback: Mock) -> None:
    """A stream whose primary answers 503 starts from the fallback and arrives whole."""
    primary.fail(status=503)
    with start_proxy(primary.url + "/v1", _config(primary.url, fallback.url)) as proxy:
        stream = _client(proxy).chat.completions.create(
            model="gpt-4o-mini", messages=MESSAGES, stream=True
        )
        chunks = list(stream)
        event = _served_by_fallback(proxy, fallback, stream=True)
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert all(chunk.model == DEPLOYMENT for chunk in chunks)
    assert event.ttft_ms is not None and event.ttft_ms <= event.latency_ms
    assert event.completion_tokens == sum(
        1 for c in chunks if c.choices and c.choices[0].delta.content
    )


def test_stream_broken_mid_way_is_not_retried(primary: Mock, fallback: Mock) -> None:
    """Once bytes reached the client, a broken stream stays broken and is recorded as before."""
    with start_proxy(primary.url + "/v1", _config(primary.url, fallback.url)) as proxy:
        stream = _client(proxy).chat.completions.create(
            model="gpt-4o-mini",
            messages=MESSAGES,
            stream=True,
            extra_headers={"X-Mock-Drop-After-Chunks": "2"},
        )
        with pytest.raises((openai.APIError, httpx.HTTPError)):
            list(stream)
        (event,) = proxy.wait_for(1)
    assert event.attempts == 1 and event.failover_from is None
    assert event.upstream == "primary"
    assert event.outcome == "connection_error"
    assert event.error_type == "upstream_stream_interrupted"
    assert fallback.posts() == []


def test_breaker_opens_sends_one_trial_and_returns_to_the_recovered_primary(
    primary: Mock, fallback: Mock
) -> None:
    """After the breaker opens the primary sees nothing until the cool-down, then exactly one trial."""
    primary.fail(status=503)
    clock = Clock()
    config = _config(
        primary.url,
        fallback.url,
        retry={"attempts": 2},
        breaker={"consecutive_failures": 5, "min_requests": 1000, "open_for_s": 30},
    )
    with (
        start_proxy(primary.url + "/v1", config, clock=clock) as proxy,
        httpx.Client(base_url=proxy.base_url, timeout=30) as client,
    ):

        def chat() -> int:
            body = {"model": "gpt-4o-mini", "messages": MESSAGES}
            return client.post("/chat/completions", json=body).status_code

        assert [chat() for _ in range(50)] == [200] * 50
        assert primary.tries == 5
        assert fallback.tries == 50
        breakers = proxy.app.upstreams.primary.breaker
        assert breakers.state.name == "OPEN"

        clock.now += 29
        assert [chat() for _ in range(5)] == [200] * 5
        assert primary.tries == 5  # still cooling down

        clock.now += 1.5
        assert [chat() for _ in range(5)] == [200] * 5
        assert primary.tries == 6  # one trial, which failed: open again, for 60 s

        primary.heal()
        clock.now += 61
        assert [chat() for _ in range(5)] == [200] * 5
        assert primary.tries == 11  # the trial succeeded: all traffic is back
        assert breakers.state.name == "CLOSED"
        wait_until(lambda: len(proxy.sink.exchanges) == 65)
        wait_until(
            lambda: any(line["event"] == "upstream.breaker_closed" for line in proxy.log_lines())
        )
        lines = proxy.log_lines()
    opened = [line for line in lines if line["event"] == "upstream.breaker_opened"]
    closed = [line for line in lines if line["event"] == "upstream.breaker_closed"]
    assert [line["reason"] for line in opened] == ["consecutive_failures", "trial_failed"]
    assert opened[0]["upstream"] == "primary" and opened[0]["consecutive_failures"] == 5
    assert opened[1]["open_for_s"] == 60
    assert [line["reason"] for line in closed] == ["trial_succeeded"]
    served = [e.upstream for e in proxy.sink.exchanges]
    assert served[-5:] == ["primary"] * 5
    skipped = list(proxy.sink.exchanges[5:50])
    assert all(e.attempts == 1 and e.failover_from is None for e in skipped)


def test_retry_budget_bounds_tries_when_every_upstream_fails(primary: Mock, fallback: Mock) -> None:
    """200 failing requests make at most 200 × (1 + budget_ratio) + the minimum tries."""
    from pulse_proxy.proxy.retry import BUDGET_MIN_RETRIES

    primary.fail(status=503)
    fallback.fail(status=503)
    config = _config(
        primary.url,
        fallback.url,
        retry={"attempts": 3, "budget_ratio": 0.2},
        # Breakers that never open, so that only the budget limits the tries.
        breaker={"consecutive_failures": 0, "min_requests": 100_000},
    )
    with (
        start_proxy(primary.url + "/v1", config, clock=Clock()) as proxy,
        httpx.Client(base_url=proxy.base_url, timeout=30) as client,
    ):
        body = {"model": "gpt-4o-mini", "messages": MESSAGES}
        statuses = [client.post("/chat/completions", json=body).status_code for _ in range(200)]
        proxy.wait_for(200)
    assert statuses == [503] * 200
    tries = primary.tries + fallback.tries
    assert 200 < tries <= 200 * 1.2 + BUDGET_MIN_RETRIES
    assert sum(e.attempts for e in proxy.exchanges) == tries


def test_client_disconnect_cancels_a_pending_retry(primary: Mock) -> None:
    """A client hanging up during the wait before a retry leaves that retry unsent."""
    primary.fail(status=503, retry_after="2")
    config = {"upstream": {"url": primary.url + "/v1", "name": "primary", "retry": {"attempts": 2}}}
    with start_proxy(primary.url + "/v1", config) as proxy:
        body = {"model": "gpt-4o-mini", "messages": MESSAGES}
        with pytest.raises(httpx.ReadTimeout):
            httpx.post(proxy.base_url + "/chat/completions", json=body, timeout=0.5)
        (event,) = proxy.wait_for(1)
        assert event.outcome == "client_disconnected"
        assert event.attempts == 1 and event.failover_from is None
        assert event.retry_wait_ms > 0
        # The wait is neither the upstream's time nor the proxy's.
        assert event.upstream_ms + event.retry_wait_ms <= event.latency_ms + 0.01
        time.sleep(2.5)  # past the Retry-After the retry would have waited for
    assert primary.tries == 1
    breaker = proxy.app.upstreams.primary.breaker
    assert breaker.admit(breaker.clock()) != 0  # no trial slot left held


def _authorization(record: Any) -> list[str]:
    return [value for name, value in record.headers if name.lower() == "authorization"]


def test_each_upstream_gets_its_own_key_only_when_the_client_sent_none(
    primary: Mock, fallback: Mock
) -> None:
    """A configured key goes to its own upstream only; a client's own key is never replaced."""
    primary.fail(status=503)
    config = _config(primary.url, fallback.url, api_key="primary-key")
    config["upstream"]["fallbacks"][0]["api_key"] = "fallback-key"
    body = {"model": "gpt-4o-mini", "messages": MESSAGES}
    with start_proxy(primary.url + "/v1", config) as proxy:
        assert httpx.post(proxy.base_url + "/chat/completions", json=body).status_code == 200
        headers = {"Authorization": "Bearer client-key"}
        answer = httpx.post(proxy.base_url + "/chat/completions", json=body, headers=headers)
        assert answer.status_code == 200
        proxy.wait_for(2)
    first, second = primary.posts()
    via_fallback_first, via_fallback_second = fallback.posts()
    assert _authorization(first) == ["Bearer primary-key"]
    assert _authorization(via_fallback_first) == ["Bearer fallback-key"]
    assert _authorization(second) == _authorization(via_fallback_second) == ["Bearer client-key"]
