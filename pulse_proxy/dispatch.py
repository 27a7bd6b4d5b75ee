"""Fan-out of finished requests to accounting and the sinks, off the request path.

The hot path only ever calls :meth:`Dispatcher.submit`, which never blocks.  With a
:class:`~pulse_proxy.worker.AccountingProcess` (the default) captures are finished in
a child process; without one (``accounting.mode: inline``) a background task finishes
them in order.  Either way each :class:`Exchange` then goes to every observer and
sink in turn; a sink that raises is logged and the others still get the record
(mitmproxy's ``safecall``).  ``stop`` drains everything so a graceful shutdown loses
no event.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any

from pulse_proxy.accounting import Accountant
from pulse_proxy.forward import Capture
from pulse_proxy.records import AlertEvent, Exchange
from pulse_proxy.settings import Settings
from pulse_proxy.sinks import Sink
from pulse_proxy.sinks.log import LogSink
from pulse_proxy.worker import AccountingProcess


class Dispatcher:
    def __init__(
        self,
        accountant: Accountant,
        sinks: Sequence[Sink],
        *,
        logger: Any,
        settings: Settings,
        process: bool = True,
        max_pending: int = 100_000,
        observers: Sequence[Callable[[Exchange], None]] = (),
    ) -> None:
        self._accountant = accountant
        self.sinks = list(sinks)
        self._observers = list(observers)
        self._log = logger
        self._queue: asyncio.Queue[Capture | None] = asyncio.Queue(max_pending)
        self._task: asyncio.Task[None] | None = None
        self.dropped = 0
        self.processed = 0
        self._log_sink = next((sink for sink in self.sinks if isinstance(sink, LogSink)), None)
        self.worker: AccountingProcess | None = None
        if process:
            self.worker = AccountingProcess(settings, self.deliver, accountant, logger=logger)

    def submit(self, capture: Capture) -> None:
        if self.worker is not None:
            self.worker.submit(capture)
            return
        try:
            self._queue.put_nowait(capture)
        except asyncio.QueueFull:
            self.dropped += 1

    async def start(self) -> None:
        if self.worker is not None:
            await self.worker.start()
            return
        self._task = asyncio.create_task(self._run(), name="pulse-dispatcher")

    def deliver(self, finished: list[tuple[Exchange, bytes | None]]) -> None:
        """Hand finished exchanges to observers and sinks, each taking the whole batch
        in turn; a line the accounting process already rendered goes straight to the
        log sink's writer."""
        exchanges = [exchange for exchange, _ in finished]
        self.processed += len(exchanges)
        for observer in self._observers:
            self._each(observer, exchanges)
        log_sink = self._log_sink
        for sink in self.sinks:
            if sink is log_sink:
                self._log_batch(log_sink, finished)
            else:
                self._each(sink.on_exchange, exchanges)

    def _log_batch(self, log_sink: LogSink, finished: list[tuple[Exchange, bytes | None]]) -> None:
        lines = [line for _, line in finished if line is not None]
        if lines:
            # One hand-over to the writer thread per batch, not per line: each wakes
            # that thread, which then contends for the GIL with the event loop.
            self._safe(log_sink.write_rendered, b"\n".join(lines))
        if len(lines) < len(finished):
            self._each(log_sink.on_exchange, [ex for ex, line in finished if line is None])

    async def stop(self, timeout: float = 30.0) -> None:
        if self.worker is not None:
            await self.worker.stop(timeout)
            return
        if self._task is None:
            return
        self._queue.put_nowait(None)
        try:
            await asyncio.wait_for(self._task, timeout)
        except asyncio.TimeoutError:
            self._task.cancel()
        self._task = None

    async def idle(self) -> None:
        """Wait until every submitted capture has reached the sinks (tests, shutdown)."""
        await self._queue.join()

    async def _run(self) -> None:
        while True:
            capture = await self._queue.get()
            try:
                if capture is None:
                    return
                try:
                    exchange = await self._accountant.finish(capture)
                except Exception as exc:  # accounting bugs must not lose the event
                    self._log.error("pulse.accounting_failed", error_type=type(exc).__name__)
                    exchange = capture.exchange
                self.deliver([(exchange, None)])
            finally:
                self._queue.task_done()

    def publish_alert(self, alert: AlertEvent) -> None:
        for sink in self.sinks:
            self._safe(sink.on_alert, alert)

    def _each(self, call: Callable[[Any], None], records: list[Any]) -> None:
        """``call`` for every record, with one ``try`` for the whole batch: a record
        that raises is logged and skipped, and the rest still get through."""
        remaining = iter(records)
        while True:
            try:
                for record in remaining:
                    call(record)
                return
            except Exception as exc:
                self._failed(call, exc)

    def _safe(self, call: Callable[[Any], None], record: Any) -> None:
        try:
            call(record)
        except Exception as exc:
            self._failed(call, exc)

    def _failed(self, call: Callable[[Any], None], exc: Exception) -> None:
        self._log.error(
            "pulse.sink_failed",
            sink=getattr(call, "__qualname__", repr(call)),
            error_type=type(exc).__name__,
        )
