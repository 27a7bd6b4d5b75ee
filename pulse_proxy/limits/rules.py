"""Rules, compiled: what a request is counted as, and against which limits.

A :class:`Rule` is one configured rule with its limits as :class:`Limit` entries
(``requests``, ``tokens`` and ``cost`` are sliding windows, ``concurrent`` a count
of requests in flight).  :class:`RequestFacts` is what the rules read from a request:
key hash, user, tags and model as the events carry them, and the tokens and cost to
charge ahead.  A request that lacks the rule's dimension (no key, no user, no such
tag) is not counted by that rule.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from pulse_proxy.settings.limits import LimitRule

Kind = Literal["requests", "tokens", "cost", "concurrent"]
# The sliding windows' lengths: per minute, and per day for cost.
WINDOWS_S: dict[Kind, float] = {"requests": 60.0, "tokens": 60.0, "cost": 86_400.0, "concurrent": 0}
PHRASES: dict[Kind, str] = {
    "requests": "requests per minute",
    "tokens": "tokens per minute",
    "cost": "USD per day",
    "concurrent": "requests in flight",
}


@dataclass(slots=True)
class RequestFacts:
    """What the rules read from one request; ``None`` where it does not say."""

    api_key_hash: str | None = None
    user: str | None = None
    tags: dict[str, str] = field(default_factory=dict)
    model: str | None = None
    tokens: float = 0.0  # charged ahead: prompt estimate + max_tokens (or the default)
    cost: float = 0.0  # charged ahead: the tokens above at the model's price


@dataclass(slots=True, eq=False)
class Limit:
    """One limit of one rule: its own table of counters in the backend."""

    rule: Rule
    kind: Kind
    limit: float
    window_s: float


@dataclass(slots=True, eq=False)
class Rule:
    name: str
    by: str
    match: frozenset[str] | None
    when_alert: str | None
    queue_timeout_s: float
    limits: list[Limit] = field(default_factory=list)
    # Enforced now: always, or while its alert fires.
    active: bool = True

    @classmethod
    def compile(cls, config: LimitRule) -> Rule:
        rule = cls(
            name=config.name,
            by=config.by,
            match=frozenset(config.match) if config.match is not None else None,
            when_alert=config.when_alert,
            queue_timeout_s=config.queue_timeout_s,
            active=config.when_alert is None,
        )
        configured: tuple[tuple[Kind, float | None], ...] = (
            ("requests", config.requests_per_min),
            ("tokens", config.tokens_per_min),
            ("cost", config.cost_usd_per_day),
            ("concurrent", config.concurrent),
        )
        for kind, value in configured:
            if value is not None:
                rule.limits.append(Limit(rule, kind, float(value), WINDOWS_S[kind]))
        return rule

    def value(self, facts: RequestFacts) -> str | None:
        """What this request counts as under this rule, or None: not counted by it."""
        by = self.by
        if by == "api_key":
            value = facts.api_key_hash
        elif by == "user":
            value = facts.user
        elif by == "model":
            value = facts.model
        elif by == "all":
            return "all"
        else:
            value = facts.tags.get(by[4:])
        if value is None or (self.match is not None and value not in self.match):
            return None
        return value

    def cost_of(self, kind: Kind, facts: RequestFacts) -> float:
        if kind == "tokens":
            return facts.tokens
        if kind == "cost":
            return facts.cost
        return 1.0

    @property
    def reads_body(self) -> bool:
        return self.by in ("user", "model") or any(
            limit.kind in ("tokens", "cost") for limit in self.limits
        )


@dataclass(slots=True)
class Check:
    """One limit to test for one request: ``cost`` more of ``key`` in ``limit``'s table."""

    limit: Limit
    key: str
    cost: float
    # Filled in by the backend once admitted: the slot charged (for corrections).
    slot: int = 0
