"""The hot path: receive a request, forward it, relay the answer, hand off one capture.

Everything here is about moving bytes with as little delay as possible.  The request
body is read whole (it has to be, to enforce ``max_body_bytes`` and to inject
``stream_options``), the upstream response is relayed chunk by chunk as it arrives,
and what accounting needs is *copied* into a :class:`Capture`: no token counting, no
JSON rendering, no sink runs before the client has its last byte.

Every request, whatever happens, ends in exactly one call to ``on_complete`` with its
capture: that is the single ``llm.request`` event every request yields.  Even an exception
nobody expected ends as an answer in OpenAI's shape (or a cut stream) and an event
that says so, never as a bare 500 recorded as a success.

Until the first byte of an answer goes to the client, a failed try may be tried
again, on the same upstream or the next one (``upstream.retry``, ``fallbacks``): the
order, waits and budget are decided in :mod:`~pulse_proxy.proxy.retry`, each
upstream's health in :mod:`~pulse_proxy.proxy.breaker`.  With one upstream and one
attempt (the default) no plan is built and the request makes its one try as before.

Two helpers it leans on live beside it: :mod:`~pulse_proxy.proxy.streaming` (usage
asked for on the client's behalf and hidden from it) and
:mod:`~pulse_proxy.proxy.disconnect` (noticing a client that hangs up).
"""

from __future__ import annotations

import asyncio
import itertools
import random
import re
import secrets
import time
import uuid
from collections.abc import AsyncIterator, Callable
from email.utils import formatdate

import aiohttp

from pulse_proxy.accounting.screening import Screen
from pulse_proxy.limits.answer import send_refusal
from pulse_proxy.limits.limiter import Limiter
from pulse_proxy.proxy.breaker import ADMITTED
from pulse_proxy.proxy.disconnect import DisconnectWatch, DisconnectWatches
from pulse_proxy.proxy.errors import openai_error_body, upstream_failure
from pulse_proxy.proxy.headers import (
    REQUEST_ONLY_HEADERS,
    ClientHeaders,
    filter_response_headers,
    read_request_headers,
    response_headers_relayable,
)
from pulse_proxy.proxy.protocol import CLIENT_TIMEOUT
from pulse_proxy.proxy.retry import TryPlan, retry_after
from pulse_proxy.proxy.streaming import UsageChunkFilter, inject_stream_usage
from pulse_proxy.proxy.types import Receive, Scope, Send
from pulse_proxy.proxy.upstreams import Upstream, Upstreams
from pulse_proxy.proxy.urls import upstream_path
from pulse_proxy.records import Capture, Endpoint, Exchange
from pulse_proxy.settings import Settings

_REQUEST_ID_OK = re.compile(r"[A-Za-z0-9._:\-]{1,128}")

# Generated ids: a random per-process prefix and a counter.  Unique like uuid4().hex
# (same 32 hex digits) but without a system call per request.
_ID_PREFIX = uuid.uuid4().hex[:20]
_ID_COUNTER = itertools.count()


def new_identity() -> str:
    """A name for one running proxy, for its ``Via`` entries (RFC 9110 §7.6.3).

    Random rather than a host name: it says nothing about the deployment to the
    provider, and two proxies (or two workers) never share one, so a request that
    comes back to the proxy it already passed through is recognised there."""
    return f"pulse-{secrets.token_hex(8)}"


_ENDPOINTS: tuple[tuple[str, Endpoint], ...] = (
    ("/chat/completions", "chat"),
    ("/completions", "completions"),
    ("/embeddings", "embeddings"),
    ("/responses", "responses"),
    ("/models", "models"),
)


def endpoint_for(path: str) -> Endpoint:
    """Classify by the path after ``/v1`` (``/responses/{id}`` is still ``responses``)."""
    for prefix, name in _ENDPOINTS:
        if path == prefix or path.startswith(prefix + "/"):
            return name
    return "other"


class StreamAborted(Exception):
    """Raised after the upstream broke a response mid-body, so the server drops the
    client connection too: the client then sees the same incomplete read it would
    have seen talking to the upstream directly, rather than a falsely clean end."""


