"""Noticing a client that hangs up while its request is still being forwarded.

An ASGI app learns of a hang-up only by calling ``receive()`` again once the body is
read; nothing tells it otherwise.  Without a watch, a client that gives up on a long
generation would leave the upstream generating to the end.  The watch
cancels the request's task instead, so the upstream connection is closed too and the
event records ``client_disconnected``.
"""

from __future__ import annotations

import asyncio
from typing import Any

from pulse_proxy.proxy.types import Message, Receive


class DisconnectWatch:
    """Cancels the request's task when the client hangs up, so the upstream request is
    closed too.  Made by :class:`DisconnectWatches`, which decides when it starts."""

    __slots__ = ("_future", "_owner", "_receive", "_task", "gone")

    def __init__(self, receive: Receive, task: asyncio.Task[Any], owner: DisconnectWatches) -> None:
        self._receive = receive
        self._task = task
        self._owner = owner
        self._future: asyncio.Future[Message] | None = None
        self.gone = False

    def start(self) -> None:
        if self._future is None:
            self._future = asyncio.ensure_future(self._receive())
            self._future.add_done_callback(self._check)

    def _check(self, done: asyncio.Future[Message]) -> None:
        if not done.cancelled() and done.result().get("type") == "http.disconnect":
            self.gone = True
            self._task.cancel(msg="pulse: client disconnected")

    def stop(self) -> None:
        self._owner.forget(self)
        if self._future is not None:
            self._future.remove_done_callback(self._check)
            if not self._future.done():
                self._future.cancel()
            self._future = None


class DisconnectWatches:
    """Starts watching an exchange for a hang-up once it has lasted ``delay`` seconds.

    Watching means a pending ``receive()`` task, which measured at a third of the
    proxy's throughput on fast streams, so exchanges that end within ``delay`` never
    pay for it.  One timer serves every exchange in flight: each tick starts the
    watches made since the tick before, so each starts between ``delay`` and twice
    that after its exchange began (a timer per request cost the event loop more than
    the rest of its bookkeeping together).  A hang-up before then is noticed at that
    moment: uvicorn answers ``http.disconnect`` at once for a closed connection.
    Long generations, where hang-ups matter, are always watched.
    """

    __slots__ = ("_delay", "_timer", "_young")

    def __init__(self, delay: float = 0.2) -> None:
        self._delay = delay
        self._young: set[DisconnectWatch] = set()
        self._timer: asyncio.TimerHandle | None = None

    def watch(self, receive: Receive, task: asyncio.Task[Any]) -> DisconnectWatch:
        watch = DisconnectWatch(receive, task, self)
        self._young.add(watch)
        if self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self._delay, self._tick)
        return watch

    def forget(self, watch: DisconnectWatch) -> None:
        self._young.discard(watch)

    def _tick(self) -> None:
        due, self._young = self._young, set()
        self._timer = None
        for watch in due:
            watch.start()
        # Watches made from now on schedule the next tick themselves.


__all__ = ["DisconnectWatch", "DisconnectWatches"]
