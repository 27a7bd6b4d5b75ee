"""The ``limits:`` section: throttling rules, and where their counters live.

Off by default (no rules): the proxy observes and never refuses.  A rule counts by
one dimension of the request (``api_key``, ``user``, ``tag:<key>``, ``model`` or
``all``), optionally only for some of its values (``match``), and holds any of four
limits.  Everything a rule could get wrong is refused here, naming the key, so the
engine in :mod:`pulse_proxy.limits` never meets a rule it cannot enforce.
"""

from __future__ import annotations

from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, field_validator, model_validator

from pulse_proxy.settings.sections import Section, require_unique

_DIMENSIONS = ("api_key", "user", "model", "all")
_REDIS_SCHEMES = ("redis", "rediss", "unix")


class LimitRule(Section):
    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$")
    # api_key | user | tag:<key> | model | all
    by: str = "api_key"
    # Only requests whose value is one of these are counted and limited (none: all).
    match: list[str] | None = None
    requests_per_min: int | None = Field(None, gt=0)
    tokens_per_min: int | None = Field(None, gt=0)
    cost_usd_per_day: float | None = Field(None, gt=0)
    # Requests in flight at once; past it, wait up to queue_timeout_s for a slot, then 429.
    concurrent: int | None = Field(None, gt=0)
    queue_timeout_s: float = Field(0.0, ge=0, le=600)
    # Enforced only while this alert rule fires.
    when_alert: str | None = None

    @field_validator("by")
    @classmethod
    def _known_dimension(cls, value: str) -> str:
        if value in _DIMENSIONS:
            return value
        if value.startswith("tag:") and len(value) > 4:
            return value
        raise ValueError(f"must be one of {', '.join(_DIMENSIONS)} or tag:<key>, not {value!r}")

    @field_validator("match")
    @classmethod
    def _match_not_empty(cls, value: list[str] | None) -> list[str] | None:
        if value is not None and not value:
            raise ValueError("an empty match would limit nothing; leave it out to limit all")
        return value

    @model_validator(mode="after")
    def _holds_a_limit(self) -> LimitRule:
        limits = (
            self.requests_per_min,
            self.tokens_per_min,
            self.cost_usd_per_day,
            self.concurrent,
        )
        if all(limit is None for limit in limits):
            raise ValueError(
                "a rule needs at least one of requests_per_min, tokens_per_min, "
                "cost_usd_per_day, concurrent"
            )
        if self.queue_timeout_s and self.concurrent is None:
            raise ValueError("queue_timeout_s applies only to a rule with concurrent")
        return self

    @property
    def charges_usage(self) -> bool:
        """Whether the rule counts tokens or cost, charged ahead and corrected after."""
        return self.tokens_per_min is not None or self.cost_usd_per_day is not None


class LimitsSettings(Section):
    # memory: counters in this process; redis: shared by every replica at redis_url.
    backend: Literal["memory", "redis"] = "memory"
    redis_url: str | None = None
    # The longest a request waits for Redis; past it, on_backend_error decides.
    backend_timeout_ms: float = Field(50.0, gt=0, le=10_000)
    on_backend_error: Literal["allow", "deny"] = "allow"
    # Tokens charged for the completion when a request names no max_tokens.
    default_max_tokens: int = Field(1024, ge=0)
    # Distinct values (keys, users, tag values, models) counted apart per rule; past
    # it, new values share one "other" counter, so a client inventing users cannot
    # grow the proxy's memory.
    max_keys: int = Field(10_000, ge=1, le=1_000_000)
    rules: list[LimitRule] = Field(default_factory=list)

    @field_validator("redis_url")
    @classmethod
    def _redis_scheme(cls, value: str | None) -> str | None:
        if value is None:
            return value
        parts = urlsplit(value)
        if parts.scheme not in _REDIS_SCHEMES:
            raise ValueError(
                f"must be a redis://, rediss:// or unix:// URL, not scheme {parts.scheme!r}"
            )
        if parts.scheme != "unix" and not parts.hostname:
            raise ValueError("names no host")
        return value

    @field_validator("rules")
    @classmethod
    def _unique_names(cls, rules: list[LimitRule]) -> list[LimitRule]:
        require_unique((rule.name for rule in rules), "limit rule")
        return rules

    @model_validator(mode="after")
    def _redis_needs_url(self) -> LimitsSettings:
        if self.backend == "redis" and not self.redis_url:
            raise ValueError("redis_url: required when backend is redis")
        return self

    def unknown_alerts(self, alert_names: set[str]) -> dict[str, str]:
        """``rules.<i>.when_alert`` → the alert it names, for those naming no alert rule."""
        return {
            f"limits.rules.{index}.when_alert": rule.when_alert
            for index, rule in enumerate(self.rules)
            if rule.when_alert is not None and rule.when_alert not in alert_names
        }
