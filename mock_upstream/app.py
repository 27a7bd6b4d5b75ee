"""The bundled mock upstream: a small, fast, OpenAI-compatible ASGI app.

A plain ASGI callable rather than a framework app: the mock must be cheap under load
(it stands in for the provider in demos and benchmarks), and it needs full control
of the wire (holding a stream at a gate, dropping the connection mid-body, noticing a
client hanging up), which is simplest with ``receive``/``send`` in hand.

Routes:

| route | answer |
| --- | --- |
| ``GET /v1/models``, ``GET /v1/models/{id}`` | the model list / one model (404 ``model_not_found`` if unknown) |
| ``POST /v1/chat/completions`` | JSON, or SSE with ``stream: true`` (``stream_options.include_usage`` honoured) |
| ``POST /v1/completions`` | JSON, or SSE with ``stream: true`` |
| ``POST /v1/embeddings`` | deterministic unit vectors; ``dimensions``; ``encoding_format: base64`` |
| ``POST /v1/responses`` | a Response, or its SSE events with ``stream: true`` |
| ``GET /_mock/requests`` | the last 200 requests received, oldest first |
| ``GET /_mock/requests/{x_request_id}`` | the newest request with that X-Request-ID (404 if none) |
| ``POST /_mock/gates/{name}`` | release the streams held by ``X-Mock-Gate: name`` |
| ``POST /_mock/reset`` | forget all requests; release and forget all gates; clear the fault |
| ``PUT /_mock/fault`` | from now on every ``/v1`` request fails: ``{"status": 503, "retry_after": "1"}`` answers that status (OpenAI's error body, optional ``Retry-After``); ``{"hang": true}`` sends nothing until the fault is cleared |
| ``DELETE /_mock/fault`` | answer normally again (held requests go on) |

The fault is what lets two mocks stand for a primary and a fallback: headers reach
every upstream a proxy tries, so only state on one mock can fail that one alone.

Every ``/v1`` answer carries ``X-Request-ID``: the client's, or a generated ``req_<hex>``.
The per-request controls are documented in ``mock_upstream.scenarios``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import gzip
import hashlib
import logging
import uuid
from typing import Any

import orjson

from mock_upstream import endpoints, payloads
from mock_upstream.endpoints import Reply, RequestError
from mock_upstream.recorder import Recorder, RequestRecord
from mock_upstream.scenarios import ControlError, Controls
from mock_upstream.sending import (
    Gates,
    Headers,
    Receive,
    Send,
    hide_drop_tracebacks,
    send_body,
    send_json,
    send_stream,
    watching,
)

log = logging.getLogger("mock_upstream")

_UNPARSEABLE = (
    "We could not parse the JSON body of your request. (HINT: This likely means you aren't using "
    "your HTTP library correctly. The OpenAI API expects a JSON payload, but what was sent was not "
    "valid JSON.)"
)
_JSON = (b"content-type", b"application/json")
_SSE = (b"content-type", b"text/event-stream; charset=utf-8")


async def _read_body(receive: Receive) -> bytes | None:
    """The whole request body, or None if the client went away while sending it."""
    chunks = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


class MockApp:
    """The ASGI app; ``recorder`` and ``gates`` are public for in-process tests."""

    def __init__(self) -> None:
        self.recorder = Recorder()
        self.gates = Gates()
        # Set by PUT /_mock/fault: a status (and Retry-After) for every /v1 request,
        # or {"hang": true}.  ``_healed`` is set whenever no fault holds requests.
        self.fault: dict[str, Any] | None = None
        self._healed = asyncio.Event()
        self._healed.set()

    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            await self._http(scope, receive, send)
        elif scope["type"] == "lifespan":
            await self._lifespan(receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                self.gates.clear()  # no held stream may outlive the server
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _http(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        path: str = scope["path"]
        method: str = scope["method"]
        body = await _read_body(receive)
        if path.startswith("/_mock/"):
            if body is not None:
                await self._admin(method, path, body, send)
            return
        headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in scope["headers"]]
        first: dict[str, str] = {}
        for name, value in headers:
            first.setdefault(name.lower(), value)
        given_id = first.get("x-request-id")
        record = RequestRecord(
            method=method,
            path=path,
            query=scope.get("query_string", b"").decode("latin-1"),
            headers=headers,
            body_length=len(body or b""),
            body_sha256=hashlib.sha256(body or b"").hexdigest(),
            x_request_id=given_id,
            request_id=given_id or f"req_{uuid.uuid4().hex}",
        )
        self.recorder.add(record)
        if body is None:
            record.finish("client_disconnected")
            return
        fault = self.fault
        if fault is not None and fault.get("hang"):
            await watching(receive, self._until_healed(), record)
            if record.outcome == "client_disconnected":
                return
        try:
            controls = Controls.from_headers(first)
            if fault is not None and isinstance(fault.get("status"), int):
                retry_after = fault.get("retry_after")
                controls = dataclasses.replace(
                    controls,
                    status=fault["status"],
                    retry_after=str(retry_after) if retry_after is not None else None,
                )
            reply = self._answer(method, path, body, controls)
        except ControlError as exc:
            controls = Controls()
            reply = RequestError(str(exc), param=exc.header, code="invalid_mock_control").reply()
        out: Headers = [(b"x-request-id", record.request_id.encode("latin-1"))]
        if controls.retry_after is not None:
            out.append((b"retry-after", controls.retry_after.encode("latin-1")))
        record.stream = reply.stream
        if reply.stream:
            work = send_stream(send, reply, [_SSE, *out], controls, self.gates, record)
            await watching(receive, work, record)
            return
        data = orjson.dumps(reply.body)
        meta: Headers = [_JSON]
        if controls.gzip:
            data = gzip.compress(data, compresslevel=6, mtime=0)
            meta.append((b"content-encoding", b"gzip"))
        meta.append((b"content-length", str(len(data)).encode()))
        if controls.latency_ms:
            await watching(
                receive, send_json(send, reply.status, meta + out, data, controls, record), record
            )
        else:  # the fast path: nothing to wait for, so nothing to watch
            await send_json(send, reply.status, meta + out, data, controls, record)

    def _answer(self, method: str, path: str, body: bytes, controls: Controls) -> Reply:
        if controls.status is not None:
            return Reply(controls.status, payloads.error_for_status(controls.status))
        try:
            if method == "GET" and path == "/v1/models":
                return endpoints.models({}, controls)
            if method == "GET" and path.startswith("/v1/models/"):
                return endpoints.model(path.removeprefix("/v1/models/"))
            handler = endpoints.JSON_ENDPOINTS.get(path)
            if handler is None or method != "POST":
                return Reply(404, payloads.error(f"Invalid URL ({method} {path})"))
            try:
                request = orjson.loads(body)
            except orjson.JSONDecodeError:
                request = None
            if not isinstance(request, dict):
                return Reply(400, payloads.error(_UNPARSEABLE))
            return handler(request, controls)
        except RequestError as exc:
            return exc.reply()
        except Exception:  # a bug in the mock must still answer in OpenAI's shape
            log.exception("mock upstream failed to build an answer for %s %s", method, path)
            return Reply(500, payloads.error_for_status(500))

    async def _admin(self, method: str, path: str, body: bytes, send: Send) -> None:
        status: int = 200
        answer: dict[str, Any] | None = None
        if method == "GET" and path == "/_mock/requests":
            answer = {"object": "list", "data": [r.to_json() for r in self.recorder.all()]}
        elif method == "GET" and path.startswith("/_mock/requests/"):
            record = self.recorder.find(path.removeprefix("/_mock/requests/"))
            if record is not None:
                answer = record.to_json()
        elif method == "POST" and path.startswith("/_mock/gates/"):
            name = path.removeprefix("/_mock/gates/")
            self.gates.release(name)
            answer = {"gate": name, "released": True}
        elif method == "POST" and path == "/_mock/reset":
            self.recorder.clear()
            self.gates.clear()
            self._set_fault(None)
            answer = {"reset": True}
        elif method == "PUT" and path == "/_mock/fault":
            try:
                fault = orjson.loads(body)
            except orjson.JSONDecodeError:
                fault = None
            if isinstance(fault, dict) and (
                fault.get("hang") is True
                or (isinstance(fault.get("status"), int) and 400 <= fault["status"] <= 599)
            ):
                self._set_fault(fault)
                answer = {"fault": fault}
            else:
                status = 400
                answer = payloads.error('give {"status": 400..599} or {"hang": true}')
        elif method == "DELETE" and path == "/_mock/fault":
            self._set_fault(None)
            answer = {"fault": None}
        if answer is None:
            status, answer = 404, payloads.error(f"Nothing at {method} {path}")
        await send_body(send, status, [_JSON], orjson.dumps(answer))

    async def _until_healed(self) -> None:
        await self._healed.wait()

    def _set_fault(self, fault: dict[str, Any] | None) -> None:
        self.fault = fault
        if fault is not None and fault.get("hang"):
            self._healed.clear()
        else:
            self._healed.set()


def create_app() -> MockApp:
    """A fresh mock: its own request log and gates."""
    hide_drop_tracebacks()
    return MockApp()
