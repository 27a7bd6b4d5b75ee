from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import Iterator

from factories import make_alert, make_exchange

from pulse_proxy.settings.sinks import StatsdSettings
from pulse_proxy.sinks.statsd import StatsdSink, sanitize_tag

TAGS = "model:gpt-4o,endpoint:chat,upstream:mock,status_class:2xx,stream:true"


@contextlib.contextmanager
def receiver() -> Iterator[socket.socket]:
    """A real UDP socket on an ephemeral loopback port, standing in for the agent."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(2.0)
    try:
        yield sock
    finally:
        sock.close()


def drain(sock: socket.socket, quiet_s: float = 0.1) -> list[bytes]:
    """Every datagram that arrives until the socket has been quiet for ``quiet_s``."""
    datagrams = []
    sock.settimeout(quiet_s)
    while True:
        try:
            datagrams.append(sock.recv(65_535))
        except TimeoutError:
            return datagrams


def lines_of(datagrams: list[bytes]) -> list[str]:
    return [line for d in datagrams for line in d.decode().split("\n")]


def test_exact_lines_for_one_exchange() -> None:
    """One streamed request becomes SPEC's dotted names with the right types and tags."""

    async def main(port: int) -> None:
        sink = StatsdSink("127.0.0.1", port)
        sink.on_exchange(
            make_exchange(
                stream=True, ttft_ms=95.25, risk_flags=["pii"], cached_tokens=8, reasoning_tokens=3
            )
        )
        await sink.aclose()

    with receiver() as sock:
        asyncio.run(main(sock.getsockname()[1]))
        assert lines_of(drain(sock)) == [
            f"llm.requests.count:1|c|#{TAGS},outcome:success",
            f"llm.request.latency_ms:812.5|h|#{TAGS}",
            f"llm.request.ttft_ms:95.25|h|#{TAGS}",
            f"llm.prompt.length:42|h|#{TAGS}",
            f"llm.tokens.drift:1|h|#{TAGS}",
            f"llm.tokens.used:42|c|#{TAGS},token_type:prompt",
            f"llm.tokens.used:17|c|#{TAGS},token_type:completion",
            f"llm.tokens.used:8|c|#{TAGS},token_type:cached",
            f"llm.tokens.used:3|c|#{TAGS},token_type:reasoning",
            f"llm.cost.usd:0.000275|c|#{TAGS}",
            f"llm.prompt.risk:1|c|#{TAGS},flag:pii",
        ]


def test_prefix_global_tags_and_errors() -> None:
    """A prefix goes before every name, global tags before the request's; errors are counted."""

    async def main(port: int) -> None:
        sink = StatsdSink(
            "127.0.0.1", port, prefix="myapp", tags={"env": "prod"}, histogram_type="d"
        )
        sink.on_exchange(
            make_exchange(
                status_code=504, outcome="timeout", error_type="upstream_timeout", latency_ms=30_000,
                prompt_tokens=None, completion_tokens=None, cost_usd=None,
            )
        )  # fmt: skip
        await sink.aclose()

    tags = "env:prod,model:gpt-4o,endpoint:chat,upstream:mock,status_class:5xx,stream:false"
    with receiver() as sock:
        asyncio.run(main(sock.getsockname()[1]))
        assert lines_of(drain(sock)) == [
            f"myapp.llm.requests.count:1|c|#{tags},outcome:timeout",
            f"myapp.llm.request.latency_ms:30000|d|#{tags}",
            f"myapp.llm.request.errors:1|c|#{tags},error_type:upstream_timeout,outcome:timeout",
        ]


def test_batches_fit_in_a_datagram_and_lose_nothing() -> None:
    """Many requests are packed into datagrams of at most 1432 bytes, every line whole."""
    count = 300

    async def main(port: int) -> StatsdSink:
        sink = StatsdSink("127.0.0.1", port)
        for i in range(count):
            sink.on_exchange(make_exchange(model=f"model-{i % 7}"))
            if i % 50 == 0:
                await asyncio.sleep(0)  # let the receiver keep up, as real traffic would
        await sink.aclose()
        return sink

    with receiver() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * 1024 * 1024)
        sink = asyncio.run(main(sock.getsockname()[1]))
        datagrams = drain(sock)
    assert sink.dropped == 0
    assert len(datagrams) == sink.sent_datagrams > 1
    assert max(len(d) for d in datagrams) <= 1432
    assert min(len(d) for d in datagrams[:-1]) > 1432 - 200  # really batched, not one line each
    lines = lines_of(datagrams)
    assert len(lines) == sink.sent_lines == count * 7
    assert all(line.startswith("llm.") and "|#" in line for line in lines)
    assert sum(1 for line in lines if line.startswith("llm.requests.count:1|c|")) == count


def test_a_partial_batch_is_flushed_by_the_timer() -> None:
    """A lone request's lines leave within the flush interval, without anyone calling flush."""

    async def main(port: int) -> float:
        sink = StatsdSink("127.0.0.1", port, flush_interval_s=0.05)
        sink.on_exchange(make_exchange())
        await asyncio.sleep(0.3)
        sent = sink.sent_datagrams
        await sink.aclose()
        return sent

    with receiver() as sock:
        assert asyncio.run(main(sock.getsockname()[1])) == 1
        assert len(drain(sock)) == 1


