"""DogStatsD over UDP, with the documented dotted names exactly as written.

Per request::

    llm.requests.count:1|c|#model:gpt-4o,endpoint:chat,upstream:mock,status_class:2xx,stream:false,outcome:success
    llm.request.latency_ms:812.5|h|#…        llm.request.ttft_ms:95|h|#…      (streams only)
    llm.tokens.used:42|c|#…,token_type:prompt    (also completion, cached, reasoning)
    llm.prompt.length:42|h|#…                llm.tokens.drift:-1|h|#…         (upstream usage only)
    llm.cost.usd:0.00021|c|#…                llm.prompt.risk:1|c|#…,flag:pii
    llm.request.errors:1|c|#…,error_type:timeout,outcome:timeout   (outcome != success)

and every ``gauge_interval_s`` ``llm.request.error_rate:0.02|g`` (5-minute window,
from the ``error_rate`` callable).  Alert transitions become DogStatsD events.

In the proxy the lines are rendered by :class:`StatsdLines` in the accounting process,
beside the log line, and reach the sink as bytes in the batch (:meth:`StatsdSink.write`).
That is where the label values are bounded too (``max_label_values``): in the
accounting process, not in the sink.  Only batches the child could not take (a full
backlog, a quarantined request, shutdown) are rendered by the proxy's own assembler.

Why it never blocks: lines are appended to an in-memory batch; a batch goes out as
one datagram when the next line would not fit in ``max_datagram`` bytes (1432 by
default, DogStatsD's advice for UDP over a 1500-byte MTU) or ``flush_interval_s``
after its first line, whichever comes first.  The socket is non-blocking and a send
that would block or fails is dropped and counted (``dropped`` lines) — losing a few
metrics beats stalling the event loop, which is also what UDP promises anyway.

The host is resolved once: an IP literal at construction, a name asynchronously on
first use (``loop.getaddrinfo``), with lines held in a small bounded backlog meanwhile.
"""

from __future__ import annotations

import asyncio
import re
import socket
from collections import deque
from collections.abc import Callable, Mapping
from math import isfinite
from typing import Any, Literal

from pulse_proxy.records import AlertEvent, Batch, Exchange
from pulse_proxy.settings.sinks import DEFAULT_MAX_DATAGRAM, StatsdSettings
from pulse_proxy.sinks import Rendered, write_each
from pulse_proxy.stats.labels import BoundedLabel

UNKNOWN_MODEL = "unknown"  # as in /pulse/stats
_BACKLOG_DATAGRAMS = 64
_RESOLVE_RETRY_S = 5.0
_UNSAFE_TAG = re.compile(r"[|,#\s\x00-\x1f\x7f\u0085\u2028\u2029]")
_UNSAFE_NAME = re.compile(r"[^A-Za-z0-9_.]")
_STATUS_CLASS = {n: f"{n}xx" for n in range(1, 6)}
_ALERT_TYPE = {"critical": "error", "warning": "warning", "info": "info"}


def sanitize_tag(text: str, limit: int = 200) -> str:
    """A tag key or value DogStatsD cannot misparse: no ``|``, ``,``, ``#``, whitespace."""
    return _UNSAFE_TAG.sub("_", text[:limit])


def _num(value: float, digits: int) -> str:
    """A plain decimal (no exponent, no trailing zeros) that every statsd server parses."""
    if isinstance(value, int):
        return str(value)
    text = f"{value:.{digits}f}".rstrip("0").rstrip(".")
    return text if text not in ("", "-0") else "0"


