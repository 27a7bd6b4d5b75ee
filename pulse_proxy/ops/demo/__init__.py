"""``pulse-proxy demo``: a realistic traffic mix through a running proxy, scripted so
that every dashboard panel fills and each default alert fires once and resolves once.

The demo steers the bundled mock upstream with ``X-Mock-*`` headers (the proxy forwards
them untouched), so it first checks that the proxy's upstream *is* that mock: against a
real provider the headers do nothing and every request would be billed.

The timeline follows what the rules in :mod:`pulse_proxy.alerts` actually measure:

* Every default rule judges the last 5 minutes and resolves after 60 s back inside its
  hysteresis band, so an incident lasts as long as its requests stay in the window.  The
  run ends no sooner than the last burst + 5 min + 60 s (+ one 10 s bucket and one
  evaluation): about 7½ minutes in all.
* ``high_latency`` and ``error_rate`` are absolute (more than 5 % of the window's requests
  slow or failed, with at least 10 / 20 of them).  Each burst is sized from the window's
  request count when it starts, so it crosses on any proxy, fresh or busy.
* ``token_spike`` compares the window with a baseline taken strictly *before* it, and a
  baseline must itself span 5 minutes: on a fresh proxy it exists only after ~10–11
  minutes of uptime.  The long-prompt and token bursts are then placed just after the
  span that baseline will cover and still inside the window it will judge, so the rule
  fires on its first chance and the whole run ends ~13 minutes after the proxy started
  (for a proxy up 6 minutes or more, nothing needs to wait).
  Bursts are sized from the rule's current threshold, so a busy or recently spiked
  baseline does not swallow them.
* ``prompt_length_spike`` fires on its hard cap (one prompt above it), which needs no
  baseline at all.

``--speed N`` divides every duration and interval by N; it is meant for a proxy whose
clock runs N times faster than real time (the test suite), since the proxy's windows
are measured on its own clock.  Mock latencies stay real: the latency rule is in real ms.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import TextIO

import aiohttp

from pulse_proxy.ops.demo.client import (
    DemoError,
    Proxy,
    check_upstream_is_mock,
    wait_until_ready,
    warm_up,
)
from pulse_proxy.ops.demo.clock import DemoClock, epoch
from pulse_proxy.ops.demo.mix import Mix, document
from pulse_proxy.ops.demo.plan import make_plan
from pulse_proxy.ops.demo.proxy_stats import Background, uptime
from pulse_proxy.ops.demo.report import introduce, summary
from pulse_proxy.ops.demo.traffic import Demo, run_bursts, watch_alerts
from pulse_proxy.ops.demo.watch import RULES, AlertWatch

__all__ = ["RULES", "add_demo_arguments", "document", "make_plan", "run_demo"]

DEFAULT_PROXY = "http://127.0.0.1:8080"


async def _run(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    base = args.proxy.rstrip("/").removesuffix("/v1")
    timeout = aiohttp.ClientTimeout(total=120, connect=5)
    connector = aiohttp.TCPConnector(limit=400)
    async with aiohttp.ClientSession(
        timeout=timeout, connector=connector, trust_env=False
    ) as session:
        proxy = Proxy(session, base, args.admin_token)
        await wait_until_ready(proxy, args.wait)
        await check_upstream_is_mock(proxy)
        mix = Mix()
        await warm_up(proxy, mix, max(args.wait, 10.0))
        alerts = await proxy.admin("/pulse/alerts")
        stats = await proxy.admin("/pulse/stats")
        clock = DemoClock(args.speed)
        rules = {
            rule["name"]: rule
            for rule in alerts.get("rules", [])
            if rule.get("state") != "disabled"
        }
        names = [name for name in RULES if name in rules]
        absent = [name for name in RULES if name not in rules]
        proxy_now = epoch(stats["generated_at"])
        plan = make_plan(uptime(stats), proxy_now, rules)
        watch = AlertWatch(alerts, names, proxy_now - clock.now(), err)
        demo = Demo(proxy, clock, mix, watch, Background.from_stats(stats), err)
        introduce(demo, plan, names, absent, watch, args.speed)
        deadline = clock.real(args.max_minutes * 60)
        tasks = [
            asyncio.create_task(demo.calm()),
            asyncio.create_task(run_bursts(demo, plan, rules)),
        ]
        outcome = 0
        try:
            await asyncio.wait_for(watch_alerts(demo, watch, plan), deadline)
        except TimeoutError:
            outcome = 1
        finally:
            elapsed = clock.now()
            demo.stop.set()
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await proxy.drain(timeout=5.0)
        summary(out, base, demo, watch, elapsed)
        return outcome


# -- command line -------------------------------------------------------------------------

DESCRIPTION = """\
Send a realistic traffic mix through a running proxy (chat, streams, embeddings,
Responses, model lists, several models, users and teams), then slow answers, an error
burst, a burst of long prompts and a token-heavy burst, so that every dashboard panel
fills and each default alert (high_latency, error_rate, prompt_length_spike,
token_spike) fires once and resolves once. Progress goes to stderr, a summary to stdout.

The proxy must forward to the bundled mock upstream (`pulse-proxy` with no upstream set,
or PULSE_UPSTREAM_URL=mock): the demo steers it with X-Mock-* headers and refuses to run
against any other upstream.

Duration: about 7.5 minutes, or 13 minutes minus the proxy's uptime when that is longer:
right after starting the proxy, about 13 minutes (token_spike needs 5 minutes of
baseline before the 5 minutes it judges). It ends as soon as every alert has resolved;
exit 0 when all fired and resolved, 1 past --max-minutes (naming what did not), 2 when
it cannot start."""


def add_demo_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = DESCRIPTION
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument(
        "--proxy",
        metavar="URL",
        default=DEFAULT_PROXY,
        help=f"the running proxy's base URL (default {DEFAULT_PROXY})",
    )
    parser.add_argument(
        "--admin-token",
        metavar="TOKEN",
        help='the proxy\'s admin token, when it has one (e.g. "$PULSE_ADMIN_TOKEN")',
    )
    parser.add_argument(
        "--speed",
        metavar="N",
        type=float,
        default=1.0,
        help="divide every duration by N, for a proxy whose clock runs N× faster (tests; default 1)",
    )
    parser.add_argument(
        "--max-minutes",
        metavar="M",
        type=float,
        default=20.0,
        help="give up after M minutes of demo time, exiting 1 (default 20)",
    )
    parser.add_argument(
        "--wait", metavar="SECONDS", type=float, default=10.0,
        help="how long to wait for the proxy to be ready (default 10)",
    )  # fmt: skip


def run_demo(
    args: argparse.Namespace, *, out: TextIO | None = None, err: TextIO | None = None
) -> int:
    """Run the demo; 0 when every followed alert fired and resolved, 1 past the deadline, 2 if it cannot start."""
    out = out or sys.stdout
    err = err or sys.stderr
    if not args.speed > 0 or not args.max_minutes > 0:
        print("pulse-proxy demo: --speed and --max-minutes must be positive", file=err)
        return 2
    try:
        return asyncio.run(_run(args, out, err))
    except DemoError as exc:
        print(f"pulse-proxy demo: {exc}", file=err)
        return 2
    except KeyboardInterrupt:
        print("pulse-proxy demo: interrupted", file=err)
        return 130
