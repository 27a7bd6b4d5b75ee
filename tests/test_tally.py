"""A batch's Tally, encoded across the process boundary and merged, must leave the
statistics, the breakdown and the Prometheus series exactly as adding its exchanges
one by one does: same bodies, same exposition, same folded-label counts."""

from __future__ import annotations

import asyncio
import random
from typing import Any

import pytest
from msgspec.structs import replace
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from pulse_proxy.accounting.dispatch import Dispatcher
from pulse_proxy.accounting.process import CODEC, build_accountant
from pulse_proxy.records import Batch
from pulse_proxy.settings import Settings
from pulse_proxy.sinks import ListSink
from pulse_proxy.sinks.log import LogSink, make_logger
from pulse_proxy.sinks.prometheus import PrometheusSink, exposition
from pulse_proxy.sinks.statsd import StatsdSink
from pulse_proxy.sinks.webhook import WebhookSink
from pulse_proxy.stats import RollingStats
from pulse_proxy.stats.breakdown import Breakdown
from pulse_proxy.stats.tally import Tally
from tests.factories import make_exchange

NOW = 1_700_000_000.0


def _crossed(tally: Tally) -> Tally:
    """The tally as the event loop gets it: in a batch, through the accounting codec."""
    _, batch = CODEC.decode_batch(CODEC.encode_batch((1, 0), Batch([], [], [], tally, None)))
    assert isinstance(batch.figures, Tally)
    return batch.figures


class FakeClock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> float:
        return self.now


def varied_exchanges(n: int, seed: int = 7) -> list:
    """Many models (more than the label bound), outcomes, streams, users, tags, flags,
    missing figures, and records late enough to land in closed buckets."""
    rng = random.Random(seed)
    outcomes = ["success"] * 6 + [
        "upstream_error",
        "timeout",
        "client_error",
        "client_disconnected",
    ]
    exchanges = []
    for i in range(n):
        stream = rng.random() < 0.4
        outcome = rng.choice(outcomes)
        prompt = rng.choice([None, rng.randint(1, 200_000)])
        exchanges.append(
            make_exchange(
                model=rng.choice(
                    [None, "gpt-4o", "gpt-4o-mini", "o3", f"junk-{rng.randint(0, 40)}"]
                ),
                response_model=rng.choice([None, "gpt-4o-2024-08-06"]),
                upstream=rng.choice(["mock", "azure", f"up-{rng.randint(0, 30)}"]),
                endpoint=rng.choice(["chat", "completions", "embeddings", "models"]),
                status_code=rng.choice([None, 200, 400, 429, 500]),
                outcome=outcome,
                error_type=None
                if outcome == "success"
                else rng.choice([None, "rate_limited", f"e{i % 60}"]),
                stream=stream,
                latency_ms=rng.choice([None, rng.uniform(0.5, 90_000)]),
                ttft_ms=rng.uniform(1, 5000) if stream else None,
                prompt_tokens=prompt,
                prompt_tokens_local=None
                if prompt is None
                else max(0, prompt + rng.randint(-300, 300)),
                token_source=rng.choice(["upstream", "tiktoken"]),
                completion_tokens=rng.choice([None, 0, rng.randint(1, 4000)]),
                total_tokens=rng.choice([None, rng.randint(1, 200_000)]),
                cached_tokens=rng.choice([None, rng.randint(1, 100)]),
                reasoning_tokens=rng.choice([None, rng.randint(1, 100)]),
                cost_usd=rng.choice([None, 0.0, rng.uniform(0, 2)]),
                user=rng.choice([None, "alice", "bob", f"user-{rng.randint(0, 80)}"]),
                api_key_hash=rng.choice([None, "k-1", "k-2"]),
                tags=rng.choice(
                    [{}, {"team": rng.choice(["a", "b"])}, {"env": f"e{rng.randint(0, 70)}"}]
                ),
                risk_flags=rng.sample(
                    ["jailbreak", "pii_email", "secret_key", f"f{i % 30}"], rng.randint(0, 2)
                ),
                # Mostly recent, some from closed fine buckets, a few older than the hour.
                ended_at=NOW
                - rng.choice([rng.uniform(0, 30), rng.uniform(30, 900), rng.uniform(3500, 4000)]),
            )
        )
    return exchanges


def figures(clock: FakeClock) -> tuple[RollingStats, Breakdown, PrometheusSink]:
    return (
        RollingStats(clock=clock, max_models=10),
        Breakdown(clock=clock, max_values=20),
        PrometheusSink(CollectorRegistry(), max_label_values=15),
    )


