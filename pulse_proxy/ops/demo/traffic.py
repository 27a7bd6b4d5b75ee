"""The run's traffic: calm requests throughout and the four bursts, each sized when it starts,
and the loop that follows the alerts (through an :class:`AlertWatch`) until the run is done."""

from __future__ import annotations

import asyncio
import math
from collections import deque
from typing import Any, TextIO

import aiohttp

from pulse_proxy.ops.demo.client import DemoError, Proxy
from pulse_proxy.ops.demo.clock import DemoClock, clock_text
from pulse_proxy.ops.demo.mix import Call, Mix
from pulse_proxy.ops.demo.pacing import (
    BURST_RATE,
    CALM_TOKENS,
    HEARTBEAT_S,
    PHASE_S,
    RATE,
    SHARE,
    SLOW_MS,
    WINDOW_S,
)
from pulse_proxy.ops.demo.plan import Plan, rule_config
from pulse_proxy.ops.demo.proxy_stats import Background
from pulse_proxy.ops.demo.watch import AlertWatch


def burst_size(others: float, minimum: int, maximum: int) -> int:
    """How many requests make ``SHARE`` of a window that holds ``others`` besides them."""
    return max(minimum, min(maximum, math.ceil(SHARE / (1 - SHARE) * others)))


class Demo:
    """One run: calm traffic throughout, the four bursts on the plan, the alerts followed.

    Bursts are sized from the rules' state that the watcher polls anyway (and from what
    the demo itself sent): no extra call to the proxy sits between a burst's time and
    its sending, which at a high ``--speed`` would push it many demo seconds late.
    """

    def __init__(
        self,
        proxy: Proxy,
        clock: DemoClock,
        mix: Mix,
        watch: AlertWatch,
        background: Background,
        err: TextIO,
    ) -> None:
        self.proxy = proxy
        self.clock = clock
        self.mix = mix
        self.watch = watch
        self.background = background
        self.err = err
        self.stop = asyncio.Event()
        self.long_tokens = 0
        self._sent_at: deque[float] = deque()

    def say(self, text: str, at: float | None = None) -> None:
        print(f"[{clock_text(self.clock.now() if at is None else at)}] {text}", file=self.err)

    def send(self, call: Call) -> None:
        self._sent_at.append(self.clock.now())
        self.proxy.send(call)

    def window_requests(self) -> float:
        """Requests in the proxy's 5-minute window now: what the rules counted at the last
        poll (other clients' traffic included), or what we sent if more (ours may still be
        on their way to the statistics)."""
        horizon = self.clock.now() - WINDOW_S
        while self._sent_at and self._sent_at[0] < horizon:
            self._sent_at.popleft()
        state = self.watch.state
        counted = [state.get(n, {}).get("samples") or 0 for n in ("error_rate", "high_latency")]
        return max(len(self._sent_at), *counted)

    async def calm(self) -> None:
        """Normal traffic at RATE per demo second until the run ends."""
        sent = 0
        while not self.stop.is_set():
            await self.clock.until(sent / RATE)
            self.send(self.mix.calm())
            sent += 1

    async def spread(self, calls: list[Call]) -> None:
        """Send ``calls`` evenly over one phase, longer if that would exceed BURST_RATE."""
        start = self.clock.now()
        duration = max(PHASE_S, len(calls) / BURST_RATE)
        for i, call in enumerate(calls):
            await self.clock.until(start + duration * i / len(calls))
            self.send(call)

    async def slow_answers(self, at: float) -> None:
        await self.clock.until(at)
        # Slow answers land seconds later: at a high --speed, many demo seconds later.
        landing = RATE * max(PHASE_S, SLOW_MS[1] / 1000 * self.clock.speed)
        count = burst_size(self.window_requests() + landing, 12, 300)
        self.say(
            f"slow answers: {count} chat requests taking {SLOW_MS[0] / 1000:.1f}–{SLOW_MS[1] / 1000:.1f} s "
            "(high_latency: p95 latency over 5 min above 2,000 ms)"
        )
        await self.spread([self.mix.slow() for _ in range(count)])

    async def failures(self, at: float) -> None:
        await self.clock.until(at)
        count = burst_size(self.window_requests() + RATE * PHASE_S, 25, 400)
        self.say(
            f"error burst: {count} requests failing with 500/502/503/429 or a cut stream "
            "(error_rate: above 5 % over 5 min)"
        )
        await self.spread([self.mix.failure() for _ in range(count)])

    async def long_prompts(self, at: float, hard_cap: float | None) -> None:
        sizes = [self.mix.rng.randint(3000, 6000) for _ in range(8)]
        if hard_cap is not None and hard_cap <= 1_000_000:
            sizes.insert(len(sizes) // 2, int(hard_cap * 1.1))
        calls = [self.mix.long_prompt(size) for size in sizes]  # built before their time
        self.long_tokens = sum(sizes)
        await self.clock.until(at)
        self.say(
            f"long prompts: {len(sizes)} pasted documents of {min(sizes):,}–{max(sizes):,} tokens "
            "(prompt_length_spike: p95 over 3× its baseline, or any prompt above the hard cap)"
        )
        await self.spread(calls)

    async def token_burst(self, at: float, threshold: float) -> None:
        """Long answers: with the long prompts, 1.5× what token_spike's threshold allows."""
        await self.clock.until(at)
        wanted = 1.5 * threshold * WINDOW_S / 60 - self.long_tokens
        total = int(max(40_000, min(3_000_000, wanted)))
        per = max(4000, min(100_000, math.ceil(total / 60)))
        count = math.ceil(total / per)
        self.say(
            f"token burst: {count} answers of {per:,} tokens, {count * per:,} in all "
            f"(token_spike: tokens/min over 5 min above 3× the baseline; threshold ≈ {threshold:,.0f}/min)"
        )
        await self.spread([self.mix.heavy(per) for _ in range(count)])

    def spike_threshold(self, rules: dict[str, dict[str, Any]]) -> float:
        """token_spike's threshold now or, before a baseline exists, what it will likely be."""
        current = self.watch.state.get("token_spike", {}).get("threshold")
        if current is not None:
            return float(current)
        floor = float(rule_config(rules, "token_spike", "floor") or 0.0)
        factor = float(rule_config(rules, "token_spike", "factor") or 3.0)
        expected = self.background.tokens_per_minute + RATE * 60 * CALM_TOKENS
        return max(floor, factor * expected)


async def run_bursts(demo: Demo, plan: Plan, rules: dict[str, dict[str, Any]]) -> None:
    """The four incidents, in order; each burst is sized from what the proxy sees then."""
    await demo.slow_answers(plan.slow_at)
    await demo.failures(plan.errors_at)
    await demo.clock.until(plan.prompts_at)
    # Read before the long prompts, which would inflate the estimate they are part of.
    threshold = demo.spike_threshold(rules)
    cap = rule_config(rules, "prompt_length_spike", "hard_cap")
    await demo.long_prompts(plan.prompts_at, float(cap) if cap else None)
    await demo.token_burst(plan.tokens_at, threshold)
    demo.say(
        "calm traffic until every alert resolves: each incident must leave the 5 min window, "
        "then stay clear for 60 s"
    )


async def watch_alerts(demo: Demo, watch: AlertWatch, plan: Plan) -> None:
    """Follow /pulse/alerts until every rule fired and resolved; heartbeat once a minute."""
    poll_s = max(0.05, min(2.0, demo.clock.real(2.0)))
    next_beat = HEARTBEAT_S
    failures = 0
    # With none of the default rules configured there is nothing to wait for but the plan.
    while not watch.done or (not watch.rules and demo.clock.now() < plan.expected_end):
        await asyncio.sleep(poll_s)
        try:
            watch.feed(await demo.proxy.admin("/pulse/alerts"))
            failures = 0
        except (TimeoutError, aiohttp.ClientError, DemoError) as exc:
            failures += 1
            if failures * poll_s > 30:
                raise DemoError(f"the proxy stopped answering ({exc})") from exc
        now = demo.clock.now()
        if now >= next_beat and not watch.done:
            next_beat = (now // HEARTBEAT_S + 1) * HEARTBEAT_S
            unfired, unresolved = watch.missing()
            waiting = [
                f"{', '.join(names)} to {verb}"
                for names, verb in ((unfired, "fire"), (unresolved, "resolve"))
                if names
            ]
            demo.say(
                f"{sum(demo.proxy.sent.values()):,} requests so far; waiting for {'; '.join(waiting)} "
                f"(expected by ~{clock_text(plan.expected_end)})"
            )
