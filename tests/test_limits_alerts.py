"""Alerts that act: a limit switched on while its alert fires, off when it resolves."""

from __future__ import annotations

from typing import Any

import httpx
from conftest import RunningProxy, start_proxy, wait_until
from test_app_alerts import FakeClock

from pulse_proxy.settings.alerts import default_rules


def _chat(proxy: RunningProxy, key: str, **headers: str) -> int:
    body = {
        "model": "gpt-4o-mini",
        "messages": [{"role": "user", "content": "Say hello"}],
        "max_tokens": 3000,
    }
    answer = httpx.post(
        proxy.base_url + "/chat/completions",
        json=body,
        headers={"Authorization": f"Bearer {key}", **headers},
        timeout=30,
    )
    return answer.status_code


def _send(proxy: RunningProxy, key: str, count: int, **headers: str) -> list[int]:
    before = len(proxy.sink.exchanges)
    codes = [_chat(proxy, key, **headers) for _ in range(count)]
    wait_until(lambda: len(proxy.sink.exchanges) >= before + count)
    return codes


def test_token_brake_follows_token_spike(mock_url: str) -> None:
    """token_spike fires: the per-key token brake applies to the spending key (not to
    another), the alert.fired event names it; token_spike resolves: the brake lifts
    and alert.resolved names it too."""
    clock = FakeClock()
    config: dict[str, Any] = {
        "alerts": {
            "evaluation_interval_s": 3600,
            "rules": [r.model_dump() for r in default_rules() if r.name == "token_spike"],
        },
        "limits": {
            "rules": [
                {
                    "name": "token_brake",
                    "by": "api_key",
                    "tokens_per_min": 5000,
                    "when_alert": "token_spike",
                }
            ]
        },
    }
    big = {"X-Mock-Completion-Tokens": "2500"}
    with start_proxy(mock_url + "/v1", config, clock=clock) as proxy:
        app = proxy.app
        assert _send(proxy, "sk-quiet", 10) == [200] * 10
        app.evaluate_alerts()
        assert proxy.sink.alerts == []
        clock.advance(900)
        # The spike, before the brake exists: nothing is refused.
        assert _send(proxy, "sk-spender", 15, **big) == [200] * 15
        app.evaluate_alerts()
        (fired,) = proxy.sink.alerts
        assert (fired.event, fired.alert, fired.actions) == (
            "alert.fired",
            "token_spike",
            [{"action": "limit_on", "limit": "token_brake"}],
        )
        # Braked: one big answer fits in 5000 tokens a minute, a second does not.
        assert _send(proxy, "sk-spender", 3, **big) == [200, 429, 429]
        assert _send(proxy, "sk-quiet", 2) == [200, 200]
        throttled = [e for e in proxy.exchanges if e.outcome == "throttled"]
        assert {e.throttled_by for e in throttled} == {"token_brake"}
        assert len({e.api_key_hash for e in throttled}) == 1
        limits = httpx.get(proxy.url + "/pulse/limits").json()
        assert limits["rules"][0]["active"] is True

        clock.advance(360)
        _send(proxy, "sk-quiet", 10)
        app.evaluate_alerts()
        clock.advance(65)
        app.evaluate_alerts()
        clock.advance(30)
        app.evaluate_alerts()
        resolved = proxy.sink.alerts[-1]
        assert (resolved.event, resolved.actions) == (
            "alert.resolved",
            [{"action": "limit_off", "limit": "token_brake"}],
        )
        assert _send(proxy, "sk-spender", 2, **big) == [200, 200]
        wait_until(
            lambda: (
                len([line for line in proxy.log_lines() if line["event"].startswith("alert.")]) == 2
            )
        )
        lines = [line for line in proxy.log_lines() if line["event"].startswith("alert.")]
        assert [line["actions"] for line in lines] == [
            [{"action": "limit_on", "limit": "token_brake"}],
            [{"action": "limit_off", "limit": "token_brake"}],
        ]
        # /pulse/alerts (and so the dashboard) names the limits too, newest first.
        recent = httpx.get(proxy.url + "/pulse/alerts").json()["recent"]
        assert [(a["event"], a["actions"]) for a in recent] == [
            ("alert.resolved", [{"action": "limit_off", "limit": "token_brake"}]),
            ("alert.fired", [{"action": "limit_on", "limit": "token_brake"}]),
        ]
