"""Fan-out of finished requests to accounting and the sinks, off the request path.

The hot path only ever calls :meth:`Dispatcher.submit`, which never blocks.  With a
:class:`~pulse_proxy.worker.AccountingProcess` (the default) captures are finished in
a child process; without one (``accounting.mode: inline``) a background task finishes
them in order.  Either way each batch comes back as a
:class:`~pulse_proxy.records.Batch`: its :class:`~pulse_proxy.tally.Tally` goes to
every *figure* (statistics, breakdown, Prometheus), its rendered lines to the log
sink, and its exchanges to every sink that takes them one by one.  A sink that raises
is logged and the others still get the record (mitmproxy's ``safecall``).  ``stop``
drains everything so a graceful shutdown loses no event.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any

from pulse_proxy.accounting import Accountant
from pulse_proxy.records import AlertEvent, Batch, Capture
from pulse_proxy.settings import Settings
from pulse_proxy.sinks import Sink
from pulse_proxy.sinks.log import LogSink
from pulse_proxy.sinks.statsd import StatsdSink
from pulse_proxy.tally import Tally
from pulse_proxy.worker import AccountingProcess, accounted_here


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
        figures: Sequence[Callable[[Tally], None]] = (),
    ) -> None:
        """``sinks`` all get alerts; those that take exchanges get each request's too.
        ``figures`` get each batch's :class:`Tally`."""
        self._accountant = accountant
        self.sinks = list(sinks)
        self._figures = list(figures)
        self._log = logger
        self._queue: asyncio.Queue[Capture | None] = asyncio.Queue(max_pending)
        self._task: asyncio.Task[None] | None = None
        self.dropped = 0
        self.processed = 0
        self._log_sink = next((sink for sink in self.sinks if isinstance(sink, LogSink)), None)
        self._statsd = next((sink for sink in self.sinks if isinstance(sink, StatsdSink)), None)
        # The log sink gets lines rendered in the accounting process instead, and so
        # does StatsD when it is configured on (the process renders for that config).
        child_statsd = process and settings.statsd.enabled
        rendered = (self._log_sink, self._statsd) if child_statsd else (self._log_sink,)
        self._exchange_sinks = [
            sink
            for sink in self.sinks
            if sink not in rendered and getattr(sink, "takes_exchanges", True)
        ]
        self.worker: AccountingProcess | None = None
        if process:
            self.worker = AccountingProcess(
                settings, self.deliver, accountant, logger=logger, exchanges=bool(self._exchange_sinks)
            )

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

    def deliver(self, finished: Batch) -> None:
        """Hand one accounted batch on: figures first, then the log, then other sinks."""
        self.processed += finished.figures.count
        if finished.figures.failed:
            self._log.error("pulse.figures_failed", records=finished.figures.failed)
        for figure in self._figures:
            self._safe(figure, finished.figures)
        log_sink = self._log_sink
        if log_sink is not None:
            if finished.lines:
                # One hand-over to the writer thread per batch, not per line: each wakes
                # that thread, which then contends for the GIL with the event loop.
                self._safe(log_sink.write_rendered, b"\n".join(finished.lines))
            if finished.unrendered:
                self._each(log_sink.on_exchange, finished.unrendered)
        statsd = self._statsd
        if statsd is not None:
            if finished.statsd is not None:
                self._safe(statsd.write_rendered, finished.statsd)
            elif statsd not in self._exchange_sinks:  # accounted here after all (shutdown)
                self._each(statsd.on_exchange, finished.exchanges)
        for sink in self._exchange_sinks:
            self._each(sink.on_exchange, finished.exchanges)

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
                self.deliver(accounted_here([exchange]))
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
