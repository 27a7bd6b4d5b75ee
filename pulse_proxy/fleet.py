"""Fleet monitoring files: Prometheus alerting rules and a Grafana dashboard (to be built)."""

from __future__ import annotations

from pulse_proxy.settings import Settings


def prometheus_rules(settings: Settings) -> str:
    raise NotImplementedError


def grafana_dashboard(settings: Settings) -> str:
    raise NotImplementedError