def samples(sink: PrometheusSink) -> list:
    body, _ = exposition(sink.registry)
    return sorted(
        (sample.name, tuple(sorted(sample.labels.items())), sample.value)
        for family in text_string_to_metric_families(body.decode())
        for sample in family.samples
    )


def close(value: Any) -> Any:
    """Floats to 10 significant digits, all the way down: a batch sums its costs before
    they join the total, so the last bits of a float sum may differ from adding one by
    one; every count, maximum and quantile must still match exactly."""
    if isinstance(value, float):
        return float(f"{value:.10g}")
    if isinstance(value, dict):
        return {key: close(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(close(item) for item in value)
    return value


@pytest.mark.slow
def test_merged_batches_equal_adding_one_by_one() -> None:
    exchanges = varied_exchanges(1500)
    clock = FakeClock()
    one_stats, one_breakdown, one_prometheus = figures(clock)
    for exchange in exchanges:
        one_stats.add(exchange)
        one_breakdown.add(exchange)
        one_prometheus.on_exchange(exchange)

    batch_stats, batch_breakdown, batch_prometheus = figures(clock)
    rng = random.Random(3)
    position = 0
    while position < len(exchanges):
        size = rng.choice([1, 2, 7, 30, 200])
        tally = _crossed(Tally.of(exchanges[position : position + size]))
        batch_stats.merge(tally.stats)
        batch_breakdown.merge(tally.breakdown)
        batch_prometheus.merge(tally.prometheus)
        position += size

    assert close(batch_stats.to_json()) == close(one_stats.to_json())
    for window in (60, 300, 3600):
        assert close(batch_stats.chart(window)) == close(one_stats.chart(window))
    # Records older than the hour are dropped, or kept in a slot about to be reused,
    # depending on what arrived just before them; a batch files its records grouped by
    # model and bucket, so a few at that edge may go the other way.
    assert one_stats.dropped_late > 100
    assert abs(batch_stats.dropped_late - one_stats.dropped_late) <= 3
    assert close(batch_breakdown.to_json()) == close(one_breakdown.to_json())
    assert close(samples(batch_prometheus)) == close(samples(one_prometheus))
    folded = {name: label.folded for name, label in one_prometheus.bounded_labels.items()}
    assert {name: label.folded for name, label in batch_prometheus.bounded_labels.items()} == folded
    assert folded["model"] > 0 and folded["flag"] > 0  # the bounds were exercised


def test_tally_counts_every_exchange() -> None:
    exchanges = [replace(e, ended_at=NOW - i) for i, e in enumerate(varied_exchanges(50))]
    tally = _crossed(Tally.of(exchanges))
    assert tally.count == 50
    stats = RollingStats(clock=FakeClock())
    stats.merge(tally.stats)
    assert stats.view(60).aggregate.requests == 50


def test_exchanges_return_from_accounting_only_when_a_sink_takes_them() -> None:
    """The log sink gets rendered lines and webhooks take alerts only: with just those,
    the accounting process sends no exchanges back; any other sink needs them."""
    settings = Settings()
    logger, _ = make_logger(open("/dev/null", "wb"), "json")  # noqa: SIM115 - process-long
    webhooks = WebhookSink([])

    def worker_wants_exchanges(sinks: list) -> bool:
        dispatcher = Dispatcher(build_accountant(settings), sinks, logger=logger, settings=settings)
        assert dispatcher.worker is not None
        return b'"exchanges":true' in dispatcher.worker._start_frame

    assert not worker_wants_exchanges([LogSink(logger, None), webhooks])
    assert worker_wants_exchanges([LogSink(logger, None), webhooks, ListSink()])
    # StatsD's lines are rendered in the accounting process when it is configured on.
    statsd = StatsdSink("127.0.0.1", 9)
    try:
        assert worker_wants_exchanges([LogSink(logger, None), statsd])
        settings = Settings.model_validate({"statsd": {"enabled": True, "port": 9}})
        assert not worker_wants_exchanges([LogSink(logger, None), statsd])
    finally:
        asyncio.run(statsd.aclose())  # its UDP socket is open from the start


def test_a_record_a_figure_cannot_take_is_counted_not_fatal() -> None:
    broken = make_exchange(ended_at=None)  # type: ignore[arg-type]  # a bug's record
    tally = _crossed(Tally.of([make_exchange(ended_at=NOW), broken]))
    assert (tally.count, tally.failed) == (2, 1)
    stats = RollingStats(clock=FakeClock())
    stats.merge(tally.stats)
    assert stats.view(60).aggregate.requests == 1
