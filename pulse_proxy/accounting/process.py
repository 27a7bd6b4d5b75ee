"""Accounting in a child process, so the event loop never pays for it.

Finishing a request costs far more than relaying it: JSON parsing, tiktoken counting,
usage extraction and above all the risk scan (regular expressions hold the GIL, so a
thread does not help; a 100,000-token prompt takes tens of milliseconds).  In the
proxy's process that time would be stolen from every request in flight.  So captures
are gathered for a few milliseconds, encoded (:class:`~pulse_proxy.records.Codec`), and written to a child process on the
other core through a non-blocking socket.  What comes back to the event loop is only
what it must still do something with: the rendered log lines, the batch's figures
summed into one :class:`~pulse_proxy.stats.tally.Tally`, StatsD's lines when it is on, and
the exchanges themselves only when a sink takes them one by one (OpenTelemetry, an
embedding's own sink).

Nothing is lost: every batch stays pending until its results return; if the child
dies a new one is started (with exponential back-off) and given the pending batches
again (on shutdown they are finished in-process instead).  The batch the child was
accounting when it died is resent one capture at a time; a capture in the child's
hands at a second death is taken to be what kills it: it is quarantined, accounted
here with its bodies dropped, so that one poisonous request cannot keep the child in a
crash loop, nor cost its batch mates their usage.

The backlog (captures waiting or unanswered) is bounded by
``accounting.max_pending_requests`` and ``accounting.max_pending_bytes``, so that a
stalled child costs accuracy rather than memory: past the byte bound a capture's
bodies are dropped before it is queued, past the count bound it is accounted here from
its headers alone.  Either way its event is still written, with ``usage_unread`` saying
why tokens and cost are missing, and :attr:`AccountingProcess.degraded` counts it.
"""

from __future__ import annotations

import asyncio
import gc
import itertools
import os
import signal
import socket
import struct
import subprocess
import sys
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any

import orjson

from pulse_proxy.accounting.finish import Accountant
from pulse_proxy.accounting.forkchild import Child, start_child
from pulse_proxy.backoff import Backoff
from pulse_proxy.records import Batch, BatchKey, Capture, Codec, Exchange, UsageUnread
from pulse_proxy.settings import Settings
from pulse_proxy.sinks.log import LineRenderer
from pulse_proxy.sinks.statsd import StatsdLines
from pulse_proxy.stats.tally import Tally

# Captures to the child, and batches with their figures (a Tally) back.
CODEC = Codec(batch=Batch[Tally])
_STOP = b"stop"
# A capture in the child's hands when it died this many times is quarantined.
_QUARANTINE_AFTER_DEATHS = 2
# Seconds to wait for a child whose socket closed to be reaped.
_REAP_TIMEOUT_S = 5.0

# A pending batch's key (records.BatchKey): the flush's number, then 0, or 1, 2, … for
# the single-capture batches a suspect batch is split into.  Keys sort in the order the
# child answers.


def build_accountant(settings: Settings) -> Accountant:
    """The accounting step with its pricing and risk functions (parent and child alike)."""
    from pulse_proxy import risk
    from pulse_proxy.accounting.pricing import PriceTable
    from pulse_proxy.accounting.screening import flagger

    prices = PriceTable.load(settings.pricing.files)
    return Accountant(
        settings, cost=prices.exchange_cost, risk=flagger(settings.risk), redact=risk.mask
    )


def finish_all(accountant: Accountant, captures: list[Capture]) -> list[Exchange]:
    finished = []
    for capture in captures:
        try:
            finished.append(accountant.finish_sync(capture))
        except Exception:  # noqa: BLE001 - an accounting bug must not lose the event
            finished.append(capture.exchange)
    return finished


