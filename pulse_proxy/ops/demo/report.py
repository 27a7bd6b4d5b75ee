"""What the person running the demo reads: the opening lines and the closing summary."""

from __future__ import annotations

from collections import Counter
from typing import TextIO

from pulse_proxy.ops.demo.client import Proxy
from pulse_proxy.ops.demo.clock import clock_text, duration_text
from pulse_proxy.ops.demo.mix import TEAMS, USERS
from pulse_proxy.ops.demo.pacing import RATE
from pulse_proxy.ops.demo.plan import Plan
from pulse_proxy.ops.demo.traffic import Demo
from pulse_proxy.ops.demo.watch import AlertWatch


def introduce(
    demo: Demo, plan: Plan, names: list[str], absent: list[str], watch: AlertWatch, speed: float
) -> None:
    speed_text = "" if speed == 1 else f" at {speed:g}× speed"
    demo.say(
        f"LLM Pulse demo → {demo.proxy.base} (bundled mock upstream){speed_text}; "
        f"following {', '.join(names) or 'no rules'}; done by ~{clock_text(plan.expected_end)}"
    )
    if absent:
        demo.say(f"not configured on this proxy, so not followed: {', '.join(absent)}")
    already = [n for n, p in watch.rules.items() if p.firing_before]
    if already:
        demo.say(
            f"already firing before the demo: {', '.join(already)} (its resolution will count)"
        )
    if plan.note:
        demo.say(plan.note)
    demo.say(
        f"warm-up: chat, streams, embeddings, Responses and model lists from {len(USERS)} users in {len(TEAMS)} teams (~{RATE:g} req/s)"
    )


KIND_NAMES = {
    "chat": "chat", "stream": "streamed chat", "embeddings": "embeddings", "responses": "Responses",
    "models": "model lists", "slow": "slow", "error": "failing", "long_prompt": "long prompts",
    "token_burst": "long answers",
}  # fmt: skip


def summary(out: TextIO, base: str, demo: Demo, watch: AlertWatch, elapsed: float) -> None:
    """The result for stdout: the outcome, each alert's times, what was sent."""
    speed = demo.clock.speed
    speed_text = "" if speed == 1 else f" (demo clock, {speed:g}× speed)"
    unfired, unresolved = watch.missing()
    if not unfired and not unresolved:
        head = f"all {len(watch.rules)} alerts fired and resolved in {duration_text(elapsed)}{speed_text}"
    else:
        missing = [f"never fired: {', '.join(unfired)}"] if unfired else []
        missing += [f"did not resolve: {', '.join(unresolved)}"] if unresolved else []
        head = f"stopped after {duration_text(elapsed)}{speed_text}; " + "; ".join(missing)
    lines = [f"pulse-proxy demo against {base}: {head}", ""]
    lines += alert_table(watch)
    lines += ["", *traffic_lines(demo.proxy)]
    print("\n".join(lines), file=out)


def alert_table(watch: AlertWatch) -> list[str]:
    lines = [f"{'alert':<22}{'fired':>8}{'resolved':>10}{'lasted':>10}"]
    for name, p in watch.rules.items():
        fired = "before" if p.firing_before and p.fired_at is None else _at(p.fired_at)
        lasted = "-"
        if p.fired_at is not None and p.resolved_at is not None:
            lasted = duration_text(p.resolved_at - p.fired_at)
        lines.append(f"{name:<22}{fired:>8}{_at(p.resolved_at):>10}{lasted:>10}")
    return lines


def traffic_lines(proxy: Proxy) -> list[str]:
    kinds = ", ".join(f"{KIND_NAMES.get(k, k)} {n:,}" for k, n in proxy.sent.most_common())
    classes: Counter[str] = Counter()
    for status, count in proxy.statuses.items():
        classes[f"{status // 100}xx"] += count
    answers = ", ".join(f"{cls} {count:,}" for cls, count in sorted(classes.items()))
    return [
        f"requests sent: {sum(proxy.sent.values()):,} ({kinds})",
        f"answers: {answers or 'none'}; no answer (cut or refused): {proxy.failed:,}",
    ]


def _at(value: float | None) -> str:
    return "-" if value is None else clock_text(value)
