"""What the rest of the app sees of the limits: metrics, corrections, an alert.

:class:`LimitsCollector` serves ``llm_throttled_total{rule}`` and
``pulse_limits_backend_errors_total`` from the limiter's own counts (read at scrape
time: nothing is added to the request path).  :class:`CorrectionSink` is a sink
that takes accounted exchanges and corrects the charges made ahead.
:class:`BackendAlert` is the built-in ``limits_backend_down`` rule: it fires when
the shared store fails and resolves once it has answered again.
:func:`switch_limits` turns on or off the rules that wait on an alert, and names them
for the alert's ``actions``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client.metrics_core import CounterMetricFamily, Metric

from pulse_proxy.limits.limiter import Limiter
from pulse_proxy.records import AlertEvent, Batch
from pulse_proxy.sinks import Rendered
from pulse_proxy.sinks.log import rfc3339

BACKEND_ALERT = "limits_backend_down"
# How /pulse/alerts describes the built-in rule, beside the configured ones.
BACKEND_RULE: dict[str, Any] = {
    "name": BACKEND_ALERT,
    "metric": "limits_backend_errors",
    "stat": "count",
    "op": ">",
    "threshold": 0,
    "severity": "critical",
    "builtin": True,
}


class LimitsCollector:
    def __init__(self, limiter: Limiter) -> None:
        self._limiter = limiter

    def collect(self) -> Iterator[Metric]:
        throttled = CounterMetricFamily(
            "llm_throttled", "Requests answered 429 by a limit rule.", labels=["rule"]
        )
        for rule, count in self._limiter.throttled.items():
            throttled.add_metric([rule], count)
        yield throttled
        yield CounterMetricFamily(
            "pulse_limits_backend_errors",
            "Requests whose limits could not be checked (store slow or down).",
            value=self._limiter.backend_errors,
        )


class CorrectionSink:
    """Charges made ahead, corrected to the usage accounting found."""

    def __init__(self, limiter: Limiter) -> None:
        self._limiter = limiter

    def takes_exchanges(self, rendered: Rendered) -> bool:
        return self._limiter.charges_usage

    def write(self, batch: Batch[Any]) -> None:
        self._limiter.correct(batch.exchanges)

    def on_alert(self, alert: AlertEvent) -> None:
        return None

    async def aclose(self) -> None:
        return None


class BackendAlert:
    """``limits_backend_down``: fired while the limits' shared store fails."""

    def __init__(self, limiter: Limiter, clock: Callable[[], float] = time.time) -> None:
        self._limiter = limiter
        self._clock = clock
        self._errors_seen = 0
        self._fired_at: float | None = None

    def evaluate(self) -> AlertEvent | None:
        errors = self._limiter.backend_errors
        new = errors - self._errors_seen
        self._errors_seen = errors
        store = self._limiter.store
        down = store is not None and (store.down or new > 0)
        now = self._clock()
        if down and self._fired_at is None:
            self._fired_at = now
            return self._event("alert.fired", new, now)
        if not down and self._fired_at is not None:
            event = self._event("alert.resolved", new, now)
            self._fired_at = None
            return event
        return None

    def _event(self, kind: Any, errors: int, now: float) -> AlertEvent:
        fired_at = self._fired_at if self._fired_at is not None else now
        resolved = kind == "alert.resolved"
        fallback = self._limiter.settings.on_backend_error
        outcome = "go through unchecked" if fallback == "allow" else "are refused"
        message = (
            "The limits store answers again; limits apply again."
            if resolved
            else f"The limits store is slow or down: requests {outcome} "
            f"(limits.on_backend_error: {fallback})."
        )
        return AlertEvent(
            event=kind,
            alert=BACKEND_ALERT,
            severity=BACKEND_RULE["severity"],
            metric=BACKEND_RULE["metric"],
            stat=BACKEND_RULE["stat"],
            value=float(errors),
            threshold=float(BACKEND_RULE["threshold"]),
            window_s=0.0,
            message=message,
            fired_at=rfc3339(fired_at),
            resolved_at=rfc3339(now) if resolved else None,
            duration_s=round(now - fired_at, 3) if resolved else None,
        )


def switch_limits(limiter: Limiter, alert: str, fired: bool) -> list[dict[str, Any]]:
    """Enforce (fired) or lift the rules waiting on ``alert``; the actions that name them."""
    kind = "limit_on" if fired else "limit_off"
    return [{"action": kind, "limit": name} for name in limiter.switch(alert, fired)]