class Assembler:
    """Accounted exchanges into a :class:`~pulse_proxy.records.Batch`: their log lines,
    their StatsD lines (when StatsD is on: its label values are bounded here, in the
    process that accounts), their figures summed, and the exchanges themselves only when
    a sink takes them.  The one way batches are made, in the accounting process and in
    the proxy alike (inline accounting, or what the child could not take)."""

    def __init__(self, settings: Settings, *, exchanges: bool) -> None:
        self._renderer = LineRenderer(settings.server.log_format)
        self._statsd = (
            StatsdLines.from_settings(settings.statsd) if settings.statsd.enabled else None
        )
        self._exchanges = exchanges

    def assemble(self, finished: list[Exchange]) -> Batch[Tally]:
        lines: list[bytes] = []
        unrendered = []
        for exchange in finished:
            try:
                lines.append(self._renderer.render(exchange))
            except Exception:  # noqa: BLE001 - the log sink tries again, in the proxy
                unrendered.append(exchange)
        statsd_lines: list[bytes] | None = None
        if self._statsd is not None:
            statsd_lines = []
            for exchange in finished:
                try:  # noqa: SIM105 - per record, where suppress() costs a context manager
                    statsd_lines.extend(
                        line.encode("utf-8") for line in self._statsd.render(exchange)
                    )
                except Exception:  # noqa: BLE001, S110 - per record: one bad record must not cost the batch its metrics
                    pass
        return Batch(
            lines, unrendered, finished if self._exchanges else [], Tally.of(finished), statsd_lines
        )


def drop_bodies(capture: Capture, reason: UsageUnread) -> None:
    """Forget what accounting would have read, keeping what the hot path measured."""
    capture.request_body = b""
    capture.response_chunks = []
    capture.captured_bytes = 0
    capture.exchange.usage_unread = reason


def child_main(fd: int, *, crash_on_request_id: str | None = None) -> None:
    """``python -m pulse_proxy.accounting.process FD``: the first frame is the settings (and whether
    the parent wants exchanges back), then batches.

    ``crash_on_request_id`` is a test hook: the child exits, as a crash would, when a
    batch holds a request with that id (see the ``__main__`` block)."""
    # Ctrl-C reaches the whole process group; the parent decides when we stop.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    conn = Connection(fd)
    start = orjson.loads(conn.recv_bytes())
    settings = Settings.model_validate(start["settings"])
    accountant = build_accountant(settings)
    assembler = Assembler(settings, exchanges=start["exchanges"])
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
        try:
            blob = conn.recv_bytes()  # the batch's bodies, in the frame after its fields
        except (EOFError, OSError):
            return
        seq, captures = CODEC.decode_captures(data, blob)
        if crash_on_request_id is not None and any(
            c.exchange.request_id == crash_on_request_id for c in captures
        ):
            os._exit(70)
        batch = assembler.assemble(finish_all(accountant, captures))
        conn.send_bytes(CODEC.encode_batch(seq, batch))


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

    def send_batch(self, seq: BatchKey, captures: list[Capture]) -> None:
        """Two frames: the captures' fields, encoded, then their bodies end to end,
        handed to the transport as they are (one ``writev``, no copy on the loop)."""
        assert self.transport is not None
        fields, sizes, bodies = CODEC.encode_captures(seq, captures)
        self.transport.writelines(
            (_frame_header(len(fields)), fields, _frame_header(sum(sizes)), *bodies)
        )

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
                self._owner._results(*CODEC.decode_batch(payload))

    def connection_lost(self, exc: Exception | None) -> None:
        self._owner._child_gone(self._generation)


