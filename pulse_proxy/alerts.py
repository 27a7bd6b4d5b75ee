"""Alert rules, and the engine that turns rolling statistics into fired/resolved events.

Each rule is a small state machine, evaluated every ``evaluation_interval_s``::

    ok --breach--> pending --held for_s--> FIRING --clear--> resolving --held resolve_for_s--> ok
                   (no breach: back to ok)       (no longer clear: back to firing, silently)

so a rule emits exactly one ``alert.fired`` and one ``alert.resolved`` per incident.
Hysteresis keeps a value hovering at the threshold from flapping: a firing rule clears
only when the value is back past ``threshold × resolve_ratio`` (``÷`` for ``<`` rules),
not merely under the threshold, and stays there for ``resolve_for_s``.

Spike rules compare the recent window with a baseline: the rest of ``baseline_window_s``
before the recent window (by default the 55 minutes before the last 5), never a span
that includes it, since an incident would otherwise inflate its own baseline.  While a spike alert fires, the threshold it fired at is held,
for at most ``baseline_window_s``: a long incident does not become its own baseline and
resolve itself, but a level that persists for a whole baseline window becomes the new
normal.  A baseline must span at least the recent window (a process up for two minutes
has none yet); for a percentile it also needs ``min_samples`` samples, while for a rate
an idle hour is a genuine baseline of zero.  ``floor`` keeps tiny absolute levels quiet
and ``hard_cap`` catches absolute ones.

When samples drop below ``min_samples`` (traffic stopped) a firing rule counts as clear,
as in Prometheus where an absent series resolves its alert.

The engine is pure: no I/O, no asyncio.  The app's background task calls
:meth:`AlertEngine.evaluate` and hands the events to the sinks.
"""

from __future__ import annotations

import operator
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from pulse_proxy.records import AlertEvent
from pulse_proxy.settings.alerts import AlertRule, AlertSettings
from pulse_proxy.sinks.log import rfc3339
from pulse_proxy.stats import RollingStats, WindowView, window_label

Phase = Literal["ok", "pending", "firing", "resolving", "disabled"]

_COMPARE: dict[str, Callable[[float, float], bool]] = {
    ">": operator.gt,
    ">=": operator.ge,
    "<": operator.lt,
    "<=": operator.le,
}
_RATE_STATS = frozenset({"rate", "sum", "count"})
_WORDS = {">": "above", ">=": "at or above", "<": "below", "<=": "at or below"}
_UNITS = {
    "latency_ms": " ms",
    "ttft_ms": " ms",
    "prompt_tokens": " tokens",
    "total_tokens": " tokens",
    "tokens_per_minute": " tokens/min",
    "cost_usd": " USD",
}


@dataclass(slots=True)
class _Observation:
    """What one evaluation saw for a rule."""

    value: float | None
    samples: int
    threshold: float | None  # effective: fixed, or max(factor × baseline, floor)
    baseline: float | None
    peak: float | None  # the window's maximum, for hard caps


@dataclass(slots=True)
class _RuleState:
    phase: Phase = "ok"
    since: float = 0.0
    fired_at: float = 0.0
    trigger: Literal["threshold", "hard_cap"] = "threshold"
    held_threshold: float | None = None
    fired: AlertEvent | None = None
    last: _Observation | None = None


