"""uvicorn's error log through a real proxy: a stream the proxy aborts on purpose
leaves no traceback there, other errors still do."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import httpx
import pytest
from conftest import RunningProxy

from pulse_proxy import uvicorn_log
from pulse_proxy.proxy.forward import StreamAborted

CHAT = {"model": "gpt-4o", "messages": [{"role": "user", "content": "Say hello"}]}


class _Keep(logging.Handler):
    """Keeps every record that uvicorn's error logger lets through."""

    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def uvicorn_errors() -> Iterator[list[logging.LogRecord]]:
    keep = _Keep()
    logger = logging.getLogger(uvicorn_log.LOGGER)
    logger.addHandler(keep)
    try:
        yield keep.records
    finally:
        logger.removeHandler(keep)


def test_an_aborted_stream_logs_no_traceback(
    proxy: RunningProxy, uvicorn_errors: list[logging.LogRecord]
) -> None:
    """An upstream breaking mid-stream is cut on the client's side and recorded in its
    event; uvicorn's error log gets nothing about it."""
    with (
        pytest.raises(httpx.RemoteProtocolError),
        httpx.stream(
            "POST",
            proxy.base_url + "/chat/completions",
            json={**CHAT, "stream": True},
            headers={"X-Mock-Drop-After-Chunks": "2"},
        ) as response,
    ):
        for _ in response.iter_raw():
            pass
    (event,) = proxy.wait_for(1)
    assert event.error_type == "upstream_stream_interrupted"
    assert uvicorn_errors == []


def test_the_filter_drops_only_aborted_streams() -> None:
    """Only a record carrying StreamAborted is dropped; any other exception, or none, passes."""
    drop = uvicorn_log.DropStreamAborted()

    def record(exc: BaseException | None) -> logging.LogRecord:
        exc_info = (type(exc), exc, None) if exc is not None else None
        return logging.LogRecord(uvicorn_log.LOGGER, logging.ERROR, __file__, 1, "x", (), exc_info)

    assert not drop.filter(record(StreamAborted()))
    assert drop.filter(record(RuntimeError("boom")))
    assert drop.filter(record(None))


def test_installing_twice_adds_one_filter() -> None:
    """Every app a process creates installs the filter; uvicorn's logger keeps one."""
    uvicorn_log.install()
    uvicorn_log.install()
    filters = logging.getLogger(uvicorn_log.LOGGER).filters
    assert sum(isinstance(f, uvicorn_log.DropStreamAborted) for f in filters) == 1
