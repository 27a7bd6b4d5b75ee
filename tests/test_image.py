"""The sidecar image, built by a real engine and run as an operator runs it.

test_deploy.py and test_packaging.py read the Dockerfile and replay it without an
engine; here ``docker build`` builds it and ``docker run`` / ``docker-compose`` run it:
the listener, a stream through the bundled mock, the ``llm.request`` event in
``docker logs``, the image's own HEALTHCHECK, ``docker stop`` in the middle of a stream,
a read-only root with no capabilities, and deploy/docker-compose.yml end to end.

Environment (set by .ci/run, which installs and starts the engine):
    PULSE_TEST_PYTHON_IMAGE   base image for the build (``--build-arg PYTHON_IMAGE``),
                              e.g. the stand-in from .ci/stand-in-base when no
                              container registry is reachable; unset: the Dockerfile's
    PULSE_TEST_DOCKERD_LOG    dockerd's log, quoted when the engine does not answer
    PULSE_TEST_IMAGE_REQUIRED "1": an engine was set up, so fail rather than skip

Select with ``-m image``, leave out with ``-m "not image"``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import containerfile
import httpx
import orjson
import pytest
from conftest import free_port, wait_until

ROOT = containerfile.ROOT
DEPLOY = ROOT / "deploy"
pytestmark = [pytest.mark.image, pytest.mark.slow, pytest.mark.timeout(900)]

# The legacy builder: BuildKit would fetch the `# syntax=` frontend from a registry.
_BUILD_ENV = {**os.environ, "DOCKER_BUILDKIT": "0"}


def _unavailable(reason: str) -> None:
    """Skip, or fail where CI set an engine up and the test must not quietly vanish."""
    log = os.environ.get("PULSE_TEST_DOCKERD_LOG")
    if log and Path(log).is_file():
        tail = Path(log).read_text(errors="replace").strip().splitlines()[-5:]
        reason += " | dockerd log: " + " / ".join(tail)
    if os.environ.get("PULSE_TEST_IMAGE_REQUIRED") == "1":
        pytest.fail(reason)
    pytest.skip(reason)


def docker(*args: str, timeout: float = 60, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        ["docker", *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=timeout,
        env=_BUILD_ENV,
    )
    if check:
        assert done.returncode == 0, (
            f"docker {' '.join(args)}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
        )
    return done


@pytest.fixture(scope="module")
def engine() -> None:
    if shutil.which("docker") is None:
        _unavailable("no docker command (Debian package docker.io; .ci/run installs it as root)")
    info = subprocess.run(
        ["docker", "info", "--format", "{{.ServerVersion}}"],
        capture_output=True,
        text=True,
        check=False,
        timeout=30,
    )
    if info.returncode != 0:
        _unavailable(f"the Docker engine does not answer: {info.stderr.strip()[-300:]}")


@pytest.fixture(scope="module")
def image(engine: None) -> Iterator[str]:
    """The repository's Dockerfile, built as is; only the base may be a local stand-in."""
    tag = f"llm-pulse:test-{os.getpid()}"
    argv = ["build", "--network", "host", "-t", tag]
    base = os.environ.get("PULSE_TEST_PYTHON_IMAGE")
    if base:
        argv += ["--build-arg", f"PYTHON_IMAGE={base}"]
    started = time.monotonic()
    docker(*argv, str(ROOT), timeout=900)
    size = int(docker("image", "inspect", tag, "--format", "{{.Size}}").stdout)
    print(f"built {tag} in {time.monotonic() - started:.0f} s, {size / 1e6:.0f} MB")
    yield tag
    docker("image", "rm", "-f", tag, check=False)