class AlertEngine:
    """Evaluates every rule against the rolling statistics; returns the transitions.

    Pass the same ``clock`` to the engine and to its :class:`RollingStats`.
    """

    def __init__(
        self,
        settings: AlertSettings,
        stats: RollingStats,
        clock: Callable[[], float] = time.time,
        actions: Callable[[AlertRule, bool], list[dict[str, Any]]] | None = None,
        builtin: Sequence[dict[str, Any]] = (),
    ) -> None:
        """``actions(rule, fired)``, asked at each transition: what the proxy switched
        (for an error-rate rule, the breakers that opened and where traffic went; the
        limits a rule turns on or off).  ``builtin``: the configuration of rules
        evaluated elsewhere (the limits store's health), whose transitions come in
        through :meth:`record`."""
        self.settings = settings
        self._actions = actions
        self._stats = stats
        self._clock = clock
        self._states = {rule.name: _RuleState() for rule in settings.rules}
        self._recent: deque[dict[str, Any]] = deque(maxlen=settings.history_size)
        self._evaluated_at: float | None = None
        self._builtin_config = {rule["name"]: rule for rule in builtin}
        self._builtin: dict[str, AlertEvent | None] = dict.fromkeys(self._builtin_config)

    def evaluate(self) -> list[AlertEvent]:
        """One pass over the rules; the ``alert.fired`` / ``alert.resolved`` events it caused."""
        now = self._clock()
        views: dict[tuple[float, float, str | None], WindowView] = {}

        def view(rule: AlertRule, window_s: float, before_s: float = 0) -> WindowView:
            key = (window_s, before_s, rule.model)
            if key not in views:  # rules sharing a window share one merge of its buckets
                views[key] = self._stats.view(window_s, before_s=before_s, model=rule.model)
            return views[key]

        events = []
        for rule in self.settings.rules:
            state = self._states[rule.name]
            if not rule.enabled:
                state.phase = "disabled"
                continue
            observation = self._observe(rule, view)
            state.last = observation
            event = self._step(rule, state, observation, now)
            if event is not None:
                events.append(event)
                self._recent.appendleft({"event": event.event, **event.to_event()})
        self._evaluated_at = now
        return events

    def _observe(self, rule: AlertRule, view: Callable[..., WindowView]) -> _Observation:
        current = view(rule, rule.window_s).measure(rule.metric, rule.stat)
        threshold, baseline = rule.threshold, None
        if rule.is_spike:
            assert rule.baseline_window_s is not None and rule.factor is not None
            history = view(rule, rule.baseline_window_s - rule.window_s, rule.window_s)
            past = history.measure(rule.metric, rule.stat)
            # A baseline must cover at least as long as the window it judges.  A rate over
            # an idle stretch is a real baseline of 0; a percentile of nothing is none.
            enough = rule.stat in _RATE_STATS or past.samples >= max(rule.min_samples, 1)
            if past.value is not None and history.span_s >= rule.window_s and enough:
                baseline = past.value
                threshold = max(rule.factor * baseline, rule.floor)
        peak = None
        if rule.hard_cap is not None:
            peak = view(rule, rule.window_s).measure(rule.metric, "max").value
        return _Observation(current.value, current.samples, threshold, baseline, peak)

    def _step(
        self, rule: AlertRule, state: _RuleState, seen: _Observation, now: float
    ) -> AlertEvent | None:
        if state.phase in ("ok", "pending"):
            trigger = self._breach(rule, seen)
            if trigger is None:
                state.phase = "ok"
                return None
            if state.phase == "ok":
                state.phase, state.since = "pending", now
            if now - state.since < rule.for_s:
                return None
            state.phase, state.since, state.fired_at = "firing", now, now
            state.trigger = trigger
            state.held_threshold = seen.threshold
            state.fired = self._event("alert.fired", rule, state, seen, now)
            return state.fired
        clear = self._clear(rule, state, seen, now)
        if state.phase == "firing":
            if not clear:
                return None
            state.phase, state.since = "resolving", now
        if not clear:
            state.phase, state.since = "firing", state.fired_at
            return None
        if now - state.since < rule.resolve_hold_s:
            return None
        event = self._event("alert.resolved", rule, state, seen, now)
        state.phase, state.since, state.fired, state.held_threshold = "ok", now, None, None
        return event

    @staticmethod
    def _breach(rule: AlertRule, seen: _Observation) -> Literal["threshold", "hard_cap"] | None:
        if (
            seen.value is not None
            and seen.threshold is not None
            and seen.samples >= rule.min_samples
            and _COMPARE[rule.op](seen.value, seen.threshold)
        ):
            return "threshold"
        if rule.hard_cap is not None and seen.peak is not None and seen.peak > rule.hard_cap:
            return "hard_cap"
        return None

    def _threshold_while_firing(
        self, rule: AlertRule, state: _RuleState, seen: _Observation, now: float
    ) -> float | None:
        """The fired-at threshold, held for a spike rule for at most its baseline window."""
        if state.held_threshold is None:
            return seen.threshold
        if (
            rule.is_spike
            and rule.baseline_window_s is not None
            and now - state.fired_at >= rule.baseline_window_s
        ):
            return seen.threshold
        return state.held_threshold

    def _clear(self, rule: AlertRule, state: _RuleState, seen: _Observation, now: float) -> bool:
        """Past the hysteresis band on every trigger (or too few samples to tell)."""
        threshold = self._threshold_while_firing(rule, state, seen, now)
        main_clear = True
        if seen.value is not None and threshold is not None and seen.samples >= rule.min_samples:
            ratio = rule.resolve_ratio
            level = threshold * ratio if rule.op in (">", ">=") else threshold / ratio
            main_clear = not _COMPARE[rule.op](seen.value, level)
        cap_clear = True
        if rule.hard_cap is not None and seen.peak is not None:
            cap_clear = seen.peak <= rule.hard_cap * rule.resolve_ratio
        return main_clear and cap_clear

    def _event(
        self,
        kind: Literal["alert.fired", "alert.resolved"],
        rule: AlertRule,
        state: _RuleState,
        seen: _Observation,
        now: float,
    ) -> AlertEvent:
        capped = state.trigger == "hard_cap"
        stat = "max" if capped else rule.stat
        value = seen.peak if capped else seen.value
        if kind == "alert.resolved" and state.fired is not None:
            threshold = state.fired.threshold
        else:
            threshold = rule.hard_cap if capped else seen.threshold
        duration = round(now - state.fired_at, 3) if kind == "alert.resolved" else None
        fields = {
            "alert": rule.name,
            "state": "fired" if kind == "alert.fired" else "resolved",
            "severity": rule.severity,
            "metric": rule.metric,
            "stat": stat,
            "op": rule.op,
            "value": value,
            "threshold": threshold,
            "baseline": seen.baseline,
            "samples": seen.samples,
            "window_s": float(rule.window_s),
            "window": window_label(rule.window_s),
            "duration_s": duration,
            "model": rule.model or "all models",
        }
        return AlertEvent(
            event=kind,
            alert=rule.name,
            severity=rule.severity,
            metric=rule.metric,
            stat=stat,
            value=_round(value),
            threshold=_round(threshold),
            window_s=float(rule.window_s),
            message=_message(rule, fields, capped),
            fired_at=rfc3339(state.fired_at),
            resolved_at=rfc3339(now) if kind == "alert.resolved" else None,
            duration_s=duration,
            labels=dict(rule.labels),
            actions=self._actions(rule, kind == "alert.fired") if self._actions else [],
        )

    def record(self, event: AlertEvent) -> None:
        """A built-in rule's transition, shown with the others in ``/pulse/alerts``."""
        self._builtin[event.alert] = event if event.event == "alert.fired" else None
        self._recent.appendleft({"event": event.event, **event.to_event()})

    # -- surfaces --------------------------------------------------------------------

    def firing(self) -> dict[str, bool]:
        """Rule name -> firing now (for the ``llm_alert_firing{alert}`` gauge)."""
        firing = {
            name: state.phase in ("firing", "resolving") for name, state in self._states.items()
        }
        for name, fired in self._builtin.items():
            firing[name] = fired is not None
        return firing

    def state(self) -> dict[str, Any]:
        """The ``GET /pulse/alerts`` body: rules with config and state, active and recent alerts."""
        rules = []
        for rule in self.settings.rules:
            state = self._states[rule.name]
            seen = state.last
            phase = "disabled" if not rule.enabled else state.phase
            rules.append(
                {
                    "name": rule.name,
                    "state": phase,
                    "firing": phase in ("firing", "resolving"),
                    "since": rfc3339(state.since) if state.since else None,
                    "value": _round(seen.value) if seen else None,
                    "threshold": _round(seen.threshold) if seen else rule.threshold,
                    "baseline": _round(seen.baseline) if seen else None,
                    "samples": seen.samples if seen else 0,
                    "config": rule.model_dump(mode="json"),
                }
            )
        for name, fired in self._builtin.items():
            rules.append(
                {
                    "name": name,
                    "state": "firing" if fired is not None else "ok",
                    "firing": fired is not None,
                    "since": fired.fired_at if fired is not None else None,
                    "value": fired.value if fired is not None else None,
                    "threshold": self._builtin_config[name].get("threshold"),
                    "baseline": None,
                    "samples": 0,
                    "config": self._builtin_config[name],
                }
            )
        active = [
            {"event": s.fired.event, **s.fired.to_event()}
            for s in self._states.values()
            if s.fired is not None
        ]
        active += [
            {"event": fired.event, **fired.to_event()}
            for fired in self._builtin.values()
            if fired is not None
        ]
        return {
            "evaluated_at": rfc3339(self._evaluated_at) if self._evaluated_at is not None else None,
            "evaluation_interval_s": self.settings.evaluation_interval_s,
            "rules": rules,
            "active": active,
            "recent": list(self._recent),
        }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 6 if abs(value) < 1 else 3)


