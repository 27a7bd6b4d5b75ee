"""Throttling end to end: the official openai SDK against a real proxy and mock."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest
from conftest import RunningProxy, run_server, start_proxy, wait_until

MESSAGES = [{"role": "user", "content": "Name three colours."}]


class CountingUpstream:
    """The bundled mock, counting the requests that reach it."""

    def __init__(self) -> None:
        from mock_upstream.app import create_app

        self.app = create_app()
        self.seen = 0

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"].startswith("/v1/chat"):
            self.seen += 1
        await self.app(scope, receive, send)


@contextlib.contextmanager
def counted_proxy(limits: dict[str, Any]) -> Iterator[tuple[RunningProxy, CountingUpstream]]:
    upstream = CountingUpstream()
    with run_server(upstream) as url, start_proxy(url + "/v1", {"limits": limits}) as proxy:
        yield proxy, upstream


_CLIENTS: list[openai.OpenAI] = []


@pytest.fixture(autouse=True)
def close_clients() -> Iterator[None]:
    """Every SDK client a test made is closed after it (its pooled sockets too)."""
    yield
    while _CLIENTS:
        _CLIENTS.pop().close()


def sdk(proxy: RunningProxy, key: str, **options: Any) -> openai.OpenAI:
    options.setdefault("max_retries", 0)
    client = openai.OpenAI(base_url=proxy.base_url, api_key=key, **options)
    _CLIENTS.append(client)
    return client


PER_KEY = {"rules": [{"name": "per_key", "by": "api_key", "requests_per_min": 5}]}


def test_sixth_request_is_refused_with_openai_headers() -> None:
    """Over requests_per_min, the SDK raises RateLimitError with OpenAI's rate-limit
    headers; another key is unaffected, and the upstream saw only what was admitted."""
    with counted_proxy(PER_KEY) as (proxy, upstream):
        client = sdk(proxy, "sk-first-key")
        for _ in range(5):
            client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
        with pytest.raises(openai.RateLimitError) as refused:
            client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
        headers = refused.value.response.headers
        assert refused.value.code == "rate_limit_exceeded"
        assert "per_key" in refused.value.message and "sk-first-key" not in refused.value.message
        assert int(headers["retry-after"]) >= 1 and int(headers["retry-after-ms"]) > 0
        assert headers["x-ratelimit-limit-requests"] == "5"
        assert headers["x-ratelimit-remaining-requests"] == "0"
        assert headers["x-ratelimit-reset-requests"].endswith("s")
        sdk(proxy, "sk-second-key").chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
        events = proxy.wait_for(7)
        assert upstream.seen == 6
        throttled = [e for e in events if e.outcome == "throttled"]
        assert len(throttled) == 1 and throttled[0].throttled_by == "per_key"
        assert throttled[0].status_code == 429 and not throttled[0].is_error
        assert throttled[0].api_key_hash == events[0].api_key_hash
        metrics = httpx.get(proxy.url + "/metrics").text
        assert 'llm_throttled_total{rule="per_key"} 1.0' in metrics
        breakdown = httpx.get(proxy.url + "/pulse/stats").json()["breakdown"]["5m"]["api_key"]
        assert breakdown[events[0].api_key_hash]["throttled"] == 1
        assert breakdown[events[0].api_key_hash]["errors"] == 0


def test_sdk_backoff_gets_through() -> None:
    """With the SDK's default retries on, its own backoff (it waits the 429's
    retry-after-ms) gets a refused request through once the limit has room again."""
    import threading

    limits = {"rules": [{"name": "one_at_a_time", "by": "all", "concurrent": 1}]}
    with counted_proxy(limits) as (proxy, upstream):
        holder = threading.Thread(
            target=sdk(proxy, "sk-a").chat.completions.create,
            kwargs={
                "model": "gpt-4o-mini",
                "messages": MESSAGES,
                "extra_headers": {"x-mock-latency-ms": "400"},
            },
        )
        holder.start()
        wait_until(lambda: upstream.seen == 1)
        retried = sdk(proxy, "sk-b", max_retries=2).chat.completions.create(
            model="gpt-4o-mini", messages=MESSAGES
        )
        holder.join()
        assert retried.choices
        events = proxy.wait_for(3)
        outcomes = sorted(e.outcome for e in events)
        assert outcomes == ["success", "success", "throttled"]
        assert upstream.seen == 2


class FixedClock:
    """Mid-slot and still: the windows do not slide during the test."""

    def __init__(self) -> None:
        self.now = 60 * 30_000_000 + 30.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize("mode", ["inline", "process"])
def test_tokens_per_min_by_user_holds_within_one_request(mode: str) -> None:
    """tokens_per_min by user, streamed and plain: what is admitted stays within one
    request's worth of the limit, another user is unaffected, and /pulse/limits shows
    the charge corrected to the upstream's usage (accounted in the proxy or in its
    accounting process)."""
    limits = {"rules": [{"name": "user_tokens", "by": "user", "tokens_per_min": 300}]}
    config = {"limits": limits, "accounting": {"mode": mode}}
    upstream = CountingUpstream()
    with (
        run_server(upstream) as url,
        start_proxy(url + "/v1", config, clock=FixedClock()) as proxy,
    ):
        client = sdk(proxy, "sk-any")
        admitted = 0
        refused = 0
        limit_headers: set[str] = set()
        for n in range(12):
            options: dict[str, Any] = {
                "model": "gpt-4o-mini",
                "messages": MESSAGES,
                "max_tokens": 60,
                "user": "ann",
                "extra_headers": {"x-mock-completion-tokens": "20"},
            }
            try:
                if n % 2:
                    list(client.chat.completions.create(stream=True, **options))
                else:
                    client.chat.completions.create(**options)
                admitted += 1
            except openai.RateLimitError as exc:
                limit_headers.add(exc.response.headers["x-ratelimit-limit-tokens"])
                refused += 1
            # Let accounting correct the charge before the next request is checked.
            wait_until(lambda n=n: len(proxy.sink.exchanges) == n + 1)
        client.chat.completions.create(
            model="gpt-4o-mini", messages=MESSAGES, user="bob", max_tokens=60
        )
        events = proxy.wait_for(13)
        ann = [e for e in events if e.user == "ann" and e.outcome == "success"]
        used = sum(e.total_tokens for e in ann)
        assert refused and admitted == len(ann)
        assert limit_headers == {"300"}
        one_request = max(e.total_tokens for e in ann)
        assert 300 - 2 * one_request - 60 < used <= 300
        report = httpx.get(proxy.url + "/pulse/limits").json()
        (rule,) = report["rules"]
        (tokens,) = rule["limits"]
        top = {row["value"]: row["used"] for row in tokens["top"]}
        assert top["ann"] == used  # the upstream's usage, not the charge made ahead
        assert rule["throttled"] == refused


def test_limits_endpoint_is_guarded_like_stats(mock_url: str) -> None:
    """/pulse/limits demands the admin token exactly when /pulse/stats does."""
    config = {"server": {"admin_token": "admin-secret"}, "limits": PER_KEY}
    with start_proxy(mock_url + "/v1", config) as proxy:
        for path in ("/pulse/stats", "/pulse/limits"):
            assert httpx.get(proxy.url + path).status_code == 401
            answer = httpx.get(proxy.url + path, headers={"Authorization": "Bearer admin-secret"})
            assert answer.status_code == 200
        body = answer.json()
        assert body["backend"] == "memory" and body["rules"][0]["name"] == "per_key"
