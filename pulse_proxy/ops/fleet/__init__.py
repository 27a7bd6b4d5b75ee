"""Fleet monitoring files built from the config: Prometheus alerting rules, a Grafana dashboard.

A sidecar judges only its own traffic; a fleet of them is watched by Prometheus.
``pulse-proxy export prometheus-rules`` turns the configured alert rules into rules
over figures summed across instances, and ``pulse-proxy export grafana-dashboard``
draws the four standard views over the same ``/metrics``.
"""

from __future__ import annotations

from pulse_proxy.ops.fleet.grafana import grafana_dashboard
from pulse_proxy.ops.fleet.rules import prometheus_rules

__all__ = ["grafana_dashboard", "prometheus_rules"]