class Container:
    """One ``docker run -d`` of the image, published on a free loopback port."""

    def __init__(self, image: str, *flags: str, **env: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        argv = [
            "run",
            "-d",
            "-p",
            f"127.0.0.1:{self.port}:8080",
            "--health-interval",
            "1s",
            "--health-start-period",
            "30s",
        ]
        for key, value in {"PULSE_UPSTREAM_URL": "mock", **env}.items():
            argv += ["-e", f"{key}={value}"]
        self.id = docker(*argv, *flags, image).stdout.strip()

    def inspect(self, template: str) -> str:
        return docker("inspect", "--format", template, self.id).stdout.strip()

    def lines(self) -> list[dict[str, Any]]:
        """The JSON lines the container wrote to stdout (what ``docker logs`` shows)."""
        out = docker("logs", self.id).stdout
        return [orjson.loads(line) for line in out.splitlines() if line.startswith("{")]

    def events(self, name: str) -> list[dict[str, Any]]:
        return [line for line in self.lines() if line.get("event") == name]

    def wait_healthy(self) -> None:
        wait_until(
            lambda: self.inspect("{{.State.Health.Status}}") in ("healthy", "unhealthy"),
            timeout=90,
            interval=0.5,
        )
        status = self.inspect("{{.State.Health.Status}}")
        assert status == "healthy", (status, self.inspect("{{json .State.Health.Log}}"))

    def remove(self) -> None:
        docker("rm", "-f", self.id, check=False)


@pytest.fixture
def run(image: str) -> Iterator[Any]:
    started: list[Container] = []

    def start(*flags: str, **env: str) -> Container:
        started.append(Container(image, *flags, **env))
        return started[-1]

    yield start
    for container in started:
        container.remove()


def _stream(
    url: str, request_id: str, first: threading.Event | None = None, **headers: str
) -> tuple[int, bytes]:
    body = {
        "model": "gpt-4o-mini",
        "stream": True,
        "messages": [{"role": "user", "content": "hello"}],
    }
    received = b""
    with (
        httpx.Client(timeout=60) as client,
        client.stream(
            "POST",
            url + "/v1/chat/completions",
            json=body,
            headers={"X-Request-ID": request_id, **headers},
        ) as response,
    ):
        for chunk in response.iter_raw():
            received += chunk
            if first is not None:
                first.set()
        return response.status_code, received


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=5).status_code == 200
    except httpx.HTTPError:
        return False


def _sse_done(raw: bytes) -> bool:
    return b"data: [DONE]" in raw and raw.count(b"data: {") > 1


def test_the_image_serves_a_stream_logs_its_event_and_reports_healthy(run: Any) -> None:
    """docker run with the image's defaults: PID 1 is uid 10001, /healthz answers, a
    stream through the bundled mock arrives whole, its llm.request event is in docker
    logs, and the image's own HEALTHCHECK command turns the container healthy."""
    box = run()
    wait_until(
        lambda: box.inspect("{{.State.Running}}") == "true" and bool(box.events("pulse.started")),
        timeout=60,
        interval=0.5,
    )
    status = docker("exec", box.id, "cat", "/proc/1/status").stdout
    (uids,) = [line.split()[1:] for line in status.splitlines() if line.startswith("Uid:")]
    assert set(uids) == {"10001"}, uids

    health = httpx.get(box.url + "/healthz", timeout=10)
    assert health.status_code == 200, health.text

    code, raw = _stream(box.url, "image-stream")
    assert code == 200 and _sse_done(raw), raw[-500:]
    wait_until(lambda: bool(box.events("llm.request")), timeout=30, interval=0.2)
    (event,) = box.events("llm.request")
    assert event["request_id"] == "image-stream" and event["stream"] is True
    assert event["outcome"] == "success" and event["status_code"] == 200
    assert event["completion_tokens"] > 0 and event["cost_usd"] is not None

    (healthcheck,) = next(s for s in containerfile.stages() if s.name is None).all("HEALTHCHECK")
    command = containerfile.Instruction("CMD", healthcheck.args.split(" CMD ", 1)[1]).exec_form()
    assert json.loads(box.inspect("{{json .Config.Healthcheck.Test}}")) == ["CMD", *command]
    box.wait_healthy()


def test_docker_stop_mid_stream_finishes_the_stream_and_flushes_its_event(run: Any) -> None:
    """docker stop while a 4 s stream is open: the stream still ends with [DONE], its
    event and pulse.stopped are in docker logs, and the exit code is 0 (no SIGKILL)."""
    box = run()
    wait_until(lambda: bool(box.events("pulse.started")), timeout=60, interval=0.5)
    wait_until(lambda: _answers(box.url + "/readyz"), timeout=30, interval=0.2)
    result: list[tuple[int, bytes] | httpx.HTTPError] = []
    first = threading.Event()
    slow = {"X-Mock-Completion-Tokens": "40", "X-Mock-Tokens-Per-Second": "10"}

    def call() -> None:
        try:
            result.append(_stream(box.url, "stopped-mid-stream", first, **slow))
        except httpx.HTTPError as exc:  # a stream cut short: reported below, not lost in the thread
            result.append(exc)

    client = threading.Thread(target=call)
    client.start()
    assert first.wait(30), "the stream never started"
    docker("stop", "-t", "45", box.id, timeout=90)
    client.join(timeout=60)

    (outcome,) = result
    assert not isinstance(outcome, httpx.HTTPError), f"the stream was cut: {outcome!r}"
    code, raw = outcome
    assert code == 200 and _sse_done(raw), raw[-500:]
    assert box.inspect("{{.State.ExitCode}}") == "0", docker("logs", box.id).stderr[-3000:]
    assert box.inspect("{{.State.OOMKilled}}") == "false"
    lines = box.lines()
    (event,) = [line for line in lines if line.get("event") == "llm.request"]
    assert event["request_id"] == "stopped-mid-stream" and event["outcome"] == "success"
    assert event["completion_tokens"] == 40
    assert lines[-1]["event"] == "pulse.stopped" and lines[-1]["dropped"] == 0, lines[-1]


