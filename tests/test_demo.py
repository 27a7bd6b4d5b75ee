"""``pulse-proxy demo`` end to end: the real CLI, a real proxy, the bundled mock.

The proxy runs on a clock 30× faster than real time and evaluates its rules every
5 seconds of that clock, so the demo's ~7½ minutes pass in about 15 seconds, with every
window, baseline and hysteresis rule exactly as in production.  The proxy has been up
(idle) for 15 minutes of its clock, as after ``make run`` and some trying out; the
fresh-proxy schedule, which waits for token_spike's first baseline, is checked on the
plan itself (a run of it takes twice as long).
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections import Counter

import httpx
import pytest
from conftest import start_proxy

from pulse_proxy.ops.demo import RULES, document, make_plan

SPEED = 30.0


class Accelerated:
    """Wall-clock time that starts now, runs ``speed`` times faster, and can jump ahead."""

    def __init__(self, speed: float) -> None:
        self.origin = time.time()
        self.speed = speed
        self.offset = 0.0

    def __call__(self) -> float:
        return self.origin + (time.time() - self.origin) * self.speed + self.offset


def run_cli(*args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pulse_proxy", "demo", *args],
        capture_output=True, text=True, timeout=timeout, check=False,
    )  # fmt: skip


@pytest.mark.slow
def test_demo_fires_and_resolves_every_default_alert(mock_url: str) -> None:
    """Each default rule fires exactly once and resolves exactly once; every panel has data."""
    config = {"alerts": {"evaluation_interval_s": 5 / SPEED}, "server": {"summary_interval_s": 0}}
    clock = Accelerated(SPEED)
    with start_proxy(mock_url + "/v1", config, clock=clock) as proxy:
        clock.offset = 15 * 60
        started = time.monotonic()
        result = run_cli(
            "--proxy", proxy.url, "--speed", str(SPEED), "--max-minutes", "25", timeout=90
        )
        took = time.monotonic() - started
        assert result.returncode == 0, result.stderr + result.stdout
        assert "all 4 alerts fired and resolved" in result.stdout

        transitions = Counter((a.alert, a.event) for a in proxy.sink.alerts)
        assert transitions == {
            (rule, event): 1 for rule in RULES for event in ("alert.fired", "alert.resolved")
        }
        logged = [line for line in proxy.log_lines() if line["event"].startswith("alert.")]
        assert len(logged) == 8

        exchanges = proxy.exchanges
        assert {"chat", "embeddings", "responses", "models"} <= {e.endpoint for e in exchanges}
        assert any(e.stream and e.ttft_ms is not None for e in exchanges)
        assert {"upstream_error", "connection_error"} <= {e.outcome for e in exchanges}
        assert len({e.user for e in exchanges}) >= 4 and any(e.tags for e in exchanges)

        hour = httpx.get(proxy.url + "/pulse/stats").json()["windows"]["1h"]
        overall = hour["overall"]
        assert overall["errors"] > 0 and overall["ttft_ms"]["count"] > 0
        prompt = overall["prompt_tokens"]
        assert prompt["p50"] < 100 and prompt["max"] > 100_000
        assert overall["latency_ms"]["max"] > 2000
        assert "text-embedding-3-small" in hour["models"] and len(hour["models"]) >= 5
        assert took < 60, f"demo took {took:.0f} s"


def test_plan_waits_for_token_spikes_first_baseline_on_a_fresh_proxy() -> None:
    """Up 30 s: the bursts go out when the first baseline will end before them and its
    judged window will still hold them; up an hour: at once, after the warm-up."""
    rules = {"token_spike": {"config": {"window_s": 300, "resolve_for_s": 60}}}
    now = 1_800_000_000.0  # on a minute boundary
    fresh = make_plan(30, now, rules)
    started = now - 30
    first_baseline = started + 30 + 300 + 300  # 5 min of history, before the judged 5 min
    assert first_baseline - 300 < now + fresh.prompts_at < first_baseline - 180
    assert now + fresh.tokens_at + 10 < first_baseline
    assert fresh.note is not None and "token_spike" in fresh.note
    assert 12 * 60 < fresh.expected_end < 14 * 60
    settled = make_plan(float("inf"), now, rules)
    assert settled.prompts_at == 50 and settled.note is None
    assert settled.expected_end < 7.5 * 60


def test_long_prompt_documents_have_the_size_asked_for() -> None:
    """The hard-cap prompt must cross the cap in every tokenizer the mock may use."""
    import random

    from pulse_proxy.accounting import tokens

    text = document(110_000, random.Random(1))
    for model in ("gpt-4.1", "gpt-4"):
        assert tokens.count_text(text, model) == 110_006


def test_demo_without_a_proxy_exits_2_with_a_clear_message() -> None:
    """Nothing listening: a non-zero exit that says what to start, without a traceback."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    result = run_cli("--proxy", f"http://127.0.0.1:{port}", "--wait", "0", timeout=30)
    assert result.returncode == 2
    assert f"no proxy answers at http://127.0.0.1:{port}" in result.stderr
    assert "pulse-proxy" in result.stderr and "Traceback" not in result.stderr
    assert result.stdout == ""


def test_demo_refuses_an_upstream_that_is_not_the_mock(mock_url: str) -> None:
    """A proxy in front of anything but the bundled mock: X-Mock-* would do nothing but bill."""
    from conftest import run_server
    from starlette.applications import Starlette
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    async def models(_: object) -> JSONResponse:
        return JSONResponse(
            {"object": "list", "data": [{"id": "gpt-4o", "object": "model", "owned_by": "openai"}]}
        )

    real_looking = Starlette(routes=[Route("/v1/models", models)])
    with run_server(real_looking) as upstream, start_proxy(upstream + "/v1") as proxy:
        result = run_cli("--proxy", proxy.url, "--wait", "5", timeout=30)
    assert result.returncode == 2
    assert "does not forward to the bundled mock" in result.stderr
    assert not [e for e in proxy.exchanges if e.endpoint == "chat"]


def test_demo_with_admin_token_and_deadline(mock_url: str) -> None:
    """/pulse/* behind a token: without it a clear exit 2; with it the run goes on, and
    past --max-minutes it exits 1 naming every alert that did not fire."""
    config = {"server": {"admin_token": "demo-admin"}}
    with start_proxy(mock_url + "/v1", config) as proxy:
        refused = run_cli("--proxy", proxy.url, timeout=30)
        assert refused.returncode == 2 and "--admin-token" in refused.stderr
        late = run_cli("--proxy", proxy.url, "--admin-token", "demo-admin", "--speed", "60",
                       "--max-minutes", "0.5", timeout=60)  # fmt: skip
    assert late.returncode == 1, late.stderr
    assert "never fired: high_latency, error_rate, prompt_length_spike, token_spike" in late.stdout


def test_demo_help_names_the_mock_and_the_duration() -> None:
    from pulse_proxy.ops.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    text = sub.choices["demo"].format_help()  # type: ignore[attr-defined]
    assert "bundled mock" in text and "X-Mock-*" in text and "13 minutes" in text
    for flag in ("--proxy", "--admin-token", "--speed", "--max-minutes"):
        assert flag in text
