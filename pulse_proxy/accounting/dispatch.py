"""Fan-out of finished requests to accounting and the sinks, off the request path.

The hot path only ever calls ``Dispatcher.submit``, which never blocks.  Captures
are accounted by an :class:`~pulse_proxy.accounting.process.AccountingProcess` (the default) or,
with ``accounting.mode: inline``, by its in-process stand-in
:class:`~pulse_proxy.accounting.process.InlineAccounting`; either way each batch comes back as a
:class:`~pulse_proxy.records.Batch`, made by the one
:class:`~pulse_proxy.accounting.process.Assembler`.  Its figures go to every *figure*
(statistics, breakdown, Prometheus), and the batch itself to every sink's ``write``,
which takes what it needs.  A sink that raises is logged and the others still get the
batch (mitmproxy's ``safecall``).  ``stop`` drains everything so a graceful shutdown
loses no event.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from pulse_proxy.accounting.finish import Accountant
from pulse_proxy.accounting.process import AccountingProcess, InlineAccounting
from pulse_proxy.records import AlertEvent, Batch, Capture
from pulse_proxy.settings import Settings
from pulse_proxy.sinks import Sink
from pulse_proxy.stats.tally import Tally


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
        """``sinks`` get every batch and every alert; ``figures`` each batch's :class:`Tally`."""
        self.sinks = list(sinks)
        self._figures = list(figures)
        self._log = logger
        self.processed = 0
        # Log lines are always rendered where the batch is made, StatsD's when it is on.
        rendered = frozenset({"lines", "statsd"} if settings.statsd.enabled else {"lines"})
        exchanges = any(sink.takes_exchanges(rendered) for sink in self.sinks)
        self.worker: AccountingProcess | None = None
        self._accounting: AccountingProcess | InlineAccounting
        if process:
            self.worker = self._accounting = AccountingProcess(
                settings, self.deliver, accountant, logger=logger, exchanges=exchanges
            )
        else:
            self._accounting = InlineAccounting(
                settings,
                self.deliver,
                accountant,
                logger=logger,
                exchanges=exchanges,
                max_pending=max_pending,
            )
        # Bound directly: the request path calls it once per request.
        self.submit: Callable[[Capture], None] = self._accounting.submit

    @property
    def dropped(self) -> int:
        """Captures accounting had no room for."""
        return self._accounting.dropped

    async def start(self) -> None:
        await self._accounting.start()

    async def stop(self, timeout: float = 30.0) -> None:
        await self._accounting.stop(timeout)

    def deliver(self, batch: Batch[Tally]) -> None:
        """Hand one accounted batch on: figures first, then every sink."""
        figures: Tally = batch.figures
        self.processed += figures.count
        if figures.failed:
            self._log.error("pulse.figures_failed", records=figures.failed)
        for figure in self._figures:
            self._safe(figure, figures)
        for sink in self.sinks:
            self._safe(sink.write, batch)

    def publish_alert(self, alert: AlertEvent) -> None:
        for sink in self.sinks:
            self._safe(sink.on_alert, alert)

    def _safe(self, call: Callable[[Any], None], record: Any) -> None:
        try:
            call(record)
        except Exception as exc:  # noqa: BLE001 - logged; the other sinks still get it
            self._log.error(
                "pulse.sink_failed",
                sink=getattr(call, "__qualname__", repr(call)),
                error_type=type(exc).__name__,
            )
