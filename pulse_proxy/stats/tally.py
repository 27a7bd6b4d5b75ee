"""A batch of finished requests, summed for the figures the proxy serves itself.

The statistics behind ``/pulse/stats`` and the alerts, the spend breakdown and the
Prometheus series need only counts, sums and sketches of what finished.  Adding each
exchange to them on the event loop would cost it a large share of what relaying the
request costs.  So the accounting process sums its batch into a :class:`Tally` instead,
and the event loop merges one part per model, label tuple or user, however many
requests the batch held.

Every part is a msgspec Struct made of the same classes the live figures hold
(:class:`~pulse_proxy.stats.aggregate.Aggregate`, the Prometheus series), so a figure
is declared once and the batch crosses the process boundary typed, with no
hand-written state tuples.  The parts keep raw values (model names, users, labels):
bounding them stays with the figures on the loop, where one set of kept values lives
as long as the process.
"""

from __future__ import annotations

from collections.abc import Iterable

from msgspec import Struct, field

from pulse_proxy.records import Exchange
from pulse_proxy.sinks.prometheus import PrometheusTally
from pulse_proxy.stats.breakdown import BreakdownTally
from pulse_proxy.stats.rolling import StatsTally


class Tally(Struct, array_like=True):
    """What a batch adds to :class:`RollingStats`, :class:`Breakdown` and :class:`PrometheusSink`."""

    count: int = 0
    failed: int = 0  # exchanges a bug kept out of some figure (the dispatcher logs it)
    stats: StatsTally = field(default_factory=StatsTally)
    breakdown: BreakdownTally = field(default_factory=BreakdownTally)
    prometheus: PrometheusTally = field(default_factory=PrometheusTally)

    @classmethod
    def of(cls, exchanges: Iterable[Exchange]) -> Tally:
        tally = cls()
        for exchange in exchanges:
            tally.add(exchange)
        return tally

    def add(self, exchange: Exchange) -> None:
        self.count += 1
        try:
            self.stats.add(exchange)
            self.breakdown.add(exchange)
            self.prometheus.add(exchange)
        except Exception:  # noqa: BLE001 - a figure's bug must not lose the batch or its events
            self.failed += 1
