"""What the demo reads from the proxy's ``/pulse/stats`` body."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from pulse_proxy.ops.demo.pacing import COARSE_S


@dataclass(frozen=True, slots=True)
class Background:
    """The traffic the proxy already had when the demo started (another client, a previous run)."""

    tokens_per_minute: float = 0.0

    @classmethod
    def from_stats(cls, stats: dict[str, Any]) -> Background:
        return cls(max(tokens_per_minute(stats, "1h"), tokens_per_minute(stats, "5m")))


def total_requests(stats: dict[str, Any]) -> int:
    windows = stats.get("windows", {}).values()
    return max((int(w.get("overall", {}).get("requests", 0)) for w in windows), default=0)


def tokens_per_minute(stats: dict[str, Any], window: str) -> float:
    overall = stats.get("windows", {}).get(window, {}).get("overall", {})
    return float(overall.get("tokens", {}).get("per_minute") or 0.0)


def uptime(stats: dict[str, Any]) -> float:
    """The proxy's uptime as its longest window sees it (that window's span while shorter)."""
    windows = stats.get("windows", {})
    longest = max(windows.values(), key=lambda w: w.get("window_s", 0), default=None)
    if not longest:
        return math.inf
    span = float(longest.get("span_s") or 0.0)
    return span if span < float(longest.get("window_s", 0)) - COARSE_S else math.inf
