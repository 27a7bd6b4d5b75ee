"""uvicorn's httptools protocol, with limits on clients that never finish a request.

uvicorn times out only idle keep-alive connections.  A client that sends its headers
one byte a second, or a body that never ends, holds a connection (and a file
descriptor, and for a body a running request) for as long as it likes, and nothing
caps how many connections are open.  A few hundred such clients starve everyone else.

This subclass adds, per connection and without any task:

* a header deadline: from the connection (or the first byte of a later request) to
  the end of the headers, ``server.request_header_timeout_s`` in all;
* a body watchdog: the body must not pause longer than ``server.request_body_timeout_s``
  and, once it has lasted that long, must average ``server.request_body_min_rate``
  bytes a second (an idle limit alone lets one byte every few seconds through);
* a connection cap, ``server.max_connections``: past it, a connection is answered 503
  as soon as its request's headers are in, and closed.

A connection holds at most one ``loop.call_later`` timer: one is armed when it opens
(for its first headers) and after that only for a request still incomplete once the
bytes that arrived were parsed, so a request that arrives whole in one read arms
nothing.  Answers are OpenAI-shaped JSON with
``Connection: close``.  A body cut off ends the request's ``receive()`` with
``http.disconnect``, as a hang-up would, and sets :data:`CLIENT_TIMEOUT` in its scope
so the application can tell the two apart.
"""

from __future__ import annotations

import asyncio
from email.utils import formatdate
from typing import Any

from uvicorn.protocols.http.flow_control import FlowControl
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from pulse_proxy.proxy.errors import openai_error_body
from pulse_proxy.settings import ServerSettings

# Set in a request's ASGI scope when its body was cut off for being too slow.
CLIENT_TIMEOUT = "pulse.client_timeout"

# Where a connection stands; the timer (if any) belongs to that phase.
_NEW = 0  # connected, nothing received yet
_HEADERS = 1  # a request has begun, its headers are not complete
_BODY = 2  # headers complete, body still arriving
_IDLE = 3  # between requests: the app runs, or uvicorn's keep-alive timer applies
_REFUSING = 4  # over max_connections: waiting for headers to answer 503

# Bytes read from an over-the-cap connection while waiting for the end of its headers.
_REFUSE_READ_LIMIT = 64 * 1024


def error_response(status: int, code: str, message: str, extra: tuple[bytes, ...] = ()) -> bytes:
    """A complete HTTP/1.1 error response in OpenAI's shape that closes the connection."""
    body = openai_error_body(message, code, status=status)
    return b"".join(
        (
            STATUS_LINE[status],
            b"date: ",
            formatdate(usegmt=True).encode(),
            b"\r\n",
            b"content-type: application/json\r\n",
            b"content-length: ",
            str(len(body)).encode(),
            b"\r\n",
            *extra,
            b"connection: close\r\n\r\n",
            body,
        )
    )


