"""The ``alerts:`` section: rules, and the metrics and statistics a rule may name.

A rule is checked in full at start-up (a statistic its metric cannot answer, a
template with an unknown placeholder, a spike rule without its baseline), so the
engine in :mod:`pulse_proxy.alerts` never meets a rule it cannot evaluate.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator

from pulse_proxy.settings.sections import Section, require_unique

Metric = Literal[
    "latency_ms",
    "ttft_ms",
    "prompt_tokens",
    "total_tokens",
    "error_rate",
    "tokens_per_minute",
    "requests",
    "cost_usd",
]
Stat = Literal["p50", "p95", "p99", "max", "mean", "rate", "sum", "count"]
Op = Literal[">", ">=", "<", "<="]
Severity = Literal["info", "warning", "critical"]

_DISTRIBUTION_STATS = frozenset({"p50", "p95", "p99", "max", "mean", "sum", "count"})

# Which statistic each metric answers; the alert rules are validated against this.
# ``rate`` is per second, except for ``error_rate`` (errors / requests) and
# ``tokens_per_minute`` (total tokens per minute).
SUPPORTED_STATS: dict[str, frozenset[str]] = {
    "latency_ms": _DISTRIBUTION_STATS,
    "ttft_ms": _DISTRIBUTION_STATS,
    "prompt_tokens": _DISTRIBUTION_STATS,
    "total_tokens": frozenset({"max", "mean", "sum", "count", "rate"}),
    "cost_usd": frozenset({"mean", "sum", "count", "rate"}),
    "requests": frozenset({"count", "rate"}),
    "error_rate": frozenset({"rate", "mean", "sum", "count"}),
    "tokens_per_minute": frozenset({"rate", "sum", "count"}),
}

# Placeholders a custom ``message`` template may use.
_TEMPLATE_SAMPLE: dict[str, Any] = {
    "alert": "rule",
    "state": "fired",
    "severity": "warning",
    "metric": "latency_ms",
    "stat": "p95",
    "op": ">",
    "value": 1.0,
    "threshold": 1.0,
    "baseline": 1.0,
    "samples": 1,
    "window_s": 300.0,
    "window": "5m",
    "duration_s": 1.0,
    "model": "gpt-4o",
}


class AlertRule(Section):
    """One rule: a statistic over a window compared with a threshold or a baseline.

    Example (YAML)::

        - name: slow_gpt4o
          metric: latency_ms
          stat: p95
          window_s: 300
          threshold: 1500
          model: gpt-4o
          min_samples: 20
    """

    name: str = Field(pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$")
    metric: Metric
    stat: Stat
    window_s: float = Field(default=300.0, gt=0, le=3600)
    op: Op = ">"
    # Absolute threshold ...
    threshold: float | None = None
    # ... or a spike detector: value > factor × baseline and value > floor.
    baseline_window_s: float | None = Field(default=None, gt=0, le=3600)
    factor: float | None = Field(default=None, gt=0)
    floor: float = Field(default=0.0, ge=0)
    # Fires as well when the window's maximum exceeds this (one huge prompt is enough).
    hard_cap: float | None = Field(default=None, gt=0)
    min_samples: int = Field(default=1, ge=0)
    for_s: float = Field(default=0.0, ge=0)
    resolve_ratio: float = Field(default=0.9, gt=0, le=1)
    # How long the value must stay clear before resolving; defaults to ``for_s``.
    resolve_for_s: float | None = Field(default=None, ge=0)
    severity: Severity = "warning"
    enabled: bool = True
    # Only this model's requests (``None``: all of them).
    model: str | None = None
    webhooks: list[str] = Field(default_factory=list)
    labels: dict[str, str] = Field(default_factory=dict)
    # A str.format template; placeholders as in _TEMPLATE_SAMPLE.
    message: str | None = None

    @field_validator("stat")
    @classmethod
    def _stat_fits_metric(cls, stat: str, info: ValidationInfo) -> str:
        metric = info.data.get("metric")
        if metric is not None and stat not in SUPPORTED_STATS[metric]:
            allowed = ", ".join(sorted(SUPPORTED_STATS[metric]))
            raise ValueError(f"{stat!r} is not available for metric {metric!r} (one of: {allowed})")
        return stat

    @field_validator("hard_cap")
    @classmethod
    def _cap_needs_max(cls, cap: float | None, info: ValidationInfo) -> float | None:
        metric = info.data.get("metric")
        if cap is not None and metric is not None and "max" not in SUPPORTED_STATS[metric]:
            raise ValueError(f"metric {metric!r} has no maximum to compare with a hard cap")
        return cap

    @field_validator("message")
    @classmethod
    def _template_renders(cls, template: str | None) -> str | None:
        if template is not None:
            try:
                template.format_map(_TEMPLATE_SAMPLE)
            except (KeyError, IndexError, ValueError, AttributeError) as exc:
                known = ", ".join(sorted(_TEMPLATE_SAMPLE))
                raise ValueError(f"bad template ({exc!r}); placeholders: {known}") from None
        return template

    @model_validator(mode="after")
    def _one_detector(self) -> AlertRule:
        spike = self.factor is not None or self.baseline_window_s is not None
        if self.threshold is not None and spike:
            raise ValueError(
                "threshold: set either threshold, or factor with baseline_window_s, not both"
            )
        if spike:
            if self.factor is None or self.baseline_window_s is None:
                raise ValueError("factor and baseline_window_s: a spike rule needs both")
            if self.baseline_window_s <= self.window_s:
                raise ValueError("baseline_window_s: must be longer than window_s")
            if self.op not in (">", ">="):
                raise ValueError(
                    "op: a spike rule fires on values above the baseline ('>' or '>=')"
                )
        elif self.threshold is None and self.hard_cap is None:
            raise ValueError("threshold: required (or factor with baseline_window_s, or hard_cap)")
        return self

    @property
    def is_spike(self) -> bool:
        return self.factor is not None

    @property
    def resolve_hold_s(self) -> float:
        return self.for_s if self.resolve_for_s is None else self.resolve_for_s


def default_rules() -> list[AlertRule]:
    """The four default rules.  They fire on the first evaluation that sees the condition
    (the 5-minute window already demands a sustained problem) and resolve after 60 s
    back below 90 % of the threshold."""
    common: dict[str, Any] = {
        "window_s": 300,
        "resolve_ratio": 0.9,
        "for_s": 0,
        "resolve_for_s": 60,
    }
    return [
        AlertRule(
            name="high_latency", metric="latency_ms", stat="p95", threshold=2000,
            min_samples=10, severity="warning", **common,
        ),
        AlertRule(
            name="token_spike", metric="tokens_per_minute", stat="rate",
            baseline_window_s=3600, factor=3, floor=5000, min_samples=10, severity="warning", **common,
        ),
        AlertRule(
            name="error_rate", metric="error_rate", stat="rate", threshold=0.05,
            min_samples=20, severity="critical", **common,
        ),
        AlertRule(
            name="prompt_length_spike", metric="prompt_tokens", stat="p95",
            baseline_window_s=3600, factor=3, floor=1000, hard_cap=100_000, min_samples=10,
            severity="warning", **common,
        ),
    ]  # fmt: skip


class AlertSettings(Section):
    evaluation_interval_s: float = Field(default=5.0, gt=0)
    # Transitions kept for GET /pulse/alerts.
    history_size: int = Field(default=100, ge=1, le=10_000)
    rules: list[AlertRule] = Field(default_factory=default_rules)

    @field_validator("rules")
    @classmethod
    def _unique_names(cls, rules: list[AlertRule]) -> list[AlertRule]:
        require_unique((rule.name for rule in rules), "rule")
        return rules
