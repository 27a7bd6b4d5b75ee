"""Following the alerts: each rule's transitions as ``/pulse/alerts`` reports them."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, TextIO

from pulse_proxy.ops.demo.clock import clock_text, epoch

RULES = ("high_latency", "error_rate", "prompt_length_spike", "token_spike")


@dataclass(slots=True)
class RuleProgress:
    fired_at: float | None = None  # demo seconds
    resolved_at: float | None = None
    firing_before: bool = False  # already firing when the demo started

    @property
    def done(self) -> bool:
        return self.resolved_at is not None and (self.fired_at is not None or self.firing_before)


class AlertWatch:
    """Polls ``/pulse/alerts`` and reports each transition of the demo's rules once."""

    def __init__(
        self, body: dict[str, Any], names: Iterable[str], origin: float, err: TextIO
    ) -> None:
        self.rules = {name: RuleProgress() for name in names}
        self.origin = origin  # the proxy's clock at demo second 0
        self._err = err
        self._seen = {self._key(entry) for entry in body.get("recent", [])}
        self.state: dict[str, dict[str, Any]] = {}
        self._update_state(body)
        for name, rule in self.state.items():
            if name in self.rules and rule.get("firing"):
                self.rules[name].firing_before = True

    @staticmethod
    def _key(entry: dict[str, Any]) -> tuple[Any, ...]:
        return (
            entry.get("event"),
            entry.get("alert"),
            entry.get("fired_at"),
            entry.get("resolved_at"),
        )

    def _update_state(self, body: dict[str, Any]) -> None:
        self.state = {rule["name"]: rule for rule in body.get("rules", [])}

    def feed(self, body: dict[str, Any]) -> None:
        self._update_state(body)
        for entry in reversed(body.get("recent", [])):  # oldest first
            key = self._key(entry)
            if key in self._seen:
                continue
            self._seen.add(key)
            progress = self.rules.get(entry.get("alert", ""))
            if progress is None:
                continue
            fired = entry.get("event") == "alert.fired"
            stamp = entry.get("fired_at") if fired else entry.get("resolved_at")
            at = epoch(stamp) - self.origin if stamp else 0.0
            if fired:
                progress.fired_at = at
            else:
                progress.resolved_at = at
            mark = "▲ FIRED   " if fired else "▼ RESOLVED"
            print(
                f"[{clock_text(at)}] {mark} {entry.get('message', entry.get('alert'))}",
                file=self._err,
            )

    @property
    def done(self) -> bool:
        return all(progress.done for progress in self.rules.values())

    def firing(self) -> list[str]:
        return [n for n in self.rules if self.state.get(n, {}).get("firing")]

    def missing(self) -> tuple[list[str], list[str]]:
        """(rules that never fired, rules that fired but did not resolve)."""
        unfired = [n for n, p in self.rules.items() if p.fired_at is None and not p.firing_before]
        unresolved = [
            n for n, p in self.rules.items() if n not in unfired and p.resolved_at is None
        ]
        return unfired, unresolved
