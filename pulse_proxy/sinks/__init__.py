"""Where finished records go.  Every sink has the same small shape.

Sinks are called by the dispatcher off the request path, one accounted
:class:`~pulse_proxy.records.Batch` at a time, and take from it what they need: the
log sink its rendered lines, StatsD its rendered lines when they were rendered, the
others the exchanges.  They must not block: anything slow (a socket, an HTTP call)
queues and works in the background.  A sink that raises is logged and skipped; the
others carry on.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, Protocol, TypeVar

from pulse_proxy.records import AlertEvent, Batch, Exchange

# What a batch carries already rendered: "lines" (the ``llm.request`` log lines)
# always, "statsd" (DogStatsD lines) when StatsD is configured on.
Rendered = frozenset[str]

T = TypeVar("T")


class Sink(Protocol):
    def takes_exchanges(self, rendered: Rendered) -> bool:
        """Whether :meth:`write` needs ``batch.exchanges``, given what batches carry
        rendered: when no sink does, the accounting process need not send them back."""
        ...

    def write(self, batch: Batch[Any]) -> None: ...

    def on_alert(self, alert: AlertEvent) -> None: ...

    async def aclose(self) -> None: ...


def write_each(call: Callable[[T], None], records: Iterable[T]) -> None:
    """``call`` for every record: one that raises does not keep the rest from the sink;
    the first error is raised at the end, for the dispatcher to log."""
    error: Exception | None = None
    for record in records:
        try:
            call(record)
        except Exception as exc:  # noqa: BLE001 - re-raised below, after the others
            error = error or exc
    if error is not None:
        raise error


class ListSink:
    """Keeps what it is given; for tests and for embedding LLM Pulse in-process."""

    def __init__(self) -> None:
        self.exchanges: list[Exchange] = []
        self.alerts: list[AlertEvent] = []

    def takes_exchanges(self, rendered: Rendered) -> bool:
        return True

    def write(self, batch: Batch[Any]) -> None:
        self.exchanges.extend(batch.exchanges)

    def on_exchange(self, exchange: Exchange) -> None:
        self.exchanges.append(exchange)

    def on_alert(self, alert: AlertEvent) -> None:
        self.alerts.append(alert)

    async def aclose(self) -> None:
        return None
