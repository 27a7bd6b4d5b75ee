"""A batch of finished requests, summed for the figures the proxy serves itself.

The statistics behind ``/pulse/stats`` and the alerts, the spend breakdown and the
Prometheus series need only counts, sums and sketches of what finished.  Adding each
exchange to them on the event loop would cost it a large share of what relaying the
request costs.  So the accounting process sums its batch
into a :class:`Tally` instead, and the event loop merges one part per model, label
tuple or user, however many requests the batch held.

The parts keep raw values (model names, users, labels): bounding them stays with the
figures on the loop, where one set of kept values lives as long as the process.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from pulse_proxy.records import Exchange
from pulse_proxy.sinks.prometheus import PrometheusTally
from pulse_proxy.stats import StatsTally
from pulse_proxy.stats.breakdown import BreakdownTally


class Tally:
    """What a batch adds to :class:`RollingStats`, :class:`Breakdown` and :class:`PrometheusSink`."""

    __slots__ = ("breakdown", "count", "failed", "prometheus", "stats")

    def __init__(self) -> None:
        self.count = 0
        self.failed = 0  # exchanges a bug kept out of some figure (the dispatcher logs it)
        self.stats = StatsTally()
        self.breakdown = BreakdownTally()
        self.prometheus = PrometheusTally()

    @classmethod
    def of(cls, exchanges: Iterable[Exchange]) -> Tally:
        tally = cls()
        for exchange in exchanges:
            tally.add(exchange)
        return tally

    def __reduce__(self) -> tuple[Any, ...]:
        return _load_tally, (self.count, self.failed, self.stats, self.breakdown, self.prometheus)

    def add(self, exchange: Exchange) -> None:
        self.count += 1
        try:
            self.stats.add(exchange)
            self.breakdown.add(exchange)
            self.prometheus.add(exchange)
        except Exception:  # noqa: BLE001 - a figure's bug must not lose the batch or its events
            self.failed += 1


def _load_tally(
    count: int,
    failed: int,
    stats: StatsTally,
    breakdown: BreakdownTally,
    prometheus: PrometheusTally,
) -> Tally:
    tally = Tally.__new__(Tally)
    tally.count, tally.failed = count, failed
    tally.stats, tally.breakdown, tally.prometheus = stats, breakdown, prometheus
    return tally
