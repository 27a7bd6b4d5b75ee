"""Rolling statistics: quantile accuracy, window expiry, model folding and bounded memory."""

from __future__ import annotations

import gc
import math
import random
import sys
import tracemalloc
import types
from typing import Any

import pytest
from ddsketch import DDSketch

from pulse_proxy.records import Exchange
from pulse_proxy.stats import OTHER_MODEL, RELATIVE_ACCURACY, RollingStats, Sketch, window_label

T0 = 1_800_000_000.0  # a round epoch (2027-01-15), so bucket boundaries are predictable


class FakeClock:
    """A clock the test moves by hand."""

    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def make_exchange(**overrides: Any) -> Exchange:
    """A successful chat request with every figure set; override what the test is about."""
    fields: dict[str, Any] = {
        "request_id": "req-1",
        "method": "POST",
        "path": "/v1/chat/completions",
        "endpoint": "chat",
        "model": "gpt-4o",
        "status_code": 200,
        "latency_ms": 800.0,
        "ttft_ms": 200.0,
        "prompt_tokens": 100,
        "completion_tokens": 50,
        "total_tokens": 150,
        "prompt_tokens_local": 98,
        "cost_usd": 0.001,
        "ended_at": T0,
    }
    fields.update(overrides)
    return Exchange(**fields)