class AccountingProcess:
    def __init__(
        self,
        settings: Settings,
        deliver: Callable[[Batch[Tally]], None],
        fallback: Accountant,
        *,
        logger: Any,
        exchanges: bool,
        backoff: Backoff | None = None,
    ) -> None:
        """``exchanges``: whether results must carry the exchanges themselves (some sink
        takes them one by one) or only their log lines and figures."""
        # Captures wait this long to travel together (``accounting.batch_ms``): each
        # batch costs both processes a wake-up, a few system calls and an encoding round
        # trip, and the event loop one merge of figures per model, whatever its size.
        self._batch_delay_s = settings.accounting.batch_ms / 1000.0
        self._max_requests = settings.accounting.max_pending_requests
        self._max_bytes = settings.accounting.max_pending_bytes
        self._start_frame = orjson.dumps(
            {"settings": settings.model_dump(mode="json"), "exchanges": exchanges}
        )
        self._deliver = deliver
        self._fallback = fallback
        # Batches the child cannot take (backlog, quarantine, shutdown) are made here,
        # the same way.
        self._assembler = Assembler(settings, exchanges=exchanges)
        self._log = logger
        self._loop: asyncio.AbstractEventLoop | None = None
        self._link: _ChildLink | None = None
        self._process: Child | None = None
        self._batch: list[Capture] = []
        self._batch_bytes = 0
        self._headers_only: list[Capture] = []
        self._flush_scheduled = False
        self._seq = itertools.count()
        self._pending: dict[BatchKey, list[Capture]] = {}
        self._pending_bytes: dict[BatchKey, int] = {}
        # The backlog: captures batched or pending, and their bodies' bytes.
        self._backlog_requests = 0
        self._backlog_bytes = 0
        self._backlog_full = False
        self._deaths: dict[BatchKey, int] = {}  # pending batch -> children that died on it
        self._drained = asyncio.Event()
        self._stopping = False
        self._generation = 0
        self._backoff = backoff or Backoff(first_s=0.1, max_s=10.0, healthy_s=30.0)
        self._respawn: asyncio.Task[None] | None = None
        self.restarts = 0
        self.dropped = 0  # never: past its bounds the backlog degrades, it does not drop
        # Requests accounted with less than their bodies, by stage (see the module doc).
        self.degraded = {"bodies_dropped": 0, "headers_only": 0, "quarantined": 0}

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
        try:
            self._process = start_child(child_sock.fileno(), _forked_child_main)
        except BaseException:
            parent_sock.close()
            raise
        finally:
            child_sock.close()
        self._generation += 1
        generation = self._generation
        _, self._link = await self._loop.create_connection(
            lambda: _ChildLink(self, generation), sock=parent_sock
        )
        self._backoff.started()
        self._link.send(self._start_frame)
        for seq in sorted(self._pending):  # batches a dead child never answered
            self._link.send_batch(seq, self._pending[seq])

    async def stop(self, timeout: float) -> None:
        """Finish everything submitted, then stop the child."""
        self._stopping = True
        if self._respawn is not None:
            self._respawn.cancel()
        self._flush()
        if self._pending and not self._link_open():
            self._finish_inline()  # no child to wait for (it died, its successor waits)
        elif self._pending:
            self._drained.clear()
            try:
                await asyncio.wait_for(self._drained.wait(), timeout)
            except TimeoutError:
                self._finish_inline()
        if self._link_open():
            assert self._link is not None
            self._link.send(_STOP)
        if self._process is not None:
            try:
                await asyncio.to_thread(self._process.wait, 5)
            except subprocess.TimeoutExpired:
                self._process.kill()
        if self._link is not None and self._link.transport is not None:
            self._link.transport.close()

    def _link_open(self) -> bool:
        link = self._link
        return link is not None and link.transport is not None and not link.transport.is_closing()

    # -- the hot path's side: never blocks ----------------------------------------

    def submit(self, capture: Capture) -> None:
        if self._backlog_requests >= self._max_requests:
            # Not even a body-less capture fits: account it here, from its headers.
            drop_bodies(capture, "backlog")
            self._headers_only.append(capture)
            self._degrade("headers_only")
        else:
            size = len(capture.request_body) + capture.captured_bytes
            if size and self._backlog_bytes + size > self._max_bytes:
                drop_bodies(capture, "backlog")
                size = 0
                self._degrade("bodies_dropped")
            self._batch.append(capture)
            self._batch_bytes += size
            self._backlog_requests += 1
            self._backlog_bytes += size
        if not self._flush_scheduled:
            self._flush_scheduled = True
            assert self._loop is not None
            self._loop.call_later(self._batch_delay_s, self._flush)

    def _degrade(self, stage: str) -> None:
        self.degraded[stage] += 1
        if not self._backlog_full:
            self._backlog_full = True
            self._log.warning(
                "pulse.accounting_backlog_full",
                pending_requests=self._backlog_requests,
                pending_bytes=self._backlog_bytes,
                max_pending_requests=self._max_requests,
                max_pending_bytes=self._max_bytes,
            )

    def _flush(self) -> None:
        self._flush_scheduled = False
        if self._headers_only:
            captures, self._headers_only = self._headers_only, []
            self._deliver(self._assembler.assemble(finish_all(self._fallback, captures)))
        if not self._batch:
            return
        batch, self._batch = self._batch, []
        seq = (next(self._seq), 0)
        self._pending[seq] = batch
        self._pending_bytes[seq] = self._batch_bytes
        self._batch_bytes = 0
        if self._link_open():
            assert self._link is not None
            self._link.send_batch(seq, batch)

    # -- results, on the event loop --------------------------------------------------

    def _settle(self, seq: BatchKey) -> list[Capture] | None:
        """Take a batch out of the backlog (answered, quarantined or finished here)."""
        batch = self._pending.pop(seq, None)
        if batch is None:
            return None
        self._backlog_requests -= len(batch)
        self._backlog_bytes -= self._pending_bytes.pop(seq)
        self._deaths.pop(seq, None)
        if not self._pending:
            self._drained.set()
        # Hysteresis: "full" is announced once per episode, not once per batch.
        if (
            self._backlog_full
            and self._backlog_requests <= self._max_requests // 2
            and self._backlog_bytes <= self._max_bytes // 2
        ):
            self._backlog_full = False
            self._log.info("pulse.accounting_backlog_cleared", degraded=dict(self.degraded))
        return batch

    def _results(self, seq: BatchKey, batch: Batch[Tally]) -> None:
        if self._settle(seq) is None:
            return  # already finished in-process
        self._deliver(batch)

    def _finish_inline(self) -> None:
        for seq in sorted(self._pending):
            batch = self._settle(seq)
            if batch is not None:
                self._deliver(self._assembler.assemble(finish_all(self._fallback, batch)))
        self._drained.set()

    def _quarantine(self, seq: BatchKey) -> None:
        """Account a batch that keeps killing the child here, without its bodies (what
        the child chokes on), so that its requests still get their events."""
        batch = self._settle(seq)
        if batch is None:
            return
        for capture in batch:
            drop_bodies(capture, "quarantined")
        self.degraded["quarantined"] += len(batch)
        self._log.error(
            "pulse.accounting_batch_quarantined",
            requests=len(batch),
            deaths=_QUARANTINE_AFTER_DEATHS,
        )
        self._deliver(self._assembler.assemble(finish_all(self._fallback, batch)))

    def _split(self, seq: BatchKey, deaths: int) -> None:
        """Resend a suspect batch one capture at a time, each charged with its deaths:
        the child answers the innocent ones, and the next death names the culprit, so
        quarantine costs only the request that kills the child, not its batch mates."""
        batch = self._pending[seq]
        if len(batch) == 1:
            self._deaths[seq] = deaths
            return
        del self._pending[seq]
        self._deaths.pop(seq, None)
        self._pending_bytes.pop(seq)
        for part, capture in enumerate(batch, start=1):
            key = (seq[0], part)
            self._pending[key] = [capture]
            self._pending_bytes[key] = len(capture.request_body) + capture.captured_bytes
            self._deaths[key] = deaths

    def _child_gone(self, generation: int) -> None:
        if generation != self._generation:
            return
        if self._stopping:
            self._finish_inline()
            return
        # The child answers batches in order, so the oldest unanswered one is the batch
        # it was accounting when it died.
        suspect = min(self._pending, default=None)
        if suspect is not None:
            deaths = self._deaths.get(suspect, 0) + 1
            if deaths >= _QUARANTINE_AFTER_DEATHS:
                self._quarantine(suspect)
            else:
                self._split(suspect, deaths)
        self.restarts += 1
        assert self._loop is not None
        self._respawn = self._loop.create_task(
            self._restart(self._process, self._backoff.next_delay())
        )

    async def _restart(self, dead: Child | None, delay: float) -> None:
        """Reap the dead child (no zombie), wait out the back-off, start a new one."""
        exitcode = None
        if dead is not None:
            try:
                exitcode = await asyncio.to_thread(dead.wait, _REAP_TIMEOUT_S)
            except subprocess.TimeoutExpired:  # its socket closed, yet it lives on
                dead.kill()
                exitcode = await asyncio.to_thread(dead.wait)
        while True:
            self._log.error(
                "pulse.accounting_worker_restarted",
                exitcode=exitcode,
                restarts=self.restarts,
                delay_s=delay,
                pending_requests=self._backlog_requests,
            )
            await asyncio.sleep(delay)
            if self._stopping:
                return
            try:
                await self._spawn()
                return
            except OSError as exc:  # no process or socket to be had right now
                self._log.error(
                    "pulse.accounting_worker_start_failed", error_type=type(exc).__name__
                )
                exitcode = None
                delay = self._backoff.next_delay()