_base = HttpToolsProtocol


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    """HttpToolsProtocol with header, body and connection-count limits.

    Use :func:`guarded_protocol` to get a subclass carrying a configuration's limits;
    pass it to uvicorn as ``http=``.
    """

    # The defaults of ServerSettings; guarded_protocol sets the configured ones.
    header_timeout: float = 10.0
    body_timeout: float = 30.0
    body_min_rate: float = 500.0
    max_connections: int = 2048

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._phase = _NEW
        self._timer: asyncio.TimerHandle | None = None
        self._body_started = 0.0
        self._body_seen = 0.0
        self._body_bytes = 0
        self._refused: bytearray | None = None

    # Connection

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        if len(self.connections) >= self.max_connections:
            # Not counted and never parsed: it only waits for the end of its headers.
            self.transport = transport
            self.flow = FlowControl(transport)
            self._phase = _REFUSING
            self._refused = bytearray()
        else:
            super().connection_made(transport)
        self._timer = self.loop.call_later(self.header_timeout, self._header_deadline)

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._phase == _REFUSING:
            self._refuse(data)
            return
        _base.data_received(self, data)
        # Arm a timer only for what the bytes so far left incomplete.
        phase = self._phase
        if phase == _BODY:
            now = self.loop.time()
            if self._timer is None:
                self._body_started = now
                self._body_bytes = 0
                self._timer = self.loop.call_later(self.body_timeout, self._body_check)
            self._body_seen = now
            self._body_bytes += len(data)
        elif phase == _HEADERS and self._timer is None:
            self._timer = self.loop.call_later(self.header_timeout, self._header_deadline)

    # Parser callbacks: they only move the phase along.  They run for every request,
    # so they call the base class directly (super() costs an object per call).

    def on_message_begin(self) -> None:
        _base.on_message_begin(self)
        # A first request keeps the deadline armed at connection; later ones get
        # theirs in data_received, once their first bytes are parsed.
        self._phase = _HEADERS

    def on_headers_complete(self) -> None:
        if self._timer is not None:
            self._cancel_timer()
        self._phase = _BODY
        _base.on_headers_complete(self)

    def on_message_complete(self) -> None:
        if self._timer is not None:
            self._cancel_timer()
        self._phase = _IDLE
        _base.on_message_complete(self)

    # Expiries

    def _header_deadline(self) -> None:
        self._timer = None
        if not self._still_ours():
            return
        if self._phase == _REFUSING:
            if self._refused:
                self._refuse_now()
            else:
                self.transport.close()
            return
        if self._phase not in (_NEW, _HEADERS):
            return
        cycle = self.cycle
        if cycle is not None and not cycle.response_complete:
            # An earlier request's response is still going out: let it end, then close.
            cycle.keep_alive = False
            return
        if self._phase == _HEADERS:
            self.transport.write(
                error_response(
                    408,
                    "request_timeout",
                    f"The request headers did not arrive within {self.header_timeout:g} s.",
                )
            )
        self.transport.close()  # a connection that never sent a byte is just closed

    def _body_check(self) -> None:
        self._timer = None
        if self._phase != _BODY or not self._still_ours():
            return
        now = self.loop.time()
        idle = now - self._body_seen
        elapsed = now - self._body_started
        if idle >= self.body_timeout:
            self._cut_body(f"The request body paused for more than {self.body_timeout:g} s.")
        elif (
            self.body_min_rate
            and elapsed >= self.body_timeout
            and self._body_bytes < self.body_min_rate * elapsed
        ):
            self._cut_body(f"The request body arrived slower than {self.body_min_rate:g} bytes/s.")
        else:
            self._timer = self.loop.call_later(self.body_timeout - idle, self._body_check)

    def _cut_body(self, message: str) -> None:
        """End the request as a hang-up would, marked as a timeout, answering 408 if
        no response has started, then close."""
        cycle = self.cycle
        if cycle is not None:
            cycle.scope[CLIENT_TIMEOUT] = message  # type: ignore[literal-required]
            if not cycle.response_started:
                self.transport.write(error_response(408, "request_timeout", message))
            # uvicorn's own hang-up handling: receive() returns http.disconnect and
            # anything the app still sends is dropped.
            cycle.disconnected = True
            cycle.message_event.set()
        self._phase = _IDLE
        self.transport.close()

    # Over the connection cap

    def _refuse(self, data: bytes) -> None:
        assert self._refused is not None
        start = max(len(self._refused) - 3, 0)
        self._refused += data
        if self._refused.find(b"\r\n\r\n", start) >= 0 or len(self._refused) >= _REFUSE_READ_LIMIT:
            self._refuse_now()

    def _refuse_now(self) -> None:
        self._cancel_timer()
        self._refused = None
        self._phase = _IDLE
        self.transport.write(
            error_response(
                503,
                "too_many_connections",
                f"The proxy has reached its limit of {self.max_connections} open connections; retry shortly.",
                (b"retry-after: 1\r\n",),
            )
        )
        self.transport.close()

    # Helpers

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _still_ours(self) -> bool:
        """False once the connection is closing or was handed to another protocol
        (a WebSocket upgrade)."""
        transport = self.transport
        return not transport.is_closing() and transport.get_protocol() is self


def guarded_protocol(server: ServerSettings) -> type[GuardedHttpToolsProtocol]:
    """A protocol class carrying ``server``'s limits, for uvicorn's ``http=`` option.

    A class per configuration (not module globals), so servers with different
    settings can share a process, as tests do."""
    return type(
        "GuardedHttpToolsProtocol",
        (GuardedHttpToolsProtocol,),
        {
            "header_timeout": server.request_header_timeout_s,
            "body_timeout": server.request_body_timeout_s,
            "body_min_rate": server.request_body_min_rate,
            "max_connections": server.max_connections,
        },
    )


__all__ = ["CLIENT_TIMEOUT", "GuardedHttpToolsProtocol", "error_response", "guarded_protocol"]