def exact_percentile(values: list[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default), in pure Python."""
    ordered = sorted(values)
    position = q * (len(ordered) - 1)
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def assert_close(estimate: float | None, exact: float, tolerance: float = 0.01) -> None:
    assert estimate is not None
    assert abs(estimate - exact) <= tolerance * exact, (
        estimate,
        exact,
        abs(estimate - exact) / exact,
    )


def test_quantiles_within_one_percent_of_exact() -> None:
    """p50/p95/p99 of lognormal latencies and prompt sizes, merged across buckets, are within 1 %."""
    clock = FakeClock(T0 + 299)
    stats = RollingStats(clock=clock)
    rng = random.Random(7)
    latencies = [rng.lognormvariate(6.5, 0.9) for _ in range(20_000)]
    prompts = [int(rng.lognormvariate(7, 1.2)) + 1 for _ in range(20_000)]
    for i, (latency, prompt) in enumerate(zip(latencies, prompts)):
        # Spread over the whole 5 minutes (30 buckets) and two models, so merging is exercised.
        model = "gpt-4o" if i % 3 else "gpt-4o-mini"
        stats.add(
            make_exchange(
                model=model, latency_ms=latency, prompt_tokens=prompt, ended_at=T0 + i * 0.0149
            )
        )
    window = stats.snapshot(300)
    assert window["requests"] == 20_000
    for name, q in (("p50", 0.5), ("p95", 0.95), ("p99", 0.99)):
        assert_close(window["latency_ms"][name], exact_percentile(latencies, q))
        assert_close(
            window["prompt_tokens"][name], exact_percentile([float(p) for p in prompts], q)
        )
    assert window["latency_ms"]["max"] == pytest.approx(max(latencies), abs=1e-3)
    assert window["prompt_tokens"]["max"] == max(prompts)
    mini = [v for i, v in enumerate(latencies) if i % 3 == 0]
    assert_close(
        stats.snapshot(300, model="gpt-4o-mini")["latency_ms"]["p95"], exact_percentile(mini, 0.95)
    )


def test_hour_window_quantiles_within_one_percent() -> None:
    """The 1 h window, built from folded coarse buckets, is as accurate as the 5 m one."""
    clock = FakeClock(T0)
    stats = RollingStats(clock=clock)
    rng = random.Random(11)
    latencies = []
    for i in range(12_000):  # 40 minutes, ticking the clock as a live proxy would
        clock.now = T0 + i * 0.2
        latency = rng.lognormvariate(5.5, 1.1)
        latencies.append(latency)
        stats.add(make_exchange(latency_ms=latency, ended_at=clock.now))
    hour = stats.snapshot(3600)
    assert hour["requests"] == 12_000
    for name, q in (("p50", 0.5), ("p95", 0.95), ("p99", 0.99)):
        assert_close(hour["latency_ms"][name], exact_percentile(latencies, q))


def test_sparse_store_matches_the_library_dense_store() -> None:
    """The dict-backed store gives the very quantiles of ddsketch's own DDSketch."""
    rng = random.Random(3)
    ours, reference = Sketch(), DDSketch(RELATIVE_ACCURACY)
    halves = [Sketch(), Sketch()]
    for i in range(5_000):
        value = rng.lognormvariate(3, 2)
        ours.add(value)
        reference.add(value)
        halves[i % 2].add(value)
    halves[0].merge(halves[1])
    for q in (0.0, 0.01, 0.5, 0.9, 0.95, 0.99, 1.0):
        assert ours.quantile(q) == pytest.approx(reference.get_quantile_value(q))
        assert halves[0].quantile(q) == pytest.approx(reference.get_quantile_value(q))
    assert ours.count == halves[0].count == 5_000


def test_buckets_expire_with_the_clock() -> None:
    """Records leave the 1 m window after a minute, the 5 m after five, and the 1 h after an hour."""
    clock = FakeClock(T0 + 1)
    stats = RollingStats(clock=clock)
    for _ in range(3):
        stats.add(make_exchange(ended_at=T0 + 1))

    def counts() -> dict[int, int]:
        return {w: stats.snapshot(w)["requests"] for w in (60, 300, 3600)}

    assert counts() == {60: 3, 300: 3, 3600: 3}
    clock.now = T0 + 65
    assert counts() == {60: 0, 300: 3, 3600: 3}
    clock.now = T0 + 305
    assert counts() == {60: 0, 300: 0, 3600: 3}
    clock.now = T0 + 3605
    assert counts() == {60: 0, 300: 0, 3600: 0}
    assert stats.to_json()["windows"]["1h"]["models"] == {}


def test_late_record_reaches_every_window() -> None:
    """A record that arrives after its bucket closed still counts in the minute and the hour."""
    clock = FakeClock(T0)
    stats = RollingStats(clock=clock)
    stats.add(make_exchange(ended_at=T0 + 1))
    stats.add(make_exchange(ended_at=T0 + 25))  # opens a later bucket, closing the first
    clock.now = T0 + 26
    assert stats.snapshot(3600)["requests"] == 2
    stats.add(make_exchange(ended_at=T0 + 2))  # late, for the closed bucket
    stats.add(make_exchange(ended_at=T0 + 15))  # late, for a bucket that never opened
    assert stats.snapshot(60)["requests"] == 4
    assert stats.snapshot(3600)["requests"] == 4
    clock.now = T0 + 200
    assert stats.snapshot(3600)["requests"] == 4


def test_models_past_the_limit_fold_into_other() -> None:
    """Past max_models distinct names, new models count under "other"; stale names free their slot."""
    clock = FakeClock(T0)
    stats = RollingStats(clock=clock, max_models=3)
    for name in ("a", "b", "c", "d", "e", "e"):
        stats.add(make_exchange(model=name, ended_at=T0))
    assert stats.models() == ["a", "b", "c"]
    models = stats.to_json()["windows"]["1m"]["models"]
    assert {name: body["requests"] for name, body in models.items()} == {
        "other": 3,
        "a": 1,
        "b": 1,
        "c": 1,
    }
    assert next(iter(models)) == OTHER_MODEL  # busiest first
    clock.now = T0 + 2 * 3600
    stats.add(make_exchange(model="f", ended_at=clock.now))
    assert stats.models() == ["f"]


def test_window_figures() -> None:
    """Rates, token sums, tokens per minute, error rate, cost and drift come out as defined."""
    clock = FakeClock(T0 + 59.5)
    stats = RollingStats(clock=clock)
    for i in range(60):  # one per second over the minute
        stats.add(
            make_exchange(
                ended_at=T0 + i,
                outcome="upstream_error" if i < 6 else "success",
                cost_usd=None if i % 2 else 0.002,
                prompt_tokens_local=95,
            )
        )
    stats.add(
        make_exchange(ended_at=T0 + 1, outcome="client_error", prompt_tokens_local=95)
    )  # not the service's fault
    body = stats.snapshot(60)
    assert body["requests"] == 61
    assert body["errors"] == 6
    assert body["error_rate"] == pytest.approx(6 / 61, abs=1e-4)
    assert body["outcomes"] == {"client_error": 1, "success": 54, "upstream_error": 6}
    assert body["tokens"] == {
        "prompt": 6100,
        "completion": 3050,
        "total": 9150,
        "per_minute": pytest.approx(9150 / 59.5 * 60, abs=0.1),
        "per_request": 150.0,
    }
    assert body["rate_per_s"] == pytest.approx(61 / 59.5, abs=1e-3)
    assert body["cost_usd"] == {"sum": pytest.approx(30 * 0.002 + 0.001), "priced_requests": 31}
    assert body["token_drift"] == {"sum": 5 * 61, "mean": 5.0, "count": 61}
    assert stats.measure("error_rate", "rate", 60).samples == 61
    assert stats.measure("tokens_per_minute", "rate", 60).value == pytest.approx(9150 / 59.5 * 60)
    assert stats.measure("requests", "count", 60).value == 61
    missing = stats.measure("ttft_ms", "p95", 60, model="no-such-model")
    assert (missing.value, missing.samples) == (None, 0)


def test_baseline_window_excludes_the_recent_window() -> None:
    """A measure ending five minutes ago sees the earlier traffic only, never the recent burst."""
    clock = FakeClock(T0)
    stats = RollingStats(clock=clock)
    for i in range(600):  # 50 minutes of quiet traffic, one request each 5 s
        clock.now = T0 + i * 5
        stats.add(make_exchange(total_tokens=100, ended_at=clock.now))
    for i in range(100):  # then a burst in the last 2 minutes
        clock.now = T0 + 3000 + i
        stats.add(make_exchange(total_tokens=10_000, ended_at=clock.now))
    recent = stats.measure("tokens_per_minute", "rate", 300)
    baseline = stats.measure("tokens_per_minute", "rate", 3300, before_s=300)
    assert baseline.samples < 600 and baseline.value == pytest.approx(1200, rel=0.01)
    assert recent.value is not None and baseline.value is not None
    assert recent.value > 100 * baseline.value
    assert stats.measure("total_tokens", "max", 3300, before_s=300).value == 100


def test_series_has_a_point_per_bucket() -> None:
    """series() gives regular 10 s points over 5 minutes and 60 s points over the hour."""
    clock = FakeClock(T0 + 125)
    stats = RollingStats(clock=clock)
    for i in range(1, 11):  # 100 .. 1000 ms; quantiles are the sample at rank floor(q * (n - 1))
        stats.add(
            make_exchange(
                ended_at=T0 + 121, latency_ms=100.0 * i, outcome="timeout" if i == 1 else "success"
            )
        )
    five = stats.series(300)
    assert len(five) == 30 and five[-1]["t"] == T0 + 120
    assert five[-1]["requests"] == 10 and five[-1]["errors"] == 1
    assert five[-1]["latency_p50"] == pytest.approx(500, rel=0.01)
    assert five[-1]["latency_p95"] == pytest.approx(900, rel=0.01)
    assert five[0]["requests"] == 0 and five[0]["latency_p50"] is None
    hour = stats.series(3600)
    assert len(hour) == 60 and hour[-1]["requests"] == 10 and hour[-1]["tokens"] == 1500


def test_series_narrows_to_one_model_with_the_chart_figures() -> None:
    """series(model=...) counts only that model's requests, and each point carries the
    figures the dashboard draws: error rate, tokens per request and per minute, prompt p95/max."""
    clock = FakeClock(T0 + 25)
    stats = RollingStats(clock=clock)
    stats.add(make_exchange(ended_at=T0 + 11, model="a", prompt_tokens=100, total_tokens=150))
    stats.add(make_exchange(ended_at=T0 + 12, model="a", prompt_tokens=300, total_tokens=350,
                            outcome="upstream_error"))  # fmt: skip
    stats.add(make_exchange(ended_at=T0 + 21, model="b", total_tokens=1000))
    points = stats.series(60, model="a")
    assert [p["t"] for p in points] == [T0 - 30 + 10 * i for i in range(6)]
    slot = points[-2]
    assert (slot["requests"], slot["errors"], slot["error_rate"]) == (2, 1, 0.5)
    assert slot["tokens"] == 500 and slot["tokens_per_request"] == 250
    assert slot["tokens_per_minute"] == 3000  # 500 tokens in a 10 s slot
    # Two samples: p95 is the one at rank floor(0.95 * 1), the shorter prompt.
    assert slot["prompt_max"] == 300 and slot["prompt_p95"] == pytest.approx(100, rel=0.01)
    assert points[-1]["requests"] == 0 and points[-1]["error_rate"] is None
    assert points[-1]["tokens_per_request"] is None and points[-1]["prompt_max"] is None
    assert sum(p["requests"] for p in stats.series(60)) == 3
    assert sum(p["requests"] for p in stats.series(60, model="nobody")) == 0
    assert sum(p["requests"] for p in stats.series(3600, model="b")) == 1
    assert stats.step_s(60) == stats.step_s(300) == 10 and stats.step_s(3600) == 60


def test_prompt_histogram_has_power_of_two_bins() -> None:
    """Prompt lengths fall into [2^k, 2^(k+1)) bins (exact at the edges for small counts),
    with empty bins kept between the shortest and the longest prompt."""
    clock = FakeClock(T0 + 5)
    stats = RollingStats(clock=clock)
    for tokens in (0, 1, 5, 7, 64, 100, 127, 1000):
        stats.add(make_exchange(ended_at=T0 + 1, prompt_tokens=tokens))
    histogram = stats.prompt_histogram(300)
    assert histogram["count"] == 8 and histogram["max"] == 1000
    bins = {(b["lo"], b["hi"]): b["count"] for b in histogram["bins"]}
    assert next(iter(bins)) == (0, 1) and list(bins)[-1] == (512, 1024)
    assert bins[(0, 1)] == 1 and bins[(1, 2)] == 1 and bins[(4, 8)] == 2
    assert bins[(64, 128)] == 3 and bins[(512, 1024)] == 1 and bins[(128, 256)] == 0
    assert sum(bins.values()) == 8
    assert stats.prompt_histogram(300, model="other-model")["bins"] == []


def test_chart_body_shape() -> None:
    """The /pulse/series body names its window, step and model and lists the known models."""
    clock = FakeClock(T0 + 5)
    stats = RollingStats(clock=clock)
    stats.add(make_exchange(ended_at=T0 + 1, model="gpt-4o-mini"))
    body = stats.chart(300, "gpt-4o-mini")
    assert body["generated_at"] == "2027-01-15T08:00:05.000Z"
    assert (body["window"], body["window_s"], body["step_s"]) == ("5m", 300, 10)
    assert body["model"] == "gpt-4o-mini" and body["models"] == ["gpt-4o-mini"]
    assert len(body["points"]) == 30 and body["prompt_histogram"]["count"] == 1


def test_to_json_shape() -> None:
    """The /pulse/stats body has generated_at and 1m/5m/1h windows, each overall and per model."""
    clock = FakeClock(T0 + 10.5)
    stats = RollingStats(clock=clock)
    stats.add(make_exchange(ended_at=T0 + 10))
    body = stats.to_json()
    assert body["generated_at"] == "2027-01-15T08:00:10.500Z"
    assert list(body["windows"]) == ["1m", "5m", "1h"]
    for window in body["windows"].values():
        assert window["overall"]["requests"] == 1
        assert set(window["models"]) == {"gpt-4o"}
        assert set(window["overall"]["latency_ms"]) == {"count", "mean", "p50", "p95", "p99", "max"}
    assert window_label(90) == "90s"


def test_unsupported_statistic_is_refused() -> None:
    """Asking for a statistic a metric does not keep is an error, not a silent None."""
    stats = RollingStats(clock=FakeClock())
    with pytest.raises(ValueError, match="requests/p95"):
        stats.measure("requests", "p95", 300)


# -- bounded memory ------------------------------------------------------------------


def retained_bytes(root: object) -> int:
    """Bytes of every object reachable from ``root`` (classes, modules and functions excluded)."""
    skip = (type, types.ModuleType, types.FunctionType, types.BuiltinFunctionType, types.MethodType)
    seen: set[int] = set()
    stack = [root]
    total = 0
    while stack:
        obj = stack.pop()
        if id(obj) in seen or isinstance(obj, skip):
            continue
        seen.add(id(obj))
        total += sys.getsizeof(obj)
        stack.extend(gc.get_referents(obj))
    return total


def _traffic(
    stats: RollingStats,
    clock: FakeClock,
    first: int,
    last: int,
    per_second: float,
    junk_every: int = 100,
) -> None:
    """Records ``first..last`` at ``per_second``: five real models and (1 %) junk names."""
    rng = random.Random(first)
    pool = [
        make_exchange(
            model=f"model-{i % 5}",
            latency_ms=rng.lognormvariate(6.5, 0.8),
            ttft_ms=rng.lognormvariate(5, 0.5) if i % 2 else None,
            prompt_tokens=int(rng.lognormvariate(6, 1)),
            outcome="success" if i % 50 else "timeout",
        )
        for i in range(1009)
    ]
    junk = make_exchange(latency_ms=5.0)
    step = 1.0 / per_second
    add = stats.add
    for i in range(first, last + 1):
        if i % junk_every == 0:
            ex = junk
            ex.model = f"scanner-{i}"  # a new name every time: must fold, not grow
        else:
            ex = pool[i % 1009]
        clock.now = ex.ended_at = T0 + i * step
        add(ex)


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_memory_flat_over_a_million_records() -> None:
    """1,000,000 records leave the statistics no bigger than 100,000 did: buckets recycle, names fold."""
    clock = FakeClock()
    stats = RollingStats(clock=clock)
    _traffic(stats, clock, 1, 100_000, per_second=25)  # 4,000 s: every ring is already full
    at_100k = retained_bytes(stats)
    _traffic(stats, clock, 100_001, 1_000_000, per_second=25)
    at_1m = retained_bytes(stats)
    print(f"retained: {at_100k / 1e6:.2f} MB at 100k records, {at_1m / 1e6:.2f} MB at 1M")
    # Keeping one pointer per record would add 7 MB over the last 900,000; raw samples, 30 MB.
    assert abs(at_1m - at_100k) < 1_000_000
    assert at_1m < 40_000_000
    assert 25 * 3540 <= stats.snapshot(3600)["requests"] <= 25 * 3600  # the whole hour is there
    # The measuring stick does see growth: 100,000 kept floats show up as 3 MB more.
    assert retained_bytes([stats, [float(i) for i in range(100_000)]]) - at_1m > 3_000_000


@pytest.mark.slow
def test_traced_allocations_flat_across_hours() -> None:
    """tracemalloc: once warm, two more stretches of traffic (each longer than the hour) add no live memory."""
    clock = FakeClock()
    stats = RollingStats(clock=clock)
    per_second = 4
    stretch = (
        4000 * per_second
    )  # longer than the hour ring (62 minutes), so it replaces every bucket
    traced = []
    tracemalloc.start()
    try:
        # No junk names here: when they win or lose a model slot depends on the hour's phase,
        # which is noise at this scale (the million-record test covers them).  The first
        # stretches also replace blocks that were allocated untraced (CPython free lists).
        for k in range(4):
            _traffic(stats, clock, k * stretch + 1, (k + 1) * stretch, per_second, junk_every=10**9)
            traced.append(tracemalloc.get_traced_memory()[0])
    finally:
        tracemalloc.stop()
    print("traced MB after each stretch:", [round(b / 1e6, 3) for b in traced])
    # 32,000 records between the two figures: 8 bytes kept per record would show as 256 kB.
    assert abs(traced[3] - traced[1]) < 0.02 * traced[1] + 50_000
