"""Accounting in a child process, so the event loop never pays for it.

Finishing a request costs far more than relaying it: JSON parsing, tiktoken counting,
usage extraction and above all the risk scan (regular expressions hold the GIL, so a
thread does not help; a 100,000-token prompt takes tens of milliseconds).  In the
proxy's process that time would be stolen from every request in flight.  So captures
are gathered for a few milliseconds, pickled, and written to a child process on the
other core through a non-blocking socket.  What comes back to the event loop is only
what it must still do something with: the rendered log lines, the batch's figures
summed into one :class:`~pulse_proxy.tally.Tally`, StatsD's lines when it is on, and
the exchanges themselves only when a sink takes them one by one (OpenTelemetry, an
embedding's own sink).

Nothing is lost: every batch stays pending until its results return; if the child
dies a new one is started and given the pending batches again (on shutdown they are
finished in-process instead).
"""

from __future__ import annotations

import asyncio
import dataclasses
import gc
import itertools
import operator
import pickle
import signal
import socket
import struct
import subprocess
import sys
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any

import orjson

from pulse_proxy.accounting import Accountant
from pulse_proxy.forkchild import start_child
from pulse_proxy.forward import Capture
from pulse_proxy.records import Exchange
from pulse_proxy.settings import Settings
from pulse_proxy.sinks.log import LineRenderer
from pulse_proxy.sinks.statsd import StatsdLines
from pulse_proxy.tally import Tally

_STOP = b"stop"


def build_accountant(settings: Settings) -> Accountant:
    """The accounting step with its pricing and risk functions (parent and child alike)."""
    from pulse_proxy import risk
    from pulse_proxy.pricing import PriceTable
    from pulse_proxy.screening import flagger

    prices = PriceTable.load(settings.pricing.files)
    return Accountant(settings, cost=prices.exchange_cost, risk=flagger(settings.risk), redact=risk.mask)


def finish_all(accountant: Accountant, captures: list[Capture]) -> list[Exchange]:
    finished = []
    for capture in captures:
        try:
            finished.append(accountant.finish_sync(capture))
        except Exception:  # an accounting bug must not lose the event
            finished.append(capture.exchange)
    return finished


# Pickling dataclasses with slots goes through copyreg and is slow; tuples of plain
# values cross the pipe several times faster.  An attrgetter reads every field in C: a
# loop of getattr calls cost the event loop some 30,000 instructions a request (and
# dotted names, "exchange.x", a third more than two getters).
_EXCHANGE_FIELDS = tuple(f.name for f in dataclasses.fields(Exchange))
_BODY_FIELDS = ("request_body", "response_chunks")
_CAPTURE_FIELDS = tuple(f.name for f in dataclasses.fields(Capture) if f.name not in ("exchange", *_BODY_FIELDS))
_pack_exchange: Callable[[Exchange], tuple[Any, ...]] = operator.attrgetter(*_EXCHANGE_FIELDS)
_pack_capture_own: Callable[[Capture], tuple[Any, ...]] = operator.attrgetter(*_CAPTURE_FIELDS)

# One capture on the wire: its exchange's fields, its own, and how many response chunks
# it holds; the bodies themselves travel apart (see pack_captures).
Packed = tuple[tuple[Any, ...], tuple[Any, ...], int]


def pack_captures(captures: list[Capture]) -> tuple[list[Packed], list[int], list[bytes]]:
    """The captures' fields as tuples, the sizes of their bodies, and the bodies.

    The bodies (request, then response chunks, per capture) are most of a batch's
    bytes.  Pickled, they were copied into a fresh buffer of a few hundred KB on the
    event loop, and that buffer copied again into the socket; sent as they are, behind
    the pickle, the kernel's copy is the only one.
    """
    packed: list[Packed] = []
    bodies: list[bytes] = []
    for capture in captures:
        chunks = capture.response_chunks
        packed.append((_pack_exchange(capture.exchange), _pack_capture_own(capture), len(chunks)))
        bodies.append(capture.request_body)
        bodies.extend(chunks)
    return packed, [len(body) for body in bodies], bodies


def unpack_captures(packed: list[Packed], sizes: list[int], blob: bytes) -> list[Capture]:
    """``pack_captures`` undone, the bodies cut from ``blob`` (all of them, end to end)."""
    view = memoryview(blob)
    position = 0
    next_size = iter(sizes).__next__
    captures = []
    for exchange, own, count in packed:
        pieces = []
        for _ in range(count + 1):
            end = position + next_size()
            pieces.append(bytes(view[position:end]))
            position = end
        captures.append(Capture(Exchange(*exchange), pieces[0], pieces[1:], *own))
    return captures


