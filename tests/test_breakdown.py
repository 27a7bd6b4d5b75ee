"""The spend breakdown stays bounded however many tag keys, users and keys clients invent."""

from __future__ import annotations

import random
import time

import httpx
import orjson
from conftest import start_proxy

from pulse_proxy.stats.breakdown import Breakdown, BreakdownTally

OTHER_TAG = "tag:other"
CHAT = {"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}


def _row() -> list[float]:
    return [1.0, 0.0, 10.0, 5.0, 15.0, 0.001, 0.0, 0.0]


def test_a_hundred_thousand_tag_keys_fold_into_tag_other() -> None:
    """100,000 distinct keys (and users, and key hashes) leave a breakdown of a few dozen
    dimensions and a bounded number of rows, and every request is still counted."""
    now = time.time()
    start = int(now // 10) * 10
    breakdown = Breakdown(clock=lambda: now, max_values=50)  # 20 tag keys, 1000 rows by default
    tally = BreakdownTally()
    for i in range(100_000):
        tally.rows[(f"tag:k{i}", f"v{i}")] = {start: _row()}
        tally.rows[("user", f"user-{i}")] = {start: _row()}
        tally.rows[("api_key", f"{i:012x}")] = {start: _row()}
    breakdown.merge(tally)

    window = breakdown.window(300)
    tag_dimensions = [d for d in window if d.startswith("tag:") and d != OTHER_TAG]
    assert len(tag_dimensions) == 20
    assert window[OTHER_TAG] == {"other": window[OTHER_TAG]["other"]}
    assert window[OTHER_TAG]["other"]["requests"] == 100_000 - 20
    for dimension in ("user", "api_key"):
        assert len(window[dimension]) == 51  # 50 kept values and other
        assert sum(v["requests"] for v in window[dimension].values()) == 100_000
    assert len(orjson.dumps(breakdown.to_json())) < 100_000


def test_rows_of_all_dimensions_together_stop_at_max_rows() -> None:
    """Past max_rows, a new value of any dimension folds into that dimension's other."""
    now = time.time()
    start = int(now // 10) * 10
    breakdown = Breakdown(clock=lambda: now, max_values=1000, max_tag_keys=20, max_rows=100)
    tally = BreakdownTally()
    for i in range(500):
        tally.rows[("user", f"user-{i}")] = {start: _row()}
        tally.rows[("tag:team", f"team-{i}")] = {start: _row()}
    breakdown.merge(tally)

    window = breakdown.window(300)
    rows = sum(len(values) for values in window.values())
    assert rows <= 100 + len(window)  # each dimension may add its own other
    assert window["tag:team"]["other"]["requests"] == 500 - len(window["tag:team"]) + 1
    assert sum(v["requests"] for v in window["user"].values()) == 500


def test_running_windows_match_summing_the_buckets() -> None:
    """The windows kept running (added on merge, subtracted as buckets age out) give the
    same figures as summing the buckets, through clock jumps and batches that arrive late."""
    rng = random.Random(7)
    now = [1_800_000_000.0]
    breakdown = Breakdown(clock=lambda: now[0], max_values=5)
    for _ in range(3000):
        now[0] += rng.choice([0.0, 0.5, 3.0, 11.0, 70.0, 400.0])
        ended = now[0] - rng.choice([0.0, 0.0, 5.0, 60.0, 290.0, 3590.0, 4000.0])
        tally = BreakdownTally()
        tally.rows[("user", f"u{rng.randrange(8)}")] = {
            int(ended // 10) * 10: [1.0, 1.0, 3.0, 2.0, 5.0, 0.1, 1.0, 0.0]
        }
        breakdown.merge(tally)
        if rng.random() < 0.05:
            for seconds in breakdown.windows:
                expected = {
                    key: [round(v, 6) for v in totals]
                    for key, totals in breakdown._sum_buckets(now[0] - seconds).items()
                }
                running = {
                    key: [round(v, 6) for v in totals]
                    for key, totals in breakdown._running[seconds].totals.items()
                }
                assert running == expected, seconds
    assert breakdown.window(300) is not None


def test_client_invented_tag_keys_fold_through_a_real_proxy(mock_url: str) -> None:
    """Thousands of distinct X-Pulse-Tags keys, users and API keys through a real proxy:
    /pulse/stats keeps the first 20 (metrics.max_tag_keys) as dimensions, counts the rest
    in tag:other, and stays small."""
    requests, tags_each = 300, 10  # 3,000 distinct tag keys
    with start_proxy(mock_url + "/v1") as proxy, httpx.Client() as client:
        for i in range(requests):
            tags = ",".join(f"k{i}-{j}=v{j}" for j in range(tags_each))
            headers = {
                "X-Pulse-Tags": tags,
                "X-Pulse-User": f"user-{i}",
                "Authorization": f"Bearer sk-{i}",
            }
            assert client.post(
                proxy.base_url + "/chat/completions", json=CHAT, headers=headers
            ).is_success
        proxy.wait_for(requests, timeout=60)
        response = client.get(proxy.url + "/pulse/stats")
    assert response.status_code == 200
    assert len(response.content) < 200_000
    breakdown = response.json()["breakdown"]["5m"]
    tag_dimensions = sorted(d for d in breakdown if d.startswith("tag:"))
    first_keys = [f"tag:k{i}-{j}" for i in range(2) for j in range(tags_each)]
    assert tag_dimensions == sorted([*first_keys, OTHER_TAG])
    assert breakdown[OTHER_TAG]["other"]["requests"] == requests * tags_each - 20
    assert len(breakdown["user"]) == 51 and breakdown["user"]["other"]["requests"] == requests - 50
    assert len(breakdown["api_key"]) == 51
    assert set(breakdown) == {"user", "api_key", *tag_dimensions}
