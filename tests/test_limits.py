"""Limit rules, their counters and their 429, without HTTP."""

from __future__ import annotations

import asyncio
import tracemalloc
from typing import Any

import pytest

from pulse_proxy.limits import window
from pulse_proxy.limits.limiter import Limiter
from pulse_proxy.records import Capture, Exchange
from pulse_proxy.settings import ConfigError, build_settings
from pulse_proxy.settings.limits import LimitsSettings


class Clock:
    def __init__(self, now: float = 1_000_020.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def limiter(rules: list[dict[str, Any]], clock: Clock, **options: Any) -> Limiter:
    settings = LimitsSettings.model_validate({"rules": rules, **options})
    return Limiter(settings, hash_key=b"k" * 32, max_tags=10, prices=None, clock=clock)


def capture(
    key: str | None = "sk-a", user: str | None = None, body: bytes = b"", request_id: str = "r"
) -> Capture:
    cap = Capture(Exchange(request_id=request_id, method="POST", path="/v1/chat/completions"))
    cap.exchange.endpoint = "chat"
    cap.api_key = key
    cap.user_header = user
    cap.request_body = body
    return cap


def admit(lim: Limiter, cap: Capture) -> Any:
    return asyncio.run(lim.admit(cap))


@pytest.mark.parametrize(
    ("rule", "key"),
    [
        ({"name": "r", "by": "ip", "requests_per_min": 1}, "limits.rules.0.by"),
        ({"name": "r", "requests_per_min": 0}, "limits.rules.0.requests_per_min"),
        ({"name": "r", "tokens_per_min": -5}, "limits.rules.0.tokens_per_min"),
        ({"name": "r", "cost_usd_per_day": 0}, "limits.rules.0.cost_usd_per_day"),
        ({"name": "r"}, "limits.rules.0"),
        ({"name": "r", "concurrent": 1, "when_alert": "nope"}, "limits.rules.0.when_alert"),
    ],
)
def test_bad_rules_are_refused_naming_the_key(rule: dict[str, Any], key: str) -> None:
    """An unknown dimension, a zero or negative limit, a rule without a limit or a
    when_alert naming no alert rule is refused, and the message names the key."""
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        build_settings({"limits": {"rules": [rule]}})


def test_redis_url_scheme_is_checked() -> None:
    """A redis_url that is not redis://, rediss:// or unix:// is refused, naming the key."""
    with pytest.raises(ConfigError, match=r"limits\.redis_url"):
        build_settings({"limits": {"backend": "redis", "redis_url": "http://127.0.0.1:6379"}})
    with pytest.raises(ConfigError, match="redis_url"):
        build_settings({"limits": {"backend": "redis"}})


def test_requests_per_min_slides() -> None:
    """Five a minute per key: the sixth is refused with a wait, another key is not,
    and the previous minute's count fades out as the window slides."""
    clock = Clock(60 * 1000.0)  # the start of a slot
    lim = limiter([{"name": "per_key", "requests_per_min": 5}], clock)
    for _ in range(5):
        assert admit(lim, capture()) is None
    refusal = admit(lim, capture())
    assert refusal is not None and refusal.rule == "per_key"
    assert 60 < refusal.wait_s <= 72  # the five must slide out of the window
    assert ("requests", 5.0, 0.0, refusal.wait_s) in refusal.figures
    assert admit(lim, capture("sk-b")) is None
    clock.now += 60 + 30  # half of the previous slot's five still count: 2.5
    assert admit(lim, capture()) is None
    assert admit(lim, capture()) is None
    assert admit(lim, capture()) is not None
    assert lim.throttled == {"per_key": 2}


def test_refused_request_is_charged_to_no_rule() -> None:
    """All or nothing: a request one rule refuses is not counted by the others."""
    clock = Clock()
    lim = limiter(
        [
            {"name": "wide", "by": "all", "requests_per_min": 100},
            {"name": "narrow", "requests_per_min": 1},
        ],
        clock,
    )
    assert admit(lim, capture()) is None
    for _ in range(3):
        assert admit(lim, capture()).rule == "narrow"
    (wide,) = lim.snapshot()["rules"][0]["limits"]
    assert wide["top"][0]["used"] == 1


def test_concurrent_queue_waits_for_a_slot() -> None:
    """concurrent with queue_timeout_s: a request waits for a slot instead of a 429,
    and gets one when a request in flight ends; without one in time, 429."""
    clock = Clock()

    async def scenario() -> tuple[Any, Any]:
        lim = limiter([{"name": "c", "concurrent": 1, "queue_timeout_s": 0.2}], clock)
        first = capture(request_id="1")
        assert await lim.admit(first) is None
        waiting = asyncio.ensure_future(lim.admit(capture(request_id="2")))
        await asyncio.sleep(0.01)
        lim.release(first)
        admitted = await waiting
        timed_out = await lim.admit(capture(request_id="3"))
        return admitted, timed_out

    admitted, timed_out = asyncio.run(scenario())
    assert admitted is None
    assert timed_out is not None and timed_out.rule == "c"


def test_tokens_are_charged_ahead_and_corrected() -> None:
    """Tokens: the estimate plus max_tokens is charged before; the accounted usage
    replaces it afterwards."""
    clock = Clock()
    lim = limiter([{"name": "t", "by": "user", "tokens_per_min": 1000}], clock)
    body = b'{"model":"gpt-4o","max_tokens":500,"messages":[{"role":"user","content":"hi"}]}'
    cap = capture(user="ann", body=body, request_id="x1")
    assert admit(lim, cap) is None
    lim.release(cap)
    charged = lim.snapshot()["rules"][0]["limits"][0]["top"][0]
    assert charged["value"] == "ann" and 500 < charged["used"] < 520
    assert admit(lim, capture(user="ann", body=body, request_id="x2")) is not None
    done = Exchange(request_id="x1", method="POST", path="/v1/chat/completions", total_tokens=40)
    lim.correct([done])
    assert lim.snapshot()["rules"][0]["limits"][0]["top"][0]["used"] == 40
    assert admit(lim, capture(user="ann", body=body, request_id="x3")) is None


def test_when_alert_switches_a_rule() -> None:
    """A when_alert rule is enforced only between its alert's firing and resolving."""
    clock = Clock()
    lim = limiter([{"name": "brake", "requests_per_min": 1, "when_alert": "token_spike"}], clock)
    for _ in range(3):
        assert admit(lim, capture()) is None
    assert lim.switch("token_spike", True) == ["brake"]
    assert lim.switch("error_rate", True) == []
    assert admit(lim, capture()) is None
    assert admit(lim, capture()) is not None
    assert lim.switch("token_spike", False) == ["brake"]
    assert admit(lim, capture()) is None


def test_memory_is_bounded_with_100k_users() -> None:
    """100,000 distinct users never grow a table past max_keys; the overflow shares
    one 'other' counter, and the memory held stays small."""
    clock = Clock()
    lim = limiter(
        [{"name": "per_user", "by": "user", "requests_per_min": 10**6}], clock, max_keys=1000
    )

    async def flood() -> int:
        refused = 0
        for n in range(100_000):
            cap = capture(user=f"user-{n}", request_id=str(n))
            refused += await lim.admit(cap) is not None
            lim.release(cap)
        return refused

    tracemalloc.start()
    try:
        before = tracemalloc.take_snapshot()
        assert asyncio.run(flood()) == 0
        after = tracemalloc.take_snapshot()
    finally:
        tracemalloc.stop()
    assert lim.memory.size() == 1000 + 1  # the kept users and "other"
    (table,) = lim.memory.tables.values()
    assert table.counts["other"][1] == 100_000 - 1000
    grown = sum(stat.size_diff for stat in after.compare_to(before, "filename"))
    assert grown < 1_000_000


def test_go_durations() -> None:
    """Reset times read as OpenAI writes them."""
    assert window.go_duration(0.02) == "20ms"
    assert window.go_duration(1.5) == "1.5s"
    assert window.go_duration(360) == "6m0s"


def test_throttled_requests_stay_out_of_the_error_rate() -> None:
    """A throttled request is neither an error nor part of the error rate's
    denominator: throttling cannot dilute (and so resolve) an error_rate alert."""
    from pulse_proxy.stats.aggregate import Aggregate

    aggregate = Aggregate()
    for outcome in ("success", "upstream_error", "throttled", "throttled"):
        aggregate.add(Exchange(request_id="r", method="POST", path="/v1/x", outcome=outcome))  # type: ignore[arg-type]
    assert aggregate.errors == 1
    assert aggregate.measure("error_rate", "rate", 60).value == 0.5
    assert aggregate.summary(60)["error_rate"] == 0.5


def test_example_config_limits_validate() -> None:
    """The example config's commented limits section, uncommented, is a valid config
    with both actions waiting on their alerts."""
    from pathlib import Path

    import yaml

    text = (Path(__file__).parent.parent / "config" / "pulse.example.yaml").read_text()
    block = text[text.index("# limits:") :].splitlines()
    uncommented = "\n".join(line[2:] for line in block if line.startswith("# "))
    settings = build_settings(yaml.safe_load(uncommented))
    assert [(r.name, r.when_alert) for r in settings.limits.rules] == [
        ("token_brake", "token_spike"),
        ("protect_upstream", "error_rate"),
    ]


def test_tags_models_and_match() -> None:
    """by tag:<key> and by model count per value; match limits only the values named;
    a request without the dimension is not counted by the rule."""
    clock = Clock()
    lim = limiter(
        [
            {"name": "team", "by": "tag:team", "match": ["search"], "requests_per_min": 1},
            {"name": "model", "by": "model", "requests_per_min": 2},
        ],
        clock,
    )

    def request(tags: str | None, model: str) -> Capture:
        cap = capture(body=b'{"model":"%s","messages":[]}' % model.encode())
        cap.tags_header = tags
        return cap

    assert admit(lim, request("team=search", "a")) is None
    assert admit(lim, request("team=search", "b")).rule == "team"
    assert admit(lim, request("team=ads", "b")) is None  # not matched
    assert admit(lim, request(None, "a")) is None
    assert admit(lim, request(None, "a")).rule == "model"


def test_cost_per_day_from_the_price_table() -> None:
    """cost_usd_per_day charges the priced estimate ahead and refuses past the budget."""
    from pulse_proxy.accounting.pricing import PriceTable

    settings = LimitsSettings.model_validate(
        {"rules": [{"name": "budget", "by": "user", "cost_usd_per_day": 0.01}]}
    )
    lim = Limiter(
        settings, hash_key=b"k" * 32, max_tags=10, prices=PriceTable.load(), clock=Clock()
    )
    body = b'{"model":"gpt-4o","max_tokens":300,"messages":[{"role":"user","content":"hi"}]}'
    admitted = 0
    while admit(lim, capture(user="ann", body=body, request_id=str(admitted))) is None:
        admitted += 1
        assert admitted < 100
    (cost,) = lim.snapshot()["rules"][0]["limits"]
    assert cost["kind"] == "cost" and cost["window_s"] == 86_400
    assert 0.01 - 0.004 < cost["top"][0]["used"] <= 0.01
    assert admitted >= 2