@dataclasses.dataclass(slots=True)
class Finished:
    """One batch, accounted: what the event loop's side still has to hand on."""

    lines: list[bytes]  # rendered ``llm.request`` lines, for the log sink's writer
    unrendered: list[Exchange]  # the few whose line failed to render: the log sink tries
    exchanges: list[Exchange]  # all of them, but only when a sink takes exchanges
    tally: Tally  # the batch's figures for statistics, breakdown and Prometheus
    statsd: list[bytes] | None  # DogStatsD lines, when StatsD is on; None: not rendered

    @classmethod
    def inline(cls, exchanges: list[Exchange]) -> Finished:
        """Exchanges accounted in this process: the sinks render them themselves."""
        return cls([], exchanges, exchanges, Tally.of(exchanges), None)


def finish_batch(
    accountant: Accountant,
    renderer: LineRenderer,
    captures: list[Capture],
    *,
    exchanges: bool,
    statsd: StatsdLines | None = None,
) -> tuple[Any, ...]:
    """In the child: account for a batch, render each log line (and StatsD's lines),
    sum the figures.  The answer is :class:`Finished`'s fields, exchanges as flat tuples.
    """
    finished = finish_all(accountant, captures)
    lines: list[bytes] = []
    unrendered = []
    for exchange in finished:
        try:
            lines.append(renderer.render(exchange))
        except Exception:
            unrendered.append(_pack_exchange(exchange))
    every = [_pack_exchange(exchange) for exchange in finished] if exchanges else []
    statsd_lines = None
    if statsd is not None:
        statsd_lines = []
        for exchange in finished:
            try:
                statsd_lines.extend(line.encode("utf-8") for line in statsd.render(exchange))
            except Exception:  # one bad record must not cost the batch its metrics
                pass
    return lines, unrendered, every, Tally.of(finished), statsd_lines


def unpack_finished(answer: tuple[Any, ...]) -> Finished:
    lines, unrendered, every, tally, statsd = answer
    return Finished(lines, [Exchange(*v) for v in unrendered], [Exchange(*v) for v in every], tally, statsd)


def child_main(fd: int) -> None:
    """``python -m pulse_proxy.worker FD``: the first frame is the settings (and whether
    the parent wants exchanges back), then batches."""
    # Ctrl-C reaches the whole process group; the parent decides when we stop.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    conn = Connection(fd)
    start = orjson.loads(conn.recv_bytes())
    settings = Settings.model_validate(start["settings"])
    exchanges: bool = start["exchanges"]
    accountant = build_accountant(settings)
    renderer = LineRenderer(settings.server.log_format)
    statsd = StatsdLines.from_settings(settings.statsd) if settings.statsd.enabled else None
    # Take everything alive so far out of the cyclic collector's sight, and collect the
    # youngest generation less often: per request this process allocates thousands of
    # short-lived acyclic objects that reference counting frees anyway (as the parent).
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)
    while True:
        try:
            data = conn.recv_bytes()
        except (EOFError, OSError):
            return  # the parent is gone
        if data == _STOP:
            conn.send_bytes(_STOP)
            return
        seq, packed, sizes = pickle.loads(data)
        try:
            blob = conn.recv_bytes()  # the batch's bodies, in the frame after its fields
        except (EOFError, OSError):
            return
        captures = unpack_captures(packed, sizes, blob)
        answer = finish_batch(accountant, renderer, captures, exchanges=exchanges, statsd=statsd)
        conn.send_bytes(pickle.dumps((seq, answer), protocol=5))


def _frame_header(size: int) -> bytes:
    """multiprocessing.Connection's framing, which the child reads with recv_bytes."""
    return struct.pack("!i", size) if size < 0x7FFFFFFF else struct.pack("!iQ", -1, size)


class _ChildLink(asyncio.Protocol):
    """The parent's end of the pipe, on the event loop: no threads, no blocking.

    Frames are ``multiprocessing.Connection``'s (a 4-byte big-endian length, or -1 and
    an 8-byte length), so the child can use the plain blocking ``Connection`` API.
    """

    def __init__(self, owner: AccountingProcess, generation: int) -> None:
        self._owner = owner
        self._generation = generation
        self._buffer = bytearray()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def send(self, payload: bytes) -> None:
        assert self.transport is not None
        self.transport.writelines((_frame_header(len(payload)), payload))

    def send_batch(self, seq: int, captures: list[Capture]) -> None:
        """Two frames: the captures' fields, pickled, then their bodies end to end,
        handed to the transport as they are (one ``writev``, no copy on the loop)."""
        assert self.transport is not None
        packed, sizes, bodies = pack_captures(captures)
        fields = pickle.dumps((seq, packed, sizes), protocol=5)
        self.transport.writelines((_frame_header(len(fields)), fields, _frame_header(sum(sizes)), *bodies))

    def data_received(self, data: bytes) -> None:
        buffer = self._buffer
        buffer += data
        while len(buffer) >= 4:
            (size,) = struct.unpack_from("!i", buffer)
            start = 4
            if size == -1:
                if len(buffer) < 12:
                    return
                (size,) = struct.unpack_from("!Q", buffer, 4)
                start = 12
            if len(buffer) < start + size:
                return
            payload = bytes(buffer[start : start + size])
            del buffer[: start + size]
            if payload != _STOP:
                seq, answer = pickle.loads(payload)
                self._owner._results(seq, unpack_finished(answer))

    def connection_lost(self, exc: Exception | None) -> None:
        self._owner._child_gone(self._generation)


