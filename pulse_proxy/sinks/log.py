"""The JSON log: one event per line on stdout, written by a thread of its own.

structlog renders (a pipeline of small processors, orjson at the end); a dedicated
writer thread does the actual ``write``.  A stdout that blocks (a full pipe, a stalled
``docker logs`` reader) therefore stalls only that thread, never the event loop that
is relaying other requests.  On shutdown the queue is drained, so no event is lost.
"""

from __future__ import annotations

import math
import queue
import threading
import time
from collections.abc import MutableMapping
from typing import IO, Any

import orjson
import structlog

from pulse_proxy.records import SCHEMA, AlertEvent, Batch, Exchange
from pulse_proxy.sinks import Rendered, write_each
from pulse_proxy.text import escape_control

_STOP = object()
_COALESCE_S = 0.01  # how long the writer lets lines gather after a wake-up


_second_text: tuple[int, str] = (-1, "")


def rfc3339(epoch: float | None = None) -> str:
    """RFC 3339 UTC with milliseconds, the timestamp format of every event.

    The same text as ``datetime.fromtimestamp(epoch, UTC).isoformat(timespec=
    "milliseconds")`` (microseconds rounded half-even, then truncated to ms), in a
    third of the time: the seconds part is formatted once per second, not per line.
    """
    global _second_text  # noqa: PLW0603 - a one-entry cache, swapped whole
    frac, whole = math.modf(time.time() if epoch is None else epoch)
    micros = round(frac * 1_000_000)
    second = int(whole)
    if micros < 0:
        second, micros = second - 1, micros + 1_000_000
    elif micros >= 1_000_000:
        second, micros = second + 1, micros - 1_000_000
    cached_second, text = _second_text
    if cached_second != second:
        text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        _second_text = (second, text)
    return f"{text}.{micros // 1000:03d}Z"


class LineWriter:
    """A structlog logger that hands rendered lines to a writer thread."""

    def __init__(self, stream: IO[bytes]) -> None:
        self._stream = stream
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="pulse-log-writer", daemon=True)
        self._thread.start()

    def msg(self, line: bytes | str) -> None:
        self._queue.put(line.encode("utf-8") if isinstance(line, str) else line)

    debug = info = warning = error = critical = exception = msg

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            # Let lines gather before taking the GIL to write: under load a wake-up per
            # line made this thread and the event loop trade the GIL about once per
            # request; now it happens at most about a hundred times a second.
            time.sleep(_COALESCE_S)
            batch = []
            stop = False
            while True:
                if item is _STOP:
                    stop = True
                    break
                batch.append(item)
                batch.append(b"\n")
                if len(batch) >= 512:
                    break
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
            if batch:
                try:
                    self._stream.write(b"".join(batch))
                    self._stream.flush()
                except (OSError, ValueError):
                    pass  # stdout closed: nothing sensible left to do with the line
            if stop:
                return

    def close(self, timeout: float = 10.0) -> None:
        """Write out everything queued, then stop the thread."""
        if self._thread.is_alive():
            self._queue.put(_STOP)
            self._thread.join(timeout)


def _add_envelope(
    _: Any, method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """``event``, ``timestamp``, ``level``, ``schema`` first, as every line promises."""
    ordered: dict[str, Any] = {
        "event": event_dict.pop("event"),
        "timestamp": event_dict.pop("timestamp", None) or rfc3339(),
        "level": method if method != "msg" else "info",
        "schema": SCHEMA,
    }
    ordered.update(event_dict)
    return ordered


def _escape_strings(
    _: Any, __: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    return {k: escape_control(v) if isinstance(v, str) else v for k, v in event_dict.items()}


def _orjson_dumps(value: Any, **_: Any) -> bytes:
    return orjson.dumps(value, default=str)


def _processors(log_format: str) -> list[Any]:
    processors: list[Any] = [_add_envelope]
    if log_format == "console":
        processors += [
            _escape_strings,
            structlog.dev.ConsoleRenderer(colors=False, sort_keys=False),
        ]
    else:
        processors.append(structlog.processors.JSONRenderer(serializer=_orjson_dumps))
    return processors


def make_logger(stream: IO[bytes], log_format: str = "json") -> tuple[Any, LineWriter]:
    """A structlog logger writing one line per event to ``stream`` (no global config)."""
    writer = LineWriter(stream)
    logger = structlog.wrap_logger(
        writer, processors=_processors(log_format), wrapper_class=structlog.BoundLogger
    ).bind()
    return logger, writer


class _Keep:
    """A structlog 'logger' that keeps the rendered line instead of writing it."""

    line: bytes = b""

    def msg(self, line: bytes | str) -> None:
        self.line = line.encode("utf-8") if isinstance(line, str) else line

    debug = info = warning = error = critical = exception = msg


def _log_exchange(logger: Any, exchange: Exchange) -> None:
    level = "warning" if exchange.is_error else "info"
    getattr(logger, level)(
        "llm.request", timestamp=rfc3339(exchange.ended_at), **exchange.to_event()
    )


class LineRenderer:
    """Renders ``llm.request`` lines exactly as :class:`LogSink` would, without writing
    them: the accounting process renders, the proxy only writes the bytes."""

    def __init__(self, log_format: str = "json") -> None:
        self._keep = _Keep()
        # bind() once: the lazy proxy wrap_logger returns would build a logger per line.
        self._log = structlog.wrap_logger(
            self._keep, processors=_processors(log_format), wrapper_class=structlog.BoundLogger
        ).bind()

    def render(self, exchange: Exchange) -> bytes:
        _log_exchange(self._log, exchange)
        return self._keep.line


class LogSink:
    """Exchanges and alert transitions as JSON lines: the sink that is always on."""

    def __init__(self, logger: Any, writer: LineWriter | None = None) -> None:
        self._log = logger
        self._writer = writer

    def takes_exchanges(self, rendered: Rendered) -> bool:
        return False  # its lines come rendered; the few that failed to, as exchanges

    def write(self, batch: Batch[Any]) -> None:
        """The lines accounting rendered (see :class:`LineRenderer`), then the few it
        could not render, which are logged here."""
        if batch.lines:
            # One hand-over to the writer thread per batch, not per line: each wakes
            # that thread, which then contends for the GIL with the event loop.
            joined = b"\n".join(batch.lines)
            if self._writer is not None:
                self._writer.msg(joined)
            else:
                self._log.info(joined)
        if batch.unrendered:
            write_each(self.on_exchange, batch.unrendered)

    def on_exchange(self, exchange: Exchange) -> None:
        _log_exchange(self._log, exchange)

    def on_alert(self, alert: AlertEvent) -> None:
        level = "warning" if alert.event == "alert.fired" else "info"
        getattr(self._log, level)(alert.event, **alert.to_event())

    async def aclose(self) -> None:
        return None
