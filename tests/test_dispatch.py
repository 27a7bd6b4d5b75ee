"""Every sink gets accounted batches through one method, made the same way whether
accounting runs in its child process or inline."""

from __future__ import annotations

import contextlib
import io
from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest
from conftest import run_server, wait_until

from pulse_proxy.app import create_app, uvicorn_options
from pulse_proxy.records import AlertEvent, Batch
from pulse_proxy.settings import build_settings
from pulse_proxy.sinks import Rendered
from pulse_proxy.stats.tally import Tally


class BatchSink:
    """Keeps the batches it is given, asking for exchanges or not."""

    def __init__(self, exchanges: bool) -> None:
        self.exchanges = exchanges
        self.batches: list[Batch] = []

    def takes_exchanges(self, rendered: Rendered) -> bool:
        return self.exchanges

    def write(self, batch: Batch) -> None:
        self.batches.append(batch)

    def on_alert(self, alert: AlertEvent) -> None:
        return None

    async def aclose(self) -> None:
        return None


class BrokenSink(BatchSink):
    def write(self, batch: Batch) -> None:
        raise RuntimeError("a sink's bug")


@pytest.fixture(params=["process", "inline"])
def mode(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@contextlib.contextmanager
def _serve(mock_url: str, mode: str, sinks: list[Any]) -> Iterator[tuple[str, io.BytesIO]]:
    settings = build_settings(
        {
            "upstream": {"url": mock_url + "/v1"},
            "accounting": {"mode": mode},
            "statsd": {"enabled": True, "port": 9},
        }
    )
    log = io.BytesIO()
    app = create_app(settings, sinks=sinks, log_stream=log)
    with run_server(app, **uvicorn_options(settings)) as url:
        yield url, log


def test_a_batch_carries_what_the_sinks_need_in_either_mode(mock_url: str, mode: str) -> None:
    """Lines and StatsD lines are rendered, figures summed, exchanges sent back only
    when a sink asks; a sink that raises costs the others nothing."""
    for wanted in (False, True):
        sink = BatchSink(exchanges=wanted)
        with _serve(mock_url, mode, [BrokenSink(exchanges=False), sink]) as (url, log):
            body = {"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}
            assert httpx.post(url + "/v1/chat/completions", json=body).status_code == 200
            wait_until(lambda s=sink: sum(len(b.lines) for b in s.batches) == 1)
            wait_until(lambda lg=log: b"llm.request" in lg.getvalue())
        (batch,) = [b for b in sink.batches if b.lines]
        (line,) = batch.lines
        assert orjson.loads(line)["event"] == "llm.request"
        assert line in log.getvalue().splitlines()  # what the log sink wrote
        assert batch.statsd and any(s.startswith(b"llm.requests.count:1|c|") for s in batch.statsd)
        assert isinstance(batch.figures, Tally) and batch.figures.count == 1
        assert len(batch.exchanges) == (1 if wanted else 0) and not batch.unrendered
        assert b"pulse.sink_failed" in log.getvalue()