def test_read_only_root_without_capabilities_goes_healthy_and_serves(run: Any) -> None:
    """--read-only --cap-drop ALL --user 10001 --security-opt no-new-privileges: nothing
    in the image needs to write or a capability, so it serves and turns healthy."""
    box = run(
        "--read-only",
        "--cap-drop",
        "ALL",
        "--user",
        "10001",
        "--security-opt",
        "no-new-privileges:true",
    )
    box.wait_healthy()
    code, raw = _stream(box.url, "read-only")
    assert code == 200 and _sse_done(raw)
    wait_until(lambda: bool(box.events("llm.request")), timeout=30, interval=0.2)
    assert box.events("llm.request")[0]["request_id"] == "read-only"
    assert "Traceback" not in docker("logs", box.id).stderr


def _compose() -> list[str] | None:
    """Compose v2 (the docker plugin) or v1 (Debian bookworm's docker-compose)."""
    if (
        subprocess.run(
            ["docker", "compose", "version"], capture_output=True, check=False
        ).returncode
        == 0
    ):
        return ["docker", "compose"]
    return ["docker-compose"] if shutil.which("docker-compose") else None


def test_the_compose_example_runs_end_to_end(image: str) -> None:
    """deploy/docker-compose.yml as shipped (only the base image, host port and project
    name from the environment): mock, then pulse, then the app come up healthy, the
    app's plain and streamed requests appear as llm.request events in the proxy's logs,
    and stopping the project lets the proxy exit 0 after pulse.stopped."""
    compose = _compose()
    if compose is None:
        _unavailable("no Compose (Debian package docker-compose, or the docker compose plugin)")
    project = f"pulse-test-{os.getpid()}"
    port = free_port()
    env = {**_BUILD_ENV, "PULSE_HOST_PORT": str(port)}
    base = os.environ.get("PULSE_TEST_PYTHON_IMAGE")
    if base:
        env["PYTHON_IMAGE"] = base
    had_local = docker("image", "inspect", "llm-pulse:local", check=False).returncode == 0
    argv = [*compose, "-p", project, "-f", str(DEPLOY / "docker-compose.yml")]

    def run(*args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [*argv, *args], capture_output=True, text=True, env=env, check=False, timeout=timeout
        )
        assert done.returncode == 0, f"{args}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
        return done

    def pulse_events() -> list[dict[str, Any]]:
        out = run("logs", "--no-color", "--no-log-prefix", "pulse", timeout=60).stdout
        lines = [orjson.loads(line) for line in out.splitlines() if line.startswith("{")]
        return [line for line in lines if line.get("event") == "llm.request"]

    try:
        run("up", "-d", "--build")
        wait_until(lambda: len(pulse_events()) >= 2, timeout=120, interval=1)
        assert httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=10).status_code == 200
        pulse_id = run("ps", "-q", "pulse").stdout.strip()
        run("stop")
        lines = docker("logs", pulse_id).stdout.splitlines()
        assert docker("inspect", "--format", "{{.State.ExitCode}}", pulse_id).stdout.strip() == "0"
    finally:
        subprocess.run(
            [*argv, "down", "--remove-orphans"],
            capture_output=True,
            env=env,
            check=False,
            timeout=300,
        )
        if not had_local:
            docker("image", "rm", "-f", "llm-pulse:local", check=False)

    records = [orjson.loads(line) for line in lines if line.startswith("{")]
    events = [r for r in records if r.get("event") == "llm.request"]
    assert {e["stream"] for e in events[:2]} == {False, True}, events
    assert all(e["outcome"] == "success" and e["tags"] == {"app": "example"} for e in events), (
        events
    )
    assert records[-1]["event"] == "pulse.stopped" and records[-1]["dropped"] == 0, records[-1]