def test_tag_values_are_sanitised() -> None:
    """A hostile model name or tag cannot add tags, metrics or lines."""

    async def main(port: int) -> None:
        sink = StatsdSink("127.0.0.1", port, tags={"team|x": "a,b#c"})
        sink.on_exchange(
            make_exchange(model="evil|#x:1,y\nllm.requests.count:999|c", prompt_tokens=None)
        )
        await sink.aclose()

    with receiver() as sock:
        asyncio.run(main(sock.getsockname()[1]))
        lines = lines_of(drain(sock))
    first = lines[0]
    name, _, tags = first.partition("|#")
    assert name == "llm.requests.count:1|c"
    assert tags.split(",")[:2] == ["team_x:a_b_c", "model:evil__x:1_y\\nllm.requests.count:999_c"]
    assert not any(line.startswith("llm.requests.count:999") for line in lines)
    assert sanitize_tag("a b\tc|d,e#f\u2028g") == "a_b_c_d_e_f_g"


def test_model_values_are_bounded() -> None:
    """Past max_label_values distinct models, the tag value is 'other'."""

    async def main(port: int) -> None:
        sink = StatsdSink("127.0.0.1", port, max_label_values=2)
        for model in ("a", "b", "c", "d"):
            sink.on_exchange(
                make_exchange(
                    model=model,
                    prompt_tokens=None,
                    completion_tokens=None,
                    latency_ms=None,
                    cost_usd=None,
                )
            )
        await sink.aclose()

    with receiver() as sock:
        asyncio.run(main(sock.getsockname()[1]))
        models = [line.split("model:")[1].split(",")[0] for line in lines_of(drain(sock))]
    assert models == ["a", "b", "other", "other"]


def test_error_rate_gauge_is_sampled_periodically() -> None:
    """llm.request.error_rate is a gauge read from its callable every gauge interval."""
    rates = iter([0.25, None, 0.5])

    async def main(port: int) -> None:
        sink = StatsdSink(
            "127.0.0.1", port, error_rate=lambda: next(rates, 0.0), gauge_interval_s=0.05
        )
        sink.start()
        await asyncio.sleep(0.22)
        await sink.aclose()

    with receiver() as sock:
        asyncio.run(main(sock.getsockname()[1]))
        gauges = [line for line in lines_of(drain(sock)) if "error_rate" in line]
    assert gauges[:2] == ["llm.request.error_rate:0.25|g", "llm.request.error_rate:0.5|g"]


def test_alerts_become_dogstatsd_events() -> None:
    """An alert transition is a DogStatsD event with byte lengths, type and aggregation key."""

    async def main(port: int) -> None:
        sink = StatsdSink("127.0.0.1", port)
        sink.on_alert(make_alert(message="two\nlines"))
        sink.on_alert(make_alert(event="alert.resolved", severity="critical", message="ok"))
        await sink.aclose()

    with receiver() as sock:
        asyncio.run(main(sock.getsockname()[1]))
        lines = lines_of(drain(sock))
    assert lines == [
        (
            "_e{29,10}:LLM Pulse: high_latency fired|two\\nlines|t:warning|k:high_latency|s:llm_pulse"
            "|#alert:high_latency,severity:warning"
        ),
        (
            "_e{32,2}:LLM Pulse: high_latency resolved|ok|t:success|k:high_latency|s:llm_pulse"
            "|#alert:high_latency,severity:critical"
        ),
    ]


def test_a_dead_agent_counts_drops_and_never_raises() -> None:
    """With nothing listening, sends fail quietly and the lost lines are counted."""
    with receiver() as sock:
        port = sock.getsockname()[1]  # closed on exit: nothing listens there afterwards

    async def main() -> StatsdSink:
        sink = StatsdSink("127.0.0.1", port, flush_interval_s=0.01)
        for _ in range(5):
            sink.on_exchange(make_exchange())
            await asyncio.sleep(0.03)  # each batch goes alone; ICMP errors surface on the next send
        await sink.aclose()
        return sink

    started = time.monotonic()
    sink = asyncio.run(main())
    assert time.monotonic() - started < 5
    assert sink.dropped > 0
    assert sink.sent_lines + sink.dropped == 5 * 7


def test_a_host_name_is_resolved_without_blocking() -> None:
    """A host name is resolved asynchronously; lines sent meanwhile wait in the backlog."""

    async def main(port: int) -> StatsdSink:
        sink = StatsdSink("localhost", port)
        assert sink.address is None
        sink.on_exchange(make_exchange())
        sink.flush()
        await asyncio.sleep(0.2)
        await sink.aclose()
        return sink

    with receiver() as sock:
        sink = asyncio.run(main(sock.getsockname()[1]))
        assert sink.address is not None and sink.address[0] == "127.0.0.1"
        assert len(lines_of(drain(sock))) == 7


def test_settings_build_the_sink() -> None:
    """StatsdSettings validates the config section and builds an equivalent sink."""
    settings = StatsdSettings.model_validate(
        {"enabled": True, "port": 9125, "prefix": "svc", "tags": {"env": "dev"}}
    )
    sink = StatsdSink.from_settings(settings)
    assert (sink.host, sink.port, sink.max_datagram) == ("127.0.0.1", 9125, 1432)
    asyncio.run(sink.aclose())