class AccountingProcess:
    def __init__(
        self,
        settings: Settings,
        deliver: Callable[[Finished], None],
        fallback: Accountant,
        *,
        logger: Any,
        exchanges: bool,
    ) -> None:
        """``exchanges``: whether results must carry the exchanges themselves (some sink
        takes them one by one) or only their log lines and figures."""
        # Captures wait this long to travel together (``accounting.batch_ms``): each
        # batch costs both processes a wake-up, a few system calls and a pickle round
        # trip, and the event loop one merge of figures per model, whatever its size.
        self._batch_delay_s = settings.accounting.batch_ms / 1000.0
        self._start_frame = orjson.dumps({"settings": settings.model_dump(mode="json"), "exchanges": exchanges})
        self._deliver = deliver
        self._fallback = fallback
        self._log = logger
        self._loop: asyncio.AbstractEventLoop | None = None
        self._link: _ChildLink | None = None
        self._batch: list[Capture] = []
        self._flush_scheduled = False
        self._seq = itertools.count()
        self._pending: dict[int, list[Capture]] = {}
        self._drained = asyncio.Event()
        self._stopping = False
        self._generation = 0
        self.restarts = 0

    # -- lifecycle ----------------------------------------------------------------

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        await self._spawn()

    async def _spawn(self) -> None:
        # A fork sharing this process's memory (see forkchild), not multiprocessing's
        # spawn, which would re-import the caller's __main__ (breaking any embedding
        # script without a main guard) and every library again.
        assert self._loop is not None
        parent_sock, child_sock = socket.socketpair()
        self._process = start_child(child_sock.fileno(), child_main)
        child_sock.close()
        self._generation += 1
        generation = self._generation
        _, self._link = await self._loop.create_connection(lambda: _ChildLink(self, generation), sock=parent_sock)
        self._link.send(self._start_frame)
        for seq in sorted(self._pending):  # batches a dead child never answered
            self._link.send_batch(seq, self._pending[seq])

    async def stop(self, timeout: float) -> None:
        """Finish everything submitted, then stop the child."""
        self._stopping = True
        self._flush()
        if self._pending:
            self._drained.clear()
            try:
                await asyncio.wait_for(self._drained.wait(), timeout)
            except asyncio.TimeoutError:
                self._finish_inline()
        if self._link is not None and self._link.transport is not None:
            self._link.send(_STOP)
        try:
            await asyncio.to_thread(self._process.wait, 5)
        except subprocess.TimeoutExpired:
            self._process.kill()
        if self._link is not None and self._link.transport is not None:
            self._link.transport.close()

    # -- the hot path's side: never blocks ----------------------------------------

    def submit(self, capture: Capture) -> None:
        self._batch.append(capture)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            assert self._loop is not None
            self._loop.call_later(self._batch_delay_s, self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        if not self._batch:
            return
        batch, self._batch = self._batch, []
        seq = next(self._seq)
        self._pending[seq] = batch
        if self._link is not None and self._link.transport is not None and not self._link.transport.is_closing():
            self._link.send_batch(seq, batch)

    # -- results, on the event loop --------------------------------------------------

    def _results(self, seq: int, finished: Finished) -> None:
        if self._pending.pop(seq, None) is None:
            return  # already finished in-process
        self._deliver(finished)
        if not self._pending:
            self._drained.set()

    def _finish_inline(self) -> None:
        for seq in sorted(self._pending):
            self._deliver(Finished.inline(finish_all(self._fallback, self._pending.pop(seq))))
        self._drained.set()

    def _child_gone(self, generation: int) -> None:
        if generation != self._generation:
            return
        if self._stopping:
            self._finish_inline()
            return
        self.restarts += 1
        self._log.error("pulse.accounting_worker_restarted", exitcode=self._process.poll())
        assert self._loop is not None
        self._loop.create_task(self._spawn())


if __name__ == "__main__":
    child_main(int(sys.argv[1]))