class Forwarder:
    """The ASGI handler for ``/v1/*``."""

    def __init__(
        self,
        settings: Settings,
        upstreams: Upstreams,
        on_complete: Callable[[Capture], None],
        screen: Screen | None = None,
        clock: Callable[[], float] = time.time,
        identity: str | None = None,
        rnd: Callable[[], float] = random.random,
        limits: Limiter | None = None,
    ) -> None:
        self._settings = settings
        self._upstreams = upstreams
        self._primary = upstreams.primary
        self._on_complete = on_complete
        self.identity = identity or new_identity()
        self._via = f"1.1 {self.identity}"
        self._label = upstreams.primary.name
        self._rnd = rnd
        self._max_body = settings.server.max_body_bytes
        self._capture_limit = settings.accounting.max_capture_bytes
        self._inject = settings.upstream.inject_stream_usage
        self._keepalive = settings.upstream.sse_keepalive_s
        self._screen = screen if screen else None
        self._clock = clock
        self._watches = DisconnectWatches()
        self._limits = limits

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        raw_path: bytes = scope.get("raw_path") or scope["path"].encode("utf-8")
        raw = raw_path.decode("latin-1")
        sub_path = upstream_path(raw)  # below "/v1", normalised; None: refused
        client_headers = read_request_headers(scope["headers"], drop=REQUEST_ONLY_HEADERS)
        supplied_id = client_headers.request_id
        request_id = supplied_id.decode("latin-1") if supplied_id else ""
        if not _REQUEST_ID_OK.fullmatch(request_id):
            request_id = f"{_ID_PREFIX}{next(_ID_COUNTER) & 0xFFFFFFFFFFFF:012x}"
        exchange = Exchange(
            request_id=request_id,
            method=scope["method"],
            path=raw if sub_path is None else "/v1" + sub_path,
            endpoint="other" if sub_path is None else endpoint_for(sub_path),
            upstream=self._label,
        )
        capture = Capture(exchange)
        capture.credentials = client_headers.credentials
        capture.query = scope.get("query_string", b"")
        try:
            await self._exchange(scope, receive, send, capture, client_headers, sub_path, started)
        except asyncio.CancelledError:
            # A client hang-up is handled inside; any other cancellation is the server
            # giving up on the request: uvicorn cancels what still runs when SIGTERM's
            # grace period (server.shutdown_grace_s) is over.  Record it as such and
            # break the client's connection (an incomplete read, never a falsely clean
            # end); as StreamAborted it needs no traceback in uvicorn's log.
            task = asyncio.current_task()
            if task is not None:
                task.uncancel()
            exchange.outcome = "timeout"
            exchange.error_type = "shutdown_grace_exceeded"
            exchange.error_message = "The proxy shut down before the response ended."
            if exchange.status_code is None:
                exchange.status_code = 500  # uvicorn's answer when no response had started
            raise StreamAborted from None
        except StreamAborted:
            raise
        except Exception as exc:  # noqa: BLE001 (any bug still ends in an answer and an event)
            await self._internal_error(send, capture, exc)
        finally:
            ended = time.perf_counter()
            # Raw float milliseconds here; accounting rounds them for the event, off the loop.
            exchange.latency_ms = (ended - started) * 1000
            if exchange.upstream_ms is not None:
                # Time spent waiting between tries is neither the upstream's nor ours.
                exchange.overhead_ms = max(
                    exchange.latency_ms - exchange.upstream_ms - exchange.retry_wait_ms, 0.0
                )
            exchange.ended_at = self._clock()
            if self._limits is not None:
                self._limits.release(capture)
            self._on_complete(capture)

    async def _exchange(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        capture: Capture,
        client_headers: ClientHeaders,
        sub_path: str | None,
        started: float,
    ) -> None:
        exchange = capture.exchange

        # 0. Refusals that need nothing but the request line and headers.  The body is
        # left unread, so the connection is closed after the answer.
        via = client_headers.via
        if via is not None and self.identity in via:
            await self._proxy_error(
                send,
                capture,
                508,
                "rejected",
                "loop_detected",
                "Request loop detected: this request already passed through this LLM Pulse "
                "proxy, so its upstream leads back to it.",
                close=True,
            )
            return
        if sub_path is None:
            await self._proxy_error(
                send,
                capture,
                400,
                "rejected",
                "invalid_path",
                "The request path is not allowed: it must stay below /v1/ once dot segments "
                "are resolved, and its segments must not hold an encoded slash, a backslash "
                "or '@'.",
                close=True,
            )
            return

        # 1. The request body, bounded.
        declared = client_headers.content_length
        if declared is not None and declared.isdigit() and int(declared) > self._max_body:
            exchange.bytes_in = int(declared)
            await self._reject_too_large(send, capture)
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                exchange.outcome = "client_disconnected"
                exchange.error_type = "client_disconnected"
                exchange.bytes_in = size
                timed_out = scope.get(CLIENT_TIMEOUT)
                if timed_out:
                    # Cut by the server for a stalled body; it answered 408 itself.
                    exchange.error_type = "client_timeout"
                    exchange.error_message = timed_out
                    exchange.status_code = 408
                return
            part = message.get("body", b"")
            if part:
                size += len(part)
                if size > self._max_body:
                    exchange.bytes_in = size
                    await self._reject_too_large(send, capture)
                    return
                chunks.append(part)
            if not message.get("more_body", False):
                break
        body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        exchange.bytes_in = size
        capture.request_body = body
        capture.api_key = client_headers.api_key
        capture.user_header = client_headers.user
        capture.tags_header = client_headers.tags

        # 2. Policy: only flags configured to block are checked before forwarding.
        if self._screen is not None:
            flags = await self._screen.blocked_flags(body, exchange.endpoint)
            if flags:
                exchange.risk_flags = flags
                await self._proxy_error(
                    send,
                    capture,
                    400,
                    "rejected",
                    "prompt_blocked",
                    f"The request was blocked by LLM Pulse policy ({', '.join(flags)}).",
                )
                return

        # 2b. Limits: a request over one is answered 429 here, the upstream never called.
        if self._limits is not None:
            refusal = await self._limits.admit(capture)
            if refusal is not None:
                await send_refusal(send, capture, refusal)
                return

        # 3. What goes upstream.
        upstream_body = body
        if self._inject and exchange.endpoint == "chat" and exchange.method == "POST":
            injected = inject_stream_usage(body)
            if injected is not None:
                upstream_body = injected
                capture.usage_injected = True
        base_headers = client_headers.upstream
        base_headers.append(("x-request-id", exchange.request_id))
        base_headers.append(("via", f"{via}, {self._via}" if via else self._via))
        # The client's framing, as sent: a request without Content-Length or
        # Transfer-Encoding has no body, and gets none (data=None, no Content-Length;
        # see UnframedRequest); one that framed an empty body still says so.
        framed = (
            client_headers.content_length is not None
            or client_headers.transfer_encoding is not None
        )
        query = capture.query
        query_text = query.decode("latin-1") if query else ""

        # 4. Forward, watching for the client going away meanwhile.  With one upstream
        # and one attempt (the default) there is no plan: one try, as it always was.
        upstreams = self._upstreams
        now = upstreams.clock()
        plan: TryPlan | None = None
        if upstreams.single:
            upstream = self._primary
            admission = upstream.breaker.force(now)
        else:
            plan = TryPlan(upstreams.breakers, upstreams.policy, self._rnd)
            upstreams.budget.request(now)
            upstream = upstreams.items[plan.first(now)]
            admission = plan.admission
        task = asyncio.current_task()
        assert task is not None
        watch = self._watches.watch(receive, task)
        tries_s = 0.0  # upstream time of the tries before this one
        waiting = False  # between tries: time that is not the upstream's
        upstream_started = time.perf_counter()
        response: aiohttp.ClientResponse | None = None
        try:
            while True:
                headers = base_headers
                api_key = upstream.api_key
                if api_key and capture.api_key is None:
                    # An empty Authorization from the client must not travel beside
                    # ours; and each upstream's key goes to that upstream only.
                    headers = [(k, v) for k, v in headers if k.lower() != "authorization"]
                    headers.append(("authorization", f"Bearer {api_key}"))
                data = upstream.body_for(upstream_body) if upstream.models else upstream_body
                exchange.attempts += 1
                exchange.upstream = upstream.name
                try_started = time.perf_counter()
                upstream_started = try_started - tries_s
                failure: tuple[str, Exception] | None = None
                try:
                    response = await upstream.session.request(
                        exchange.method,
                        upstream.base.url_for(sub_path, query_text),
                        data=data if data or framed else None,
                        headers=headers,
                        allow_redirects=False,
                    )
                except (TimeoutError, aiohttp.ServerTimeoutError) as exc:
                    failure = ("timeout", exc)
                except aiohttp.ClientResponseError as exc:
                    # The upstream answered, but not in HTTP the client could be given
                    # (aiohttp's parser refused it: a bare CR in a header, a bad name...).
                    failure = ("bad_response", exc)
                except aiohttp.ClientError as exc:
                    failure = ("connect_error", exc)
                else:
                    status = response.status
                    failed = status >= 500 or status in upstreams.policy.on_status
                    upstream.note(
                        _RESULTS[status // 100] if status != 429 else "rate_limited",
                        (time.perf_counter() - try_started) * 1000,
                    )
                    upstream.breaker.record(not failed, admission, upstreams.clock())
                    admission = ADMITTED  # told: a cancellation now holds no trial
                    if plan is None or status not in upstreams.policy.on_status:
                        break
                    asked = retry_after(response.headers)
                if failure is not None:
                    admission = self._failed(upstream, admission, *failure)
                    asked = None
                # One way to the next try, whether this one failed on a status (its
                # response is closed in _next_try, before any wait) or got no response.
                if plan is not None and (failure is None or _retried(upstreams, failure[0])):
                    tries_s += time.perf_counter() - try_started
                    waiting = True
                    chosen = await self._next_try(plan, upstream, capture, asked, response)
                    waiting = False
                    if chosen is not None:
                        response = None
                        upstream, admission = chosen
                        continue
                if failure is None:
                    break
                exchange.upstream_ms = _ms_since(upstream_started)
                await self._answer_failure(send, capture, upstream, *failure)
                return
            assert response is not None  # the loop ends in a break only with a response
            await self._relay(send, capture, response, started, upstream_started, watch, upstream)
        except asyncio.CancelledError:
            upstream.breaker.release(admission)
            if watch.gone and task.cancelling():
                # Our own cancellation: the client hung up.  Close (not release) the
                # upstream connection so the upstream sees the disconnect too.
                task.uncancel()
                exchange.outcome = "client_disconnected"
                exchange.error_type = "client_disconnected"
                if exchange.upstream_ms is None:
                    exchange.upstream_ms = (
                        tries_s * 1000 if waiting else _ms_since(upstream_started)
                    )
                if response is not None:
                    response.close()
                return
            # Cut by the server (see __call__): close, so the upstream sees it too.
            if exchange.upstream_ms is None:
                exchange.upstream_ms = tries_s * 1000 if waiting else _ms_since(upstream_started)
            if response is not None:
                response.close()
            raise
        finally:
            watch.stop()
            if response is not None:
                response.release()

    async def _answer_failure(
        self, send: Send, capture: Capture, upstream: Upstream, kind: str, exc: Exception
    ) -> None:
        """The client's answer when the last try got no response: 504 for a timeout,
        502 for a connection that failed or an answer that was not HTTP."""
        if kind == "timeout":
            await self._proxy_error(
                send,
                capture,
                504,
                "timeout",
                "upstream_timeout",
                f"The upstream {upstream.base.address} did not answer in time "
                f"({upstream_failure(exc)}).",
            )
        elif kind == "bad_response":
            await self._proxy_error(
                send,
                capture,
                502,
                "upstream_error",
                "upstream_bad_response",
                f"The upstream's response was not valid HTTP: {type(exc).__name__}.",
            )
        else:
            await self._proxy_error(
                send,
                capture,
                502,
                "connection_error",
                "upstream_connection_error",
                f"Upstream unreachable: {upstream.base.address} ({upstream_failure(exc)}).",
            )

    def _failed(self, upstream: Upstream, admission: int, result: str, exc: BaseException) -> int:
        """A try that got no response: counted, and told to the upstream's breaker.
        Returns the admission now held: none that a cancellation would have to free."""
        upstream.note(result)
        upstream.last_error = upstream_failure(exc)
        upstream.breaker.record(False, admission, self._upstreams.clock())
        return ADMITTED

    async def _next_try(
        self,
        plan: TryPlan,
        failed: Upstream,
        capture: Capture,
        asked_wait: float | None,
        response: aiohttp.ClientResponse | None = None,
    ) -> tuple[Upstream, int] | None:
        """Where the request goes after a failed try, once any wait is over; None when
        it goes nowhere (attempts spent, no usable upstream left, budget exhausted):
        the client then gets this try's answer.  A response being retried is closed
        here, before the wait, so its connection is not held meanwhile."""
        exchange = capture.exchange
        upstreams = self._upstreams
        if exchange.attempts >= upstreams.policy.attempts:
            return None
        now = upstreams.clock()
        index = upstreams.items.index(failed)
        plan.failed(index, now, asked_wait)
        chosen = plan.next(now)
        if chosen is None:
            return None
        target = upstreams.items[chosen[0]]
        if not upstreams.budget.spend(now):
            target.breaker.release(plan.admission)
            return None
        if response is not None:
            response.close()
        admission = plan.admission
        wait = chosen[1]
        if wait > 0:
            waited = time.perf_counter()
            try:
                await asyncio.sleep(wait)
            except asyncio.CancelledError:
                target.breaker.release(admission)
                raise
            finally:
                exchange.retry_wait_ms += _ms_since(waited)
        # Recorded only now that the next try goes ahead (a client gone meanwhile
        # leaves a request that was served by no other upstream).
        if exchange.failover_from is None:
            exchange.failover_from = []
        exchange.failover_from.append(failed.name)
        if target is not failed:
            upstreams.failed_over(failed.name, target.name)
        return target, admission

    async def _relay(
        self,
        send: Send,
        capture: Capture,
        response: aiohttp.ClientResponse,
        started: float,
        upstream_started: float,
        watch: DisconnectWatch,
        upstream: Upstream,
    ) -> None:
        exchange = capture.exchange
        raw_headers = response.raw_headers
        out_headers = filter_response_headers(raw_headers)
        if not response_headers_relayable(out_headers):
            # Refused by the server only once the response has started, this would
            # reach the client as an empty reply: say instead what happened.
            response.close()
            exchange.upstream_ms = _ms_since(upstream_started)
            await self._proxy_error(
                send,
                capture,
                502,
                "upstream_error",
                "upstream_bad_response",
                "The upstream's response headers cannot be relayed "
                "(a control character in a value, or an invalid name).",
            )
            return
        exchange.status_code = response.status
        status = response.status
        if status >= 500 or status == 429:
            exchange.outcome = "upstream_error"
        elif status >= 400:
            exchange.outcome = "client_error"
        content_type = response.headers.get("Content-Type", "")
        capture.response_content_type = content_type
        capture.response_content_encoding = response.headers.get("Content-Encoding", "")
        upstream_id = response.headers.get("X-Request-ID")
        if upstream_id:
            exchange.upstream_request_id = upstream_id
        else:
            out_headers.append((b"x-request-id", exchange.request_id.encode("latin-1")))
        is_sse = content_type.startswith("text/event-stream")
        exchange.stream = is_sse
        framer = UsageChunkFilter() if (is_sse and capture.usage_injected) else None
        if framer is not None:
            # Frames are re-cut, so the length is no longer the upstream's.
            out_headers = [(k, v) for k, v in out_headers if k.lower() != b"content-length"]

        await send({"type": "http.response.start", "status": status, "headers": out_headers})
        capture.response_started = True
        limit = self._capture_limit
        bytes_out = 0
        first = True
        chunks: AsyncIterator[bytes] = response.content.iter_any()
        try:
            if is_sse and self._keepalive:
                first_chunk, sent = await self._keep_alive_until_first_chunk(send, chunks)
                bytes_out += sent
                chunks = _prepend(first_chunk, chunks)
            async for chunk in chunks:
                capture.keep(chunk, limit)
                if framer is not None:
                    chunk = framer.feed(chunk)
                    if not chunk:
                        continue
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
                bytes_out += len(chunk)
                if first and is_sse:
                    exchange.ttft_ms = _ms_since(started)
                first = False
        except (TimeoutError, aiohttp.ServerTimeoutError):
            self._broken(
                capture,
                upstream_started,
                bytes_out,
                "timeout",
                "upstream_timeout",
                f"The upstream {upstream.base.address} stopped sending mid-response.",
            )
            raise StreamAborted from None
        except aiohttp.ClientError as exc:
            self._broken(
                capture,
                upstream_started,
                bytes_out,
                "connection_error",
                "upstream_stream_interrupted",
                f"The connection to the upstream {upstream.base.address} broke "
                f"mid-response ({upstream_failure(exc)}).",
            )
            raise StreamAborted from None
        except asyncio.CancelledError:
            exchange.bytes_out = bytes_out  # what reached the client before the cut
            raise
        exchange.upstream_ms = _ms_since(upstream_started)
        tail = framer.flush() if framer is not None else b""
        # From here on a disconnect cannot cancel us: the answer is complete.
        watch.stop()
        await send({"type": "http.response.body", "body": tail, "more_body": False})
        exchange.bytes_out = bytes_out + len(tail)

    async def _keep_alive_until_first_chunk(
        self, send: Send, chunks: AsyncIterator[bytes]
    ) -> tuple[bytes | None, int]:
        """SSE comments while the upstream thinks, so idle timeouts of load balancers
        (often 60 s) do not cut a stream whose first token is slow.  Off by default:
        comments are invisible to SSE parsers but not to a byte-exact comparison."""
        sent = 0
        waiter = asyncio.ensure_future(chunks.__anext__())
        try:
            while True:
                done, _ = await asyncio.wait({waiter}, timeout=self._keepalive)
                if done:
                    try:
                        return waiter.result(), sent
                    except StopAsyncIteration:
                        return None, sent
                await send({"type": "http.response.body", "body": _KEEPALIVE, "more_body": True})
                sent += len(_KEEPALIVE)
        finally:
            waiter.cancel()

    def _broken(
        self,
        capture: Capture,
        upstream_started: float,
        bytes_out: int,
        outcome: str,
        error_type: str,
        message: str,
    ) -> None:
        exchange = capture.exchange
        exchange.upstream_ms = _ms_since(upstream_started)
        exchange.outcome = outcome  # type: ignore[assignment]
        exchange.error_type = error_type
        exchange.error_message = message
        exchange.bytes_out = bytes_out

    async def _reject_too_large(self, send: Send, capture: Capture) -> None:
        await self._proxy_error(
            send,
            capture,
            413,
            "rejected",
            "request_too_large",
            f"Request body exceeds the proxy's limit of {self._max_body} bytes.",
            close=True,
        )

    async def _proxy_error(
        self,
        send: Send,
        capture: Capture,
        status: int,
        outcome: str,
        code: str,
        message: str,
        *,
        close: bool = False,
    ) -> None:
        exchange = capture.exchange
        exchange.status_code = status
        exchange.outcome = outcome  # type: ignore[assignment]
        exchange.error_type = code
        exchange.error_message = message
        body = openai_error_body(message, code, status=status)
        headers = [
            (b"date", formatdate(usegmt=True).encode()),
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"x-request-id", exchange.request_id.encode("latin-1")),
        ]
        if close:
            headers.append((b"connection", b"close"))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        capture.response_started = True
        await send({"type": "http.response.body", "body": body, "more_body": False})
        exchange.bytes_out = len(body)

    async def _internal_error(self, send: Send, capture: Capture, exc: Exception) -> None:
        """An exception the steps above did not expect: the client still gets an
        answer it can read, and the event says the request failed.

        Before the status line, that is a 500 in OpenAI's shape; after it, only the
        connection can be cut (StreamAborted), as for an upstream breaking mid-body.
        Only the exception's type is recorded: its text may hold a URL or a header."""
        exchange = capture.exchange
        message = f"The proxy failed while handling the request ({type(exc).__name__})."
        if capture.response_started:
            exchange.outcome = "upstream_error"
            exchange.error_type = "internal_error"
            exchange.error_message = message
            raise StreamAborted from None
        await self._proxy_error(send, capture, 500, "upstream_error", "internal_error", message)


_KEEPALIVE = b": keepalive\n\n"
# A try's result by status class, as llm_upstream_attempts_total{result} counts it.
_RESULTS = ("success", "success", "success", "success", "client_error", "server_error")


def _retried(upstreams: Upstreams, failure: str) -> bool:
    """Whether ``upstream.retry.on`` retries a try that got no response this way (an
    answer that was not HTTP never is: another try would get the same)."""
    if failure == "timeout":
        return upstreams.policy.on_timeout
    return failure == "connect_error" and upstreams.policy.on_connect


async def _prepend(first: bytes | None, rest: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    if first is not None:
        yield first
    async for chunk in rest:
        yield chunk


def _ms_since(start: float) -> float:
    return (time.perf_counter() - start) * 1000


__all__ = ["Forwarder", "StreamAborted", "endpoint_for"]