class InlineAccounting:
    """The accounting process's stand-in for ``accounting.mode: inline``: the same
    interface, the same :class:`Assembler`, in a background task of the proxy's loop.
    Large bodies are still counted in a worker thread (:meth:`Accountant.finish`)."""

    def __init__(
        self,
        settings: Settings,
        deliver: Callable[[Batch[Tally]], None],
        accountant: Accountant,
        *,
        logger: Any,
        exchanges: bool,
        max_pending: int = 100_000,
    ) -> None:
        self._deliver = deliver
        self._accountant = accountant
        self._assembler = Assembler(settings, exchanges=exchanges)
        self._log = logger
        self._queue: asyncio.Queue[Capture | None] = asyncio.Queue(max_pending)
        self._task: asyncio.Task[None] | None = None
        self.dropped = 0

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="pulse-accounting")

    def submit(self, capture: Capture) -> None:
        try:
            self._queue.put_nowait(capture)
        except asyncio.QueueFull:
            self.dropped += 1

    async def stop(self, timeout: float) -> None:
        if self._task is None:
            return
        self._queue.put_nowait(None)
        try:
            await asyncio.wait_for(self._task, timeout)
        except TimeoutError:
            self._task.cancel()
        self._task = None

    async def _run(self) -> None:
        while True:
            capture = await self._queue.get()
            if capture is None:
                return
            try:
                exchange = await self._accountant.finish(capture)
            except Exception as exc:  # noqa: BLE001 - accounting bugs must not lose the event
                self._log.error("pulse.accounting_failed", error_type=type(exc).__name__)
                exchange = capture.exchange
            self._deliver(self._assembler.assemble([exchange]))


def _forked_child_main(fd: int) -> None:
    """The child's entry point, run in the child only (forked, or by ``__main__`` below).

    The one variable read here is a test hook that makes a batch poisonous, so that the
    crash loop's back-off and quarantine can be tested against a real process.  It is
    read only in the child (never by the proxy, never by settings) and does nothing
    unless set in the proxy's environment, which only the tests do: a client alone can
    never make the child exit, whatever X-Request-ID it sends."""
    child_main(fd, crash_on_request_id=os.environ.get("PULSE_TEST_CRASH_ON_REQUEST_ID") or None)


if __name__ == "__main__":
    _forked_child_main(int(sys.argv[1]))
