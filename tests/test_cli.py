"""The command line as a user runs it: a real process, real sockets, stdout events."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx
import openai
import orjson
from conftest import ProxyProcess, clean_env, wait_until


def test_serve_starts_the_bundled_mock_and_says_so(running: ProxyProcess) -> None:
    """With no upstream configured, the first line announces the bundled mock, and requests work end to end."""
    first = running.lines[0]
    assert first["event"] == "pulse.started" and first["mock"] is True
    assert {"timestamp", "level", "schema"} <= set(first) and first["schema"] == "pulse.v1"
    client = openai.OpenAI(
        base_url=running.url + "/v1", api_key="sk-cli-test-key-123", max_retries=0
    )
    completion = client.chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": "hi"}]
    )
    wait_until(lambda: bool(running.events("llm.request")))
    assert httpx.get(running.url + "/readyz").status_code == 200
    code, stderr = running.stop()
    assert code == 0, stderr
    (event,) = running.events("llm.request")
    assert completion.usage is not None and event["total_tokens"] == completion.usage.total_tokens
    assert event["timestamp"].endswith("Z") and len(event["timestamp"]) == 24
    assert running.lines[-1]["event"] == "pulse.stopped"
    everything = b"".join(running.raw) + stderr
    assert b"sk-cli-test-key-123" not in everything


def test_every_spec_field_is_in_the_event(running: ProxyProcess) -> None:
    """An llm.request line carries every field SPEC lists, null where not applicable."""
    httpx.post(
        running.url + "/v1/embeddings", json={"model": "text-embedding-3-small", "input": "hi"}
    )
    wait_until(lambda: bool(running.events("llm.request")))
    running.stop()
    (event,) = running.events("llm.request")
    spec_fields = [
        "request_id",
        "method",
        "path",
        "endpoint",
        "model",
        "response_model",
        "upstream",
        "status_code",
        "outcome",
        "stream",
        "latency_ms",
        "ttft_ms",
        "upstream_ms",
        "overhead_ms",
        "prompt_tokens",
        "completion_tokens",
        "total_tokens",
        "token_source",
        "prompt_tokens_local",
        "prompt_chars",
        "messages",
        "max_tokens",
        "finish_reason",
        "tokens_per_second",
        "cost_usd",
        "risk_flags",
        "user",
        "tags",
        "api_key_hash",
        "error_type",
        "error_message",
        "bytes_in",
        "bytes_out",
    ]
    missing = [f for f in ["event", "timestamp", "level", "schema", *spec_fields] if f not in event]
    assert not missing
    assert event["ttft_ms"] is None and event["error_type"] is None


def test_check_config_names_the_bad_key(tmp_path: Path) -> None:
    """check-config prints the effective config, or exits non-zero naming the bad key."""
    good = tmp_path / "good.yaml"
    good.write_text("upstream:\n  url: https://api.openai.com/v1\n  api_key: sk-hidden-value\n")
    ok = subprocess.run(
        [sys.executable, "-m", "pulse_proxy", "check-config", str(good)],
        capture_output=True,
        env=clean_env(),
        check=False,
    )
    assert ok.returncode == 0, ok.stderr
    shown = orjson.loads(ok.stdout)
    assert shown["upstream"]["url"] == "https://api.openai.com/v1"
    assert b"sk-hidden-value" not in ok.stdout
    bad = tmp_path / "bad.yaml"
    bad.write_text("server:\n  prot: 80\n")
    failed = subprocess.run(
        [sys.executable, "-m", "pulse_proxy", "check-config", str(bad)],
        capture_output=True,
        env=clean_env(),
        check=False,
    )
    assert failed.returncode != 0
    assert b"server.prot" in failed.stderr


def test_console_log_format_is_for_humans_and_still_one_line_per_event() -> None:
    """--log-format console writes readable lines, control characters escaped."""
    import io

    from pulse_proxy.records import Exchange
    from pulse_proxy.sinks.log import LogSink, make_logger

    stream = io.BytesIO()
    logger, writer = make_logger(stream, "console")
    LogSink(logger, writer).on_exchange(
        Exchange(request_id="r1", method="POST", path="/v1/x", model="evil\nmodel")
    )
    writer.close()
    lines = stream.getvalue().decode().splitlines()
    assert len(lines) == 1
    assert "llm.request" in lines[0] and "evil\\nmodel" in lines[0] and not lines[0].startswith("{")


def test_report_reads_events_from_stdin(tmp_path: Path) -> None:
    """pulse-proxy report - summarises piped llm.request lines and skips garbage."""
    lines = [
        orjson.dumps(
            {
                "event": "llm.request",
                "timestamp": "2026-11-29T03:00:00.000Z",
                "model": "gpt-4o",
                "latency_ms": 120.0 + i,
                "ttft_ms": None,
                "prompt_tokens": 10,
                "completion_tokens": 5,
                "total_tokens": 15,
                "outcome": "success",
                "cost_usd": 0.0001,
                "status_code": 200,
                "stream": False,
                "request_id": f"r{i}",
            }
        ).decode()
        for i in range(20)
    ] + ["not json", '{"event": "something.else"}']
    result = subprocess.run(
        [sys.executable, "-m", "pulse_proxy", "report", "-"],
        input="\n".join(lines).encode(),
        capture_output=True,
        env=clean_env(),
        check=False,
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout.decode()
    assert "gpt-4o" in out and "20" in out
    assert "malformed" in out.lower() or "skipped" in out.lower()


def _cli(
    *args: str, env: dict[str, str] | None = None, stdin: bytes = b""
) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "pulse_proxy", *args],
        input=stdin,
        capture_output=True,
        env=env or clean_env(),
        check=False,
        timeout=60,
    )


def test_check_config_applies_the_environment_and_names_the_variable(tmp_path: Path) -> None:
    """check-config prints what serve would run with: PULSE_* variables included, and a
    misspelt variable is refused by its own name, not only by a dotted key."""
    config = tmp_path / "pulse.yaml"
    config.write_text("upstream:\n  url: https://api.openai.com/v1\n")
    env = {**clean_env(), "PULSE_UPSTREAM__READ_TIMEOUT_S": "42"}
    ok = _cli("check-config", str(config), env=env)
    assert ok.returncode == 0, ok.stderr
    assert orjson.loads(ok.stdout)["upstream"]["read_timeout_s"] == 42
    env = {**clean_env(), "PULSE_UPSTREAM__READ_TIMOUT_S": "42"}
    bad = _cli("check-config", str(config), env=env)
    assert bad.returncode == 2
    assert b"upstream.read_timout_s (from PULSE_UPSTREAM__READ_TIMOUT_S)" in bad.stderr
    assert b"Traceback" not in bad.stderr


def test_report_of_a_missing_file_is_one_clear_line() -> None:
    result = _cli("report", "/nonexistent/pulse.log")
    assert result.returncode == 2
    assert (
        result.stderr.decode().strip()
        == "pulse-proxy: cannot read /nonexistent/pulse.log: No such file or directory"
    )


def test_report_into_a_closed_pipe_exits_quietly() -> None:
    """``pulse-proxy report big.log | head`` must not end in a BrokenPipeError traceback."""
    line = orjson.dumps(
        {"event": "llm.request", "model": "m", "latency_ms": 1.0, "outcome": "success"}
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "pulse_proxy", "report", "-"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=clean_env(),
    )
    assert proc.stdout is not None and proc.stdin is not None
    proc.stdout.close()  # the reader is gone before the report is written
    _, err = proc.communicate(b"\n".join([line] * 2000), timeout=60)
    assert b"Traceback" not in err and b"BrokenPipe" not in err, err.decode()
    assert proc.returncode == 0


def test_subcommand_help_describes_the_argument() -> None:
    """Both commands that read a file say what FILE is and that - is standard input."""
    report_help = _cli("report", "--help").stdout
    assert (
        b"FILE" in report_help and b"a file of JSON lines, or - for standard input" in report_help
    )
    check_help = _cli("check-config", "--help").stdout
    assert b"PULSE_* variables" in check_help
    assert b"FILE" in check_help and b"a YAML config file, or - for standard input" in check_help


def test_check_config_reads_standard_input() -> None:
    """check-config - validates piped YAML, and names a bad key in it, as for a file."""
    ok = _cli("check-config", "-", stdin=b"upstream:\n  read_timeout_s: 42\n")
    assert ok.returncode == 0, ok.stderr
    assert orjson.loads(ok.stdout)["upstream"]["read_timeout_s"] == 42
    bad = _cli("check-config", "-", stdin=b"upstream:\n  read_timout_s: 42\n")
    assert bad.returncode == 2 and b"upstream.read_timout_s" in bad.stderr
    assert b"Traceback" not in bad.stderr


def test_report_prints_long_model_names_whole() -> None:
    """pulse-proxy report shows a long model name uncut in every table, even when two
    differ only in their last character."""
    stem = "ft:gpt-4o-mini-2024-07-18:acme-research:customer-support-summaries:9abcDEF"
    lines = [
        orjson.dumps(
            {
                "event": "llm.request",
                "timestamp": "2026-11-29T03:00:00.000Z",
                "model": stem + tail,
                "latency_ms": 100.0,
                "prompt_tokens": 10,
                "completion_tokens": 5,
                "total_tokens": 15,
                "outcome": "success",
            }
        )
        for tail in "ab"
    ]
    result = _cli("report", "-", stdin=b"\n".join(lines))
    assert result.returncode == 0, result.stderr
    rows = [
        line.split()[0] for line in result.stdout.decode().splitlines() if line.startswith(stem)
    ]
    assert rows == [stem + "a", stem + "b"] * 3, result.stdout.decode()
