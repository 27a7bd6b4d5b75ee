"""Prometheus families for failover: tries per upstream and result, breaker states,
failovers between upstreams.

The request path keeps these as plain counters on the upstreams (a dict increment per
try, no lock, no label lookup); this collector reads them when ``/metrics`` is
scraped.  The upstream names come from configuration only, so the series are bounded
by the config, never by what clients send.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from pulse_proxy.proxy.upstreams import Upstreams


class UpstreamCollector(Collector):
    """``llm_upstream_attempts_total{upstream,result}``,
    ``llm_upstream_breaker_state{upstream}`` (0 closed, 1 half-open, 2 open) and
    ``llm_failovers_total{from,to}``."""

    def __init__(self, upstreams: Upstreams) -> None:
        self._upstreams = upstreams

    def collect(self) -> Iterator[Metric]:
        upstreams = self._upstreams
        attempts = CounterMetricFamily(
            "llm_upstream_attempts",
            "Tries sent to each upstream, by result (retries and failovers included).",
            labels=["upstream", "result"],
        )
        state = GaugeMetricFamily(
            "llm_upstream_breaker_state",
            "Circuit breaker of each upstream: 0 closed, 1 half-open, 2 open.",
            labels=["upstream"],
        )
        now = upstreams.clock()
        for upstream in upstreams:
            for result, count in upstream.results.items():
                attempts.add_metric([upstream.name, result], count)
            state.add_metric([upstream.name], int(upstream.breaker.shown_state(now)))
        failovers = CounterMetricFamily(
            "llm_failovers",
            "Requests moved from one upstream to another after a failed try.",
            labels=["from", "to"],
        )
        for (source, target), count in sorted(upstreams.failovers.items()):
            failovers.add_metric([source, target], count)
        yield attempts
        yield state
        yield failovers


__all__ = ["UpstreamCollector"]