class StatsdLines:
    """One exchange's DogStatsD lines.  Kept apart from the socket so that the
    accounting process can render them, as it renders the log line: the event loop
    then only batches and sends bytes."""

    def __init__(
        self,
        *,
        prefix: str = "",
        tags: Mapping[str, str] | None = None,
        max_label_values: int = 100,
        histogram_type: Literal["h", "d"] = "h",
    ) -> None:
        prefix = _UNSAFE_NAME.sub("_", prefix).strip(".")
        self.prefix = prefix + "." if prefix else ""
        self.global_tags = ",".join(
            f"{sanitize_tag(k)}:{sanitize_tag(v)}" for k, v in (tags or {}).items()
        )
        self._h = histogram_type
        self._model = BoundedLabel(max_label_values)
        self._upstream = BoundedLabel(20)
        self._error_type = BoundedLabel(50)
        self._flag = BoundedLabel(20)
        # Common-tag strings per label tuple: bounded, since every part is bounded.
        self._tag_cache: dict[tuple[str, str, str, str, bool], str] = {}

    @classmethod
    def from_settings(cls, settings: StatsdSettings) -> StatsdLines:
        return cls(prefix=settings.prefix, tags=settings.tags,
                   max_label_values=settings.max_label_values,
                   histogram_type=settings.histogram_type)  # fmt: skip

    def render(self, ex: Exchange) -> list[str]:
        tags = self._tags(ex)
        p, h = self.prefix, self._h
        lines = [f"{p}llm.requests.count:1|c|#{tags},outcome:{ex.outcome}"]
        add = lines.append
        if ex.latency_ms is not None and isfinite(ex.latency_ms):
            add(f"{p}llm.request.latency_ms:{_num(ex.latency_ms, 3)}|{h}|#{tags}")
        if ex.stream and ex.ttft_ms is not None and isfinite(ex.ttft_ms):
            add(f"{p}llm.request.ttft_ms:{_num(ex.ttft_ms, 3)}|{h}|#{tags}")
        prompt = ex.prompt_tokens
        if prompt is not None:
            add(f"{p}llm.prompt.length:{prompt}|{h}|#{tags}")
            if ex.prompt_tokens_local is not None and ex.token_source == "upstream":
                add(f"{p}llm.tokens.drift:{prompt - ex.prompt_tokens_local}|{h}|#{tags}")
        for token_type, count in (
            ("prompt", prompt),
            ("completion", ex.completion_tokens),
            ("cached", ex.cached_tokens),
            ("reasoning", ex.reasoning_tokens),
        ):
            if count and count > 0:
                add(f"{p}llm.tokens.used:{count}|c|#{tags},token_type:{token_type}")
        if ex.cost_usd and ex.cost_usd > 0:
            add(f"{p}llm.cost.usd:{_num(ex.cost_usd, 9)}|c|#{tags}")
        for flag in ex.risk_flags:
            add(f"{p}llm.prompt.risk:1|c|#{tags},flag:{sanitize_tag(self._flag.fold(flag))}")
        if ex.outcome != "success":
            error_type = sanitize_tag(self._error_type.fold(ex.error_type or ex.outcome))
            add(f"{p}llm.request.errors:1|c|#{tags},error_type:{error_type},outcome:{ex.outcome}")
        return lines

    def _tags(self, ex: Exchange) -> str:
        """The common tags of ``ex`` as one string, built once per label tuple."""
        status = ex.status_code
        key = (
            self._model.fold(ex.model or ex.response_model or UNKNOWN_MODEL),
            ex.endpoint,
            self._upstream.fold(ex.upstream),
            _STATUS_CLASS.get(status // 100, "other") if status else "none",
            ex.stream,
        )
        tags = self._tag_cache.get(key)
        if tags is None:
            parts = [
                f"model:{sanitize_tag(key[0])}",
                f"endpoint:{sanitize_tag(key[1])}",
                f"upstream:{sanitize_tag(key[2])}",
                f"status_class:{key[3]}",
                f"stream:{'true' if key[4] else 'false'}",
            ]
            if self.global_tags:
                parts.insert(0, self.global_tags)
            tags = self._tag_cache[key] = ",".join(parts)
        return tags


class StatsdSink:
    """Metrics as DogStatsD lines over UDP to ``host:port``; see the module docstring.

    ``tags`` are added to every line.  ``error_rate`` (returns the 5-minute error rate,
    or ``None`` with no traffic) is sampled every ``gauge_interval_s``.
    """

    def __init__(
        self,
        host: str,
        port: int,
        *,
        prefix: str = "",
        tags: Mapping[str, str] | None = None,
        max_label_values: int = 100,
        error_rate: Callable[[], float | None] | None = None,
        histogram_type: Literal["h", "d"] = "h",
        max_datagram: int = DEFAULT_MAX_DATAGRAM,
        flush_interval_s: float = 0.1,
        gauge_interval_s: float = 10.0,
    ) -> None:
        self.host, self.port = host, port
        self.lines = StatsdLines(prefix=prefix, tags=tags, max_label_values=max_label_values,
                                 histogram_type=histogram_type)  # fmt: skip
        self._prefix = self.lines.prefix
        self._global_tags = self.lines.global_tags
        self.error_rate = error_rate
        self.max_datagram = max_datagram
        self.flush_interval_s = flush_interval_s
        self.gauge_interval_s = gauge_interval_s

        self._batch: list[bytes] = []
        self._batch_size = 0
        self._flush_handle: asyncio.TimerHandle | None = None
        self._gauge_handle: asyncio.TimerHandle | None = None
        self._sock: socket.socket | None = None
        self._backlog: deque[bytes] = deque(maxlen=_BACKLOG_DATAGRAMS)
        self._resolving: asyncio.Task[None] | None = None
        self._resolve_after = 0.0
        self._closed = False
        # Counters, for tests and for pulse_dropped_events_total.
        self.sent_datagrams = 0
        self.sent_lines = 0
        self.dropped = 0
        self.address: tuple[Any, ...] | None = None
        self._open_numeric()

    @classmethod
    def from_settings(
        cls, settings: StatsdSettings, *, error_rate: Callable[[], float | None] | None = None
    ) -> StatsdSink:
        return cls(
            settings.host, settings.port, prefix=settings.prefix, tags=settings.tags,
            max_label_values=settings.max_label_values, error_rate=error_rate,
            histogram_type=settings.histogram_type, max_datagram=settings.max_datagram,
            flush_interval_s=settings.flush_interval_s, gauge_interval_s=settings.gauge_interval_s,
        )  # fmt: skip

    # -- records ---------------------------------------------------------------------

    def takes_exchanges(self, rendered: Rendered) -> bool:
        # Rendered in the accounting process when StatsD is configured on; a sink
        # added by hand renders its own, with its own prefix, tags and bounds.
        return "statsd" not in rendered

    def write(self, batch: Batch[Any]) -> None:
        if batch.statsd is not None:
            self._write_rendered(batch.statsd)
        else:
            write_each(self.on_exchange, batch.exchanges)

    def on_exchange(self, ex: Exchange) -> None:
        if self._closed:
            return
        self._write_rendered([line.encode("utf-8") for line in self.lines.render(ex)])

    def _write_rendered(self, lines: list[bytes]) -> None:
        """Lines :class:`StatsdLines` rendered, here or in the accounting process."""
        if self._closed:
            return
        self._emit_bytes(lines)
        if self._gauge_handle is None:
            self._ensure_gauge_timer()

    def on_alert(self, alert: AlertEvent) -> None:
        """A DogStatsD event, so the transition shows on Datadog dashboards as well."""
        if self._closed:
            return
        state = "fired" if alert.event == "alert.fired" else "resolved"
        title = f"LLM Pulse: {alert.alert} {state}"
        # DogStatsD reads title and text by their byte lengths; only line breaks need escaping.
        text = alert.message.replace("\r", "").replace("\n", "\\n")
        alert_type = _ALERT_TYPE.get(alert.severity, "warning") if state == "fired" else "success"
        tags = ",".join(
            t
            for t in (
                self._global_tags,
                f"alert:{sanitize_tag(alert.alert)}",
                f"severity:{sanitize_tag(alert.severity)}",
            )
            if t
        )
        head = f"_e{{{len(title.encode())},{len(text.encode())}}}"
        key = sanitize_tag(alert.alert)
        self._emit([f"{head}:{title}|{text}|t:{alert_type}|k:{key}|s:llm_pulse|#{tags}"])

    # -- batching --------------------------------------------------------------------

    def _emit(self, lines: list[str]) -> None:
        self._emit_bytes([line.encode("utf-8") for line in lines])

    def _emit_bytes(self, lines: list[bytes]) -> None:
        """Append ``lines`` to the batch, sending it whenever the next line would not fit."""
        limit = self.max_datagram
        for data in lines:
            # _batch_size counts each line with its separator, so the payload is one less.
            if self._batch and self._batch_size + len(data) > limit:
                self.flush()
            self._batch.append(data)
            self._batch_size += len(data) + 1
        if self._flush_handle is None and self._batch:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                return  # no loop (a synchronous caller): flushed when full or by flush()
            self._flush_handle = loop.call_later(self.flush_interval_s, self._timed_flush)

    def _timed_flush(self) -> None:
        self._flush_handle = None
        self.flush()

    def flush(self) -> None:
        """Send the current batch now (tests, shutdown); never blocks."""
        if not self._batch:
            return
        payload, lines = b"\n".join(self._batch), len(self._batch)
        self._batch, self._batch_size = [], 0
        self._send(payload, lines)

    def _send(self, payload: bytes, lines: int) -> None:
        if self._sock is None:
            if len(self._backlog) == self._backlog.maxlen:
                self.dropped += self._backlog[0].count(b"\n") + 1
            self._backlog.append(payload)
            self._start_resolving()
            return
        try:
            self._sock.send(payload)
        except OSError:  # BlockingIOError (buffer full), ECONNREFUSED (no agent yet), …
            self.dropped += lines
            return
        self.sent_datagrams += 1
        self.sent_lines += lines

    # -- the socket ------------------------------------------------------------------

    def _open_numeric(self) -> None:
        """Open at once when ``host`` is an IP literal: no resolver call that could block."""
        try:
            infos = socket.getaddrinfo(
                self.host, self.port, type=socket.SOCK_DGRAM, flags=socket.AI_NUMERICHOST
            )
        except socket.gaierror:
            return  # a name: resolved asynchronously on first use
        self._open(infos[0])

    def _open(self, info: tuple[Any, ...]) -> None:
        family, kind, proto, _, address = info
        sock = socket.socket(family, kind, proto)
        sock.setblocking(False)
        sock.connect(address)  # UDP: only sets the default destination
        self._sock, self.address = sock, address
        while self._backlog:
            payload = self._backlog.popleft()
            self._send(payload, payload.count(b"\n") + 1)

    def _start_resolving(self) -> None:
        if self._resolving is not None or self._closed:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        if loop.time() < self._resolve_after:
            return  # the last attempt failed moments ago: don't hammer the resolver
        self._resolving = loop.create_task(self._resolve(loop), name="pulse-statsd-resolve")

    async def _resolve(self, loop: asyncio.AbstractEventLoop) -> None:
        try:
            infos = await loop.getaddrinfo(self.host, self.port, type=socket.SOCK_DGRAM)
            if not self._closed:
                # IPv4 first: agents listen on 0.0.0.0/127.0.0.1 by default, and a
                # "localhost" that resolves to ::1 first would send into the void.
                self._open(min(infos, key=lambda info: info[0] != socket.AF_INET))
        except OSError:
            # Unresolvable: what waited is lost; try again a little later.
            self._resolve_after = loop.time() + _RESOLVE_RETRY_S
            self.dropped += sum(p.count(b"\n") + 1 for p in self._backlog)
            self._backlog.clear()
        finally:
            if self._sock is None:
                self._resolving = None

    # -- the error-rate gauge ----------------------------------------------------------

    def start(self) -> None:
        """Start the error-rate gauge now (else it starts with the first request)."""
        self._ensure_gauge_timer()

    def _ensure_gauge_timer(self) -> None:
        if self._gauge_handle is None and self.error_rate is not None and not self._closed:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                return
            self._gauge_handle = loop.call_later(self.gauge_interval_s, self._emit_gauges)

    def _emit_gauges(self) -> None:
        self._gauge_handle = None
        if self._closed or self.error_rate is None:
            return
        try:
            rate = self.error_rate()
        except Exception:  # noqa: BLE001 - a broken source must not stop the timer
            rate = None
        if isinstance(rate, (int, float)) and isfinite(rate):
            tags = f"|#{self._global_tags}" if self._global_tags else ""
            self._emit([f"{self._prefix}llm.request.error_rate:{_num(float(rate), 6)}|g{tags}"])
        self._ensure_gauge_timer()

    async def aclose(self) -> None:
        self.flush()
        self._closed = True
        for handle in (self._flush_handle, self._gauge_handle):
            if handle is not None:
                handle.cancel()
        self._flush_handle = self._gauge_handle = None
        if self._resolving is not None and not self._resolving.done():
            self._resolving.cancel()
        if self._sock is not None:
            self._sock.close()
            self._sock = None