def format_value(value: float | None, metric: str, stat: str) -> str:
    """A figure for a human sentence: ``2,450 ms``, ``12.5 %``, ``0.0031 USD``."""
    if value is None:
        return "n/a"
    if stat in ("count",):
        return f"{value:,.0f}"
    if metric == "error_rate" and stat in ("rate", "mean"):
        return f"{value * 100:.1f} %"
    if metric == "requests" and stat == "rate":
        return f"{value:.2f} req/s"
    unit = _UNITS.get(metric, "")
    if abs(value) >= 100:
        text = f"{value:,.0f}"
    elif abs(value) >= 1:
        text = f"{value:.2f}".rstrip("0").rstrip(".")
    else:
        text = f"{value:.4g}"
    return text + unit


def describe(metric: str, stat: str) -> str:
    """``p95 latency_ms``, but ``error rate`` and ``tokens per minute`` where that reads better."""
    if metric == "error_rate" and stat in ("rate", "mean"):
        return "error rate"
    if metric == "tokens_per_minute" and stat == "rate":
        return "tokens per minute"
    if metric == "requests":
        return "request rate" if stat == "rate" else "request count"
    return f"{stat} {metric}"


def format_duration(seconds: float) -> str:
    whole = round(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h {minutes}m"
    if minutes:
        return f"{minutes}m {secs}s"
    return f"{secs}s"


def _message(rule: AlertRule, fields: dict[str, Any], capped: bool) -> str:
    """The event's sentence: numbers and names only, never request content."""
    if rule.message is not None:
        try:
            return rule.message.format_map(fields)
        except (KeyError, IndexError, ValueError, TypeError, AttributeError):
            pass  # e.g. a numeric format applied to a missing value: use the default
    metric, stat = rule.metric, fields["stat"]
    value = format_value(fields["value"], metric, stat)
    threshold = format_value(fields["threshold"], metric, stat)
    scope = f" for {rule.model}" if rule.model else ""
    what = f"{describe(metric, stat)}{scope} over the last {fields['window']}"
    if fields["state"] == "resolved":
        return (
            f"{rule.name} resolved after {format_duration(fields['duration_s'] or 0)}: "
            f"{what} is {value} (fired {_WORDS[rule.op]} {threshold})"
        )
    if capped:
        return f"{rule.name}: {what} is {value}, above the hard cap of {threshold}"
    if rule.is_spike and fields["baseline"] is not None:
        baseline = format_value(fields["baseline"], metric, stat)
        ratio = fields["value"] / fields["baseline"] if fields["baseline"] else float("inf")
        return (
            f"{rule.name}: {what} is {value}, {ratio:.1f}× the baseline of {baseline} "
            f"from the {window_label((rule.baseline_window_s or 0) - rule.window_s)} before (threshold {threshold})"
        )
    samples = fields["samples"]
    return f"{rule.name}: {what} is {value}, {_WORDS[rule.op]} the threshold of {threshold} ({samples} samples)"
