"""Where finished records go.  Every sink has the same small shape.

Sinks are called by the dispatcher off the request path, one record at a time, and
must not block: anything slow (a socket, an HTTP call) queues and works in the
background.  A sink that raises is logged and skipped; the others carry on.
"""

from __future__ import annotations

from typing import Protocol

from pulse_proxy.records import AlertEvent, Exchange


class Sink(Protocol):
    """A sink that only wants alerts says so with ``takes_exchanges = False``: then the
    accounting process need not send exchanges back to the event loop at all."""

    def on_exchange(self, exchange: Exchange) -> None: ...

    def on_alert(self, alert: AlertEvent) -> None: ...

    async def aclose(self) -> None: ...


class ListSink:
    """Keeps what it is given; for tests and for embedding LLM Pulse in-process."""

    def __init__(self) -> None:
        self.exchanges: list[Exchange] = []
        self.alerts: list[AlertEvent] = []

    def on_exchange(self, exchange: Exchange) -> None:
        self.exchanges.append(exchange)

    def on_alert(self, alert: AlertEvent) -> None:
        self.alerts.append(alert)

    async def aclose(self) -> None:
        return None
