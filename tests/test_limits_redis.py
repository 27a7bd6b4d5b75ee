"""Fleet-wide limits on a real redis-server: two proxies, one limit; an outage."""

from __future__ import annotations

from typing import Any

import httpx
import openai
import pytest
from conftest import RedisServer, run_server, start_proxy, wait_until
from test_limits_sdk import MESSAGES, CountingUpstream, close_clients, sdk

__all__ = ["close_clients"]  # the autouse fixture, here too


def shared(redis: RedisServer, **extra: Any) -> dict[str, Any]:
    return {
        "limits": {
            "backend": "redis",
            "redis_url": redis.url,
            "rules": [{"name": "fleet_key", "by": "api_key", "requests_per_min": 10}],
            **extra,
        },
        # Same salt on both proxies, as a fleet would configure: the same key hash.
        "accounting": {"key_hash_salt": "fleet-salt"},
        "alerts": {"evaluation_interval_s": 0.1},
    }


def test_two_proxies_share_one_limit(redis_server: RedisServer) -> None:
    """Two proxies on one Redis, 10 requests a minute per key: 10 requests to each
    admit 10 in total, not 20, and the upstream sees 10."""
    upstream = CountingUpstream()
    with (
        run_server(upstream) as url,
        start_proxy(url + "/v1", shared(redis_server)) as first,
        start_proxy(url + "/v1", shared(redis_server)) as second,
    ):
        admitted = 0
        for proxy in (first, second):
            client = sdk(proxy, "sk-fleet-key")
            for _ in range(10):
                try:
                    client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
                    admitted += 1
                except openai.RateLimitError:
                    pass
        assert admitted == 10
        assert upstream.seen == 10
        first.wait_for(10)
        assert [e.outcome for e in second.wait_for(10)] == ["throttled"] * 10


def test_redis_outage_allows_and_alerts(redis_server: RedisServer) -> None:
    """Redis stopped mid-run: requests flow (on_backend_error: allow), each one is
    counted and marked, limits_backend_down fires; Redis back: it resolves and the
    limit applies again."""
    upstream = CountingUpstream()
    with (
        run_server(upstream) as url,
        start_proxy(url + "/v1", shared(redis_server)) as proxy,
    ):
        client = sdk(proxy, "sk-outage")
        for _ in range(10):
            client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
        with pytest.raises(openai.RateLimitError):
            client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)

        redis_server.stop()
        for _ in range(5):
            client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
        events = proxy.wait_for(16)
        assert [e.limits_backend_error is not None for e in events[-5:]] == [True] * 5
        metrics = httpx.get(proxy.url + "/metrics").text
        assert "pulse_limits_backend_errors_total 5.0" in metrics
        wait_until(lambda: any(a.alert == "limits_backend_down" for a in proxy.sink.alerts))
        (fired,) = proxy.sink.alerts
        assert fired.event == "alert.fired"
        metrics = httpx.get(proxy.url + "/metrics").text
        assert 'llm_alert_firing{alert="limits_backend_down"} 1.0' in metrics
        alerts = httpx.get(proxy.url + "/pulse/alerts").json()
        shown = {rule["name"]: rule for rule in alerts["rules"]}
        assert shown["limits_backend_down"]["state"] == "firing"
        assert [a["alert"] for a in alerts["active"]] == ["limits_backend_down"]
        assert alerts["recent"][0]["event"] == "alert.fired"

        redis_server.start()
        # The counters died with the server: once it answers, ten more are admitted
        # and the next refused.

        def refused() -> bool:
            try:
                client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
            except openai.RateLimitError:
                return True
            return False

        wait_until(refused, interval=0.05)
        wait_until(lambda: proxy.exchanges[-1].outcome == "throttled")
        assert proxy.exchanges[-1].limits_backend_error is None
        wait_until(lambda: any(a.event == "alert.resolved" for a in proxy.sink.alerts))
        assert [a.alert for a in proxy.sink.alerts] == ["limits_backend_down"] * 2
        alerts = httpx.get(proxy.url + "/pulse/alerts").json()
        shown = {rule["name"]: rule for rule in alerts["rules"]}
        assert shown["limits_backend_down"]["state"] == "ok" and alerts["active"] == []
        assert [a["event"] for a in alerts["recent"]] == ["alert.resolved", "alert.fired"]


def test_concurrent_queue_on_redis(redis_server: RedisServer) -> None:
    """A shared concurrency limit with a queue: a second request waits for the first
    to end (on either replica) instead of a 429."""
    import threading

    config = shared(redis_server)
    config["limits"]["rules"] = [
        {"name": "one_in_flight", "by": "all", "concurrent": 1, "queue_timeout_s": 5}
    ]
    upstream = CountingUpstream()
    with (
        run_server(upstream) as url,
        start_proxy(url + "/v1", config) as first,
        start_proxy(url + "/v1", config) as second,
    ):
        holder = threading.Thread(
            target=sdk(first, "sk-a").chat.completions.create,
            kwargs={
                "model": "gpt-4o-mini",
                "messages": MESSAGES,
                "extra_headers": {"x-mock-latency-ms": "300"},
            },
        )
        holder.start()
        wait_until(lambda: upstream.seen == 1)
        answer = sdk(second, "sk-b").chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
        holder.join()
        assert answer.choices
        assert [e.outcome for e in first.wait_for(1) + second.wait_for(1)] == ["success"] * 2


def test_silent_redis_times_out_and_deny_refuses(redis_server: RedisServer) -> None:
    """A Redis that answers nothing costs a request at most backend_timeout_ms: with
    on_backend_error deny it is refused (429, marked "timeout"), the upstream not called."""
    upstream = CountingUpstream()
    config = shared(redis_server, on_backend_error="deny", backend_timeout_ms=100)
    with run_server(upstream) as url, start_proxy(url + "/v1", config) as proxy:
        client = sdk(proxy, "sk-silent")
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
        redis_server.pause(True)
        try:
            with pytest.raises(openai.RateLimitError) as refused:
                client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
        finally:
            redis_server.pause(False)
        assert "unavailable" in refused.value.message
        first, second = proxy.wait_for(2)
        assert first.limits_backend_error is None
        assert (second.outcome, second.limits_backend_error) == ("throttled", "timeout")
        assert second.error_type == "limits_backend_unavailable"
        assert upstream.seen == 1
