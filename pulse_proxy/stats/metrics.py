"""The quantiles the sketches answer, and :class:`Measurement`, one statistic over a window.

Which statistics each metric answers is part of the alert-rule schema
(:data:`pulse_proxy.settings.alerts.SUPPORTED_STATS`), re-exported here for the aggregates."""

from __future__ import annotations

from dataclasses import dataclass

from pulse_proxy.settings.alerts import SUPPORTED_STATS

QUANTILES = {"p50": 0.50, "p95": 0.95, "p99": 0.99}


@dataclass(frozen=True, slots=True)
class Measurement:
    """One statistic over one window, with the number of samples behind it."""

    value: float | None
    samples: int


__all__ = ["QUANTILES", "SUPPORTED_STATS", "Measurement"]
