"""Sending an answer with the timing controls applied, while watching the client.

A stream is sent event by event, as a real upstream does, so a proxy in front can
be caught buffering.  While sending, a second task waits on ``receive()`` for
``http.disconnect`` (as Starlette's StreamingResponse does): uvicorn silently drops
writes to a closed connection, so listening is the only way to learn that the client
hung up, and the only way a test can see it happened.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Coroutine, MutableMapping
from typing import Any

from mock_upstream.endpoints import Reply
from mock_upstream.recorder import RequestRecord
from mock_upstream.scenarios import Controls

Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
Headers = list[tuple[bytes, bytes]]

# A gate nobody releases must not hold a stream (or the server's shutdown) forever.
GATE_TIMEOUT_S = 30.0


class DroppedByMock(Exception):
    """Raised out of the ASGI app on purpose: after the response has started, uvicorn
    answers an exception by closing the socket, so the client never gets the chunked
    terminator and sees an incomplete read, just as when an upstream dies mid-stream."""


class _HideDrops(logging.Filter):
    """Keep uvicorn from logging a traceback for each deliberate drop."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.exc_info and isinstance(record.exc_info[1], DroppedByMock))


def hide_drop_tracebacks() -> None:
    """Install the filter on uvicorn's error logger, once per process."""
    logger = logging.getLogger("uvicorn.error")
    if not any(isinstance(f, _HideDrops) for f in logger.filters):
        logger.addFilter(_HideDrops())


class Gates:
    """Named events a held stream waits on; created on first use by either side.

    A released gate stays open (later streams through it are not held) until
    ``clear()``, so a release that arrives before the stream does is not lost.
    """

    def __init__(self) -> None:
        self._events: dict[str, asyncio.Event] = {}

    def get(self, name: str) -> asyncio.Event:
        return self._events.setdefault(name, asyncio.Event())

    def release(self, name: str) -> None:
        self.get(name).set()

    def clear(self) -> None:
        """Let every held stream go, then forget all gates."""
        for event in self._events.values():
            event.set()
        self._events.clear()


def _start(status: int, headers: Headers) -> Message:
    return {"type": "http.response.start", "status": status, "headers": headers}


async def send_body(send: Send, status: int, headers: Headers, body: bytes) -> None:
    """A complete, non-streamed answer."""
    await send(_start(status, headers))
    await send({"type": "http.response.body", "body": body, "more_body": False})


async def _until_disconnect(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


async def watching(
    receive: Receive, work: Coroutine[Any, Any, None], record: RequestRecord
) -> None:
    """Run ``work``; if the client disconnects first, cancel it and record the disconnect."""
    producer = asyncio.create_task(work)
    watcher = asyncio.create_task(_until_disconnect(receive))
    try:
        done, _ = await asyncio.wait({producer, watcher}, return_when=asyncio.FIRST_COMPLETED)
    except BaseException:
        producer.cancel()
        watcher.cancel()
        raise
    if producer in done:  # checked first: a finished answer is not a disconnect
        watcher.cancel()
        producer.result()  # re-raises DroppedByMock
        return
    record.finish("client_disconnected")
    producer.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await producer


async def send_json(
    send: Send,
    reply_status: int,
    headers: Headers,
    body: bytes,
    controls: Controls,
    record: RequestRecord,
) -> None:
    """Wait out the latency, then send the whole body."""
    if controls.latency_ms:
        await asyncio.sleep(controls.latency_ms / 1000)
    record.status = reply_status
    await send_body(send, reply_status, headers, body)
    record.finish("completed")


async def send_stream(
    send: Send,
    reply: Reply,
    headers: Headers,
    controls: Controls,
    gates: Gates,
    record: RequestRecord,
) -> None:
    """Latency, headers, TTFT, then each event: paced, gated, or dropped as asked."""
    loop = asyncio.get_running_loop()
    if controls.latency_ms:
        await asyncio.sleep(controls.latency_ms / 1000)
    record.status = reply.status
    await send(_start(reply.status, headers))
    if controls.ttft_ms:
        await asyncio.sleep(controls.ttft_ms / 1000)
    gate = gates.get(controls.gate) if controls.gate else None
    drop_at = controls.drop_after_chunks
    interval = 1 / controls.tokens_per_second if controls.tokens_per_second else 0.0
    next_at: float | None = None
    for index, frame in enumerate(reply.frames):
        if drop_at is not None and index >= drop_at:
            break
        if frame.paced and interval:
            if next_at is None:
                next_at = loop.time()
            else:
                next_at += interval
                delay = next_at - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
                else:  # fell behind (a gate, a slow reader): pace on from now, no burst
                    next_at = loop.time()
        await send({"type": "http.response.body", "body": frame.data, "more_body": True})
        record.chunks_sent += 1
        if index == 0 and gate is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(gate.wait(), GATE_TIMEOUT_S)
    if drop_at is not None:
        record.finish("dropped")
        raise DroppedByMock(
            f"dropped after {record.chunks_sent} chunks, as X-Mock-Drop-After-Chunks asked"
        )
    await send({"type": "http.response.body", "body": b"", "more_body": False})
    record.finish("completed")
