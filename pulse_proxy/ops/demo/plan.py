"""The timeline: when each burst starts, so that every rule fires on its first chance."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from pulse_proxy.ops.demo.clock import clock_text, duration_text
from pulse_proxy.ops.demo.pacing import COARSE_S, PHASE_S, SETTLE_S, WARM_UP_S


@dataclass(slots=True)
class Plan:
    """When each burst starts, in demo seconds, and why."""

    slow_at: float = WARM_UP_S
    errors_at: float = WARM_UP_S + PHASE_S
    prompts_at: float = WARM_UP_S + 2 * PHASE_S
    tokens_at: float = WARM_UP_S + 3 * PHASE_S
    expected_end: float = 0.0
    note: str | None = None


def make_plan(uptime_s: float, proxy_now: float, rules: dict[str, dict[str, Any]]) -> Plan:
    """Place the bursts so that each rule can fire on its first chance and resolve soon after."""
    plan = Plan()
    window = float(rule_config(rules, "token_spike", "window_s") or 300.0)
    resolve_s = float(rule_config(rules, "token_spike", "resolve_for_s") or 60.0)
    if "token_spike" in rules and math.isfinite(uptime_s):
        # A baseline is the span before the window, ending on an hour-ring boundary, and
        # must span the window itself: that first happens at ``baseline_at`` on the proxy's
        # clock.  A burst after ``baseline_at - window`` stays out of that first baseline;
        # one coarse bucket of margin absorbs evaluation timing and our own clock's jitter.
        started = proxy_now - uptime_s
        baseline_at = math.ceil((started + window) / COARSE_S) * COARSE_S + window
        earliest = baseline_at - window + COARSE_S - proxy_now
        if earliest > plan.prompts_at:
            plan.prompts_at = earliest
            plan.tokens_at = earliest + PHASE_S
            plan.note = (
                f"the proxy has been up {duration_text(uptime_s)}: token_spike compares the last "
                f"{duration_text(window)} with a baseline from before them, which must itself span "
                f"{duration_text(window)}, so it can first fire at {clock_text(baseline_at - proxy_now)}. "
                f"The long-prompt and token bursts go out at {clock_text(plan.prompts_at)}, so they "
                "are judged at that first chance and not folded into that baseline"
            )
    plan.expected_end = plan.tokens_at + PHASE_S + window + resolve_s + SETTLE_S
    return plan


def rule_config(rules: dict[str, dict[str, Any]], name: str, key: str) -> Any:
    return rules.get(name, {}).get("config", {}).get(key)
