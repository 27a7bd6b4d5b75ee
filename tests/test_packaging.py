"""What the image would run, tested without a Docker engine.

The Dockerfile's builder steps are executed as written (``/opt/venv`` mapped to a fresh
virtual environment, the build context copied exactly as its ``COPY`` lines say), then
the final stage's ``CMD`` is started from that environment with the final stage's
``ENV``, in an empty directory far from the repository, with ``HOME`` and ``TMPDIR``
empty and any download attempt pointed at a dead proxy.  Only two things differ from
the container: ``PULSE_HOST`` is 127.0.0.1 (the test listens on loopback only, not on
every interface of the machine) and ``PULSE_PORT`` is a free ephemeral port.

The install downloads the locked wheels from the package index (pip's cache makes
later runs faster); without a reachable index these tests skip and say so.
"""

from __future__ import annotations

import hashlib
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import zipfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import containerfile
import httpx
import orjson
import pytest
from conftest import JsonLinesProcess, free_port, wait_until

import pulse_proxy

ROOT = containerfile.ROOT
# Messages pip prints when the index cannot be reached at all (as opposed to a hash
# mismatch or a broken lock, which must fail the test).
_OFFLINE = re.compile(
    r"NewConnectionError|Temporary failure in name resolution|Network is unreachable|"
    r"Failed to establish a new connection|No matching distribution found|ProxyError|"
    r"Could not fetch URL|ConnectTimeoutError",
)
# Any download the proxy tried at run time would go here and fail.
_DEAD_PROXY = "http://127.0.0.1:9"

pytestmark = pytest.mark.timeout(900)


@dataclass
class Installed:
    venv: Path  # stands for the image's /opt/venv
    wheel: Path
    install_s: float  # builder steps: fresh venv, locked dependencies, wheel


def _copy_context(builder: containerfile.Stage, context: Path) -> None:
    """Lay out the builder's WORKDIR exactly as its COPY lines would."""
    for instruction in builder.all("COPY"):
        *sources, dest = shlex.split(instruction.args)
        assert not any(s.startswith("--") for s in sources), "no COPY flags in the builder"
        for source in sources:
            origin = ROOT / source
            target = context / dest / origin.name if dest.endswith("/") else context / dest
            if origin.is_dir():
                shutil.copytree(
                    origin, target, ignore=shutil.ignore_patterns("__pycache__", "*.pyc")
                )
            else:
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(origin, target)


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    """Run the builder stage's RUN steps with /opt/venv and /tmp/dist mapped to temp dirs."""
    builder = next(s for s in containerfile.stages() if s.name == "builder")
    base = tmp_path_factory.mktemp("image")
    venv, dist, context = base / "opt-venv", base / "dist", base / "src"
    context.mkdir()
    _copy_context(builder, context)
    env = builder.env(dict(os.environ))
    # Kept from the image except the cache: test runs reuse pip's cache, image builds do not.
    env.pop("PIP_NO_CACHE_DIR", None)
    # `python` in the RUN lines is the base image's interpreter: here, this test's.
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env["PATH"]
    started = time.monotonic()
    for instruction in builder.all("RUN"):
        command = instruction.args.replace("/opt/venv", str(venv)).replace("/tmp/dist", str(dist))
        done = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", command],
            cwd=context,
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0 and _OFFLINE.search(done.stdout + done.stderr):
            last = (done.stderr.strip().splitlines() or ["?"])[-1]
            pytest.skip(
                f"cannot install requirements.lock, the package index looks unreachable: {last}"
            )
        assert done.returncode == 0, f"{command}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    (wheel,) = dist.glob("llm_pulse-*.whl")
    return Installed(venv, wheel, time.monotonic() - started)


def _runtime_env(installed: Installed, home: Path, tmp: Path, **overrides: str) -> dict[str, str]:
    """The final stage's ENV, /opt/venv mapped, PATH otherwise free of this repo's venv."""
    (final,) = [s for s in containerfile.stages() if s.name is None]
    repo_bins = {str(Path(sys.executable).parent), str(ROOT / ".venv" / "bin")}
    system_path = os.pathsep.join(
        p for p in os.environ["PATH"].split(os.pathsep) if p not in repo_bins
    )
    env = final.env({"PATH": system_path, "LANG": "C.UTF-8"})
    env = {k: v.replace("/opt/venv", str(installed.venv)) for k, v in env.items()}
    env.update(
        HOME=str(home),
        TMPDIR=str(tmp),
        HTTP_PROXY=_DEAD_PROXY,
        HTTPS_PROXY=_DEAD_PROXY,
        http_proxy=_DEAD_PROXY,
        https_proxy=_DEAD_PROXY,
        NO_PROXY="127.0.0.1,localhost",
        no_proxy="127.0.0.1,localhost",
    )
    env.update(overrides)
    return env


class ImageProcess(JsonLinesProcess):
    """The final stage's CMD (or another command), run as the container would run it."""

    def __init__(
        self, installed: Installed, workdir: Path, argv: list[str] | None = None, **env: str
    ) -> None:
        (final,) = [s for s in containerfile.stages() if s.name is None]
        self.home, self.tmp = workdir / "home", workdir / "tmp"
        self.home.mkdir(exist_ok=True)
        self.tmp.mkdir(exist_ok=True)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = _runtime_env(
            installed, self.home, self.tmp, PULSE_HOST="127.0.0.1", PULSE_PORT=str(self.port), **env
        )
        argv = argv or final.all("CMD")[-1].exec_form()
        executable = shutil.which(argv[0], path=self.env["PATH"])
        assert executable is not None and Path(executable).parent == installed.venv / "bin", (
            executable
        )
        self.cwd = workdir
        super().__init__([executable, *argv[1:]], cwd=workdir, env=self.env)

    def finish(self, timeout: float) -> tuple[int, str]:
        code, stderr = self.wait_exit(timeout)
        return code, stderr.decode(errors="replace")

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    assert ROOT not in tmp_path.parents
    return tmp_path


@pytest.fixture
def external_mock(installed: Installed, workdir: Path) -> Iterator[str]:
    """``pulse-mock`` from the fresh environment, as the compose file runs it."""
    port = free_port()
    (workdir / "mock").mkdir()
    env = _runtime_env(installed, workdir / "mock", workdir / "mock")
    process = subprocess.Popen(
        [
            str(installed.venv / "bin" / "pulse-mock"),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--log-level",
            "warning",
        ],
        cwd=workdir / "mock",
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: _answers(url + "/v1/models"), timeout=30, interval=0.05)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=15)


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def _refuses(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return False
    except OSError:
        return True


def _chat(stream: bool, question: str) -> dict:
    body: dict = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": question}]}
    if stream:
        body["stream"] = True
    return body


def _sse_content(raw: bytes) -> tuple[str, bool]:
    """The concatenated delta content of an SSE body, and whether it ended with [DONE]."""
    content, done = [], False
    for line in raw.decode().splitlines():
        if line == "data: [DONE]":
            done = True
        elif line.startswith("data: "):
            for choice in orjson.loads(line[6:]).get("choices", []):
                content.append(choice.get("delta", {}).get("content") or "")
    return "".join(content), done


@pytest.mark.slow
def test_the_wheel_carries_the_vocabularies_and_no_repository_files(installed: Installed) -> None:
    """The built wheel holds both tokenizer vocabularies (hashes as pinned) and only the two packages."""
    from pulse_proxy.accounting import tokens

    with zipfile.ZipFile(installed.wheel) as wheel:
        names = wheel.namelist()
        for name, (expected_hash, _, _) in tokens._ENCODINGS.items():
            data = wheel.read(f"pulse_proxy/_vocab/{name}.tiktoken")
            assert hashlib.sha256(data).hexdigest() == expected_hash
    top = {n.split("/")[0] for n in names}
    assert top == {
        "pulse_proxy",
        "mock_upstream",
        f"llm_pulse-{pulse_proxy.__version__}.dist-info",
    }, top
    assert "pulse_proxy/data/pricing.yaml" in names


@pytest.mark.slow
def test_the_installed_wheel_counts_tokens_offline_and_writes_nothing(
    installed: Installed, workdir: Path
) -> None:
    """From the fresh environment, in the image's ENV: the package is the installed one,
    counting uses the bundled vocabularies with downloads impossible, and no file is written."""
    env = _runtime_env(installed, workdir / "home", workdir / "tmp")
    (workdir / "home").mkdir()
    (workdir / "tmp").mkdir()
    script = (
        "import pulse_proxy, mock_upstream; from pulse_proxy.accounting import tokens;"
        "print(pulse_proxy.__file__); print(mock_upstream.__file__);"
        "print(len(tokens.get_encoding('o200k_base').encode('hello world')),"
        " len(tokens.get_encoding('cl100k_base').encode('hello world')))"
    )
    done = subprocess.run(
        [str(installed.venv / "bin" / "python"), "-c", script],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    package, mock, counts = done.stdout.splitlines()
    site = installed.venv / "lib"
    assert site in Path(package).parents and site in Path(mock).parents, (package, mock)
    assert counts == "2 2"
    assert not any((workdir / "home").iterdir()) and not any((workdir / "tmp").iterdir())


@pytest.mark.slow
def test_sigterm_mid_stream_finishes_every_request_and_flushes_every_event(
    installed: Installed, workdir: Path, external_mock: str
) -> None:
    """SIGTERM while plain and streamed requests are in flight: no new connection is
    accepted, every request completes intact, each yields one success event, the
    process writes pulse.stopped and exits 0 well within the grace period."""
    proxy = ImageProcess(installed, workdir, PULSE_UPSTREAM_URL=external_mock + "/v1")
    try:
        wait_until(lambda: bool(proxy.events("pulse.started")), timeout=60)
        wait_until(lambda: _answers(proxy.url + "/readyz"), timeout=30)
        (healthcheck,) = next(s for s in containerfile.stages() if s.name is None).all(
            "HEALTHCHECK"
        )
        check_argv = healthcheck.args.split(" CMD ", 1)[1]
        check = containerfile.Instruction("CMD", check_argv).exec_form()
        resolved = shutil.which(check[0], path=proxy.env["PATH"])
        assert resolved is not None and Path(resolved).parent == installed.venv / "bin", resolved
        check[0] = resolved
        assert (
            subprocess.run(check, env=proxy.env, cwd=workdir, check=False, timeout=30).returncode
            == 0
        )

        # ~2.7 s per stream (40 tokens at 15/s) and 2.5 s per plain answer.
        slow_stream = {"X-Mock-Completion-Tokens": "40", "X-Mock-Tokens-Per-Second": "15"}
        slow_plain = {"X-Mock-Completion-Tokens": "40", "X-Mock-Latency-Ms": "2500"}
        requests = [
            (f"sigterm-{i}", stream, f"question number {i}")
            for i, stream in enumerate([True, True, True, False, False])
        ]
        first_bytes = {rid: threading.Event() for rid, _, _ in requests}

        def call(rid: str, stream: bool, question: str) -> tuple[int, bytes]:
            headers = {"X-Request-ID": rid, **(slow_stream if stream else slow_plain)}
            with (
                httpx.Client(timeout=30) as client,
                client.stream(
                    "POST",
                    proxy.url + "/v1/chat/completions",
                    json=_chat(stream, question),
                    headers=headers,
                ) as response,
            ):
                body = b""
                for chunk in response.iter_raw():
                    body += chunk
                    first_bytes[rid].set()
                return response.status_code, body

        with ThreadPoolExecutor(len(requests)) as pool:
            futures = {rid: pool.submit(call, rid, stream, q) for rid, stream, q in requests}
            for rid, _, _ in requests:  # every request has reached the upstream
                wait_until(
                    lambda rid=rid: _answers(f"{external_mock}/_mock/requests/{rid}"), timeout=10
                )
            for rid, stream, _ in requests:
                if stream:
                    assert first_bytes[rid].wait(10)
            proxy.process.send_signal(signal.SIGTERM)
            signalled = time.monotonic()
            wait_until(lambda: _refuses(proxy.port), timeout=2, interval=0.02)
            assert not any(f.done() for f in futures.values()), (
                "requests ended before the listener closed"
            )
            with pytest.raises(httpx.ConnectError):
                httpx.get(proxy.url + "/healthz", timeout=2)
            results = {rid: future.result(timeout=30) for rid, future in futures.items()}

        code, stderr = proxy.finish(timeout=30)
        elapsed = time.monotonic() - signalled
        assert code == 0, stderr
        assert elapsed < 10, f"shutdown took {elapsed:.1f} s"
        assert "Traceback" not in stderr, stderr
        assert (
            subprocess.run(
                check, env=proxy.env, cwd=workdir, check=False, timeout=30, capture_output=True
            ).returncode
            == 1
        )
    finally:
        proxy.kill()

    for rid, stream, question in requests:
        status, body = results[rid]
        assert status == 200, body
        # Intact: the same bytes' content the upstream gives for the same request directly.
        headers = slow_stream if stream else slow_plain
        direct = httpx.post(
            external_mock + "/v1/chat/completions",
            json=_chat(stream, question),
            headers={**headers, "X-Mock-Tokens-Per-Second": "1000", "X-Mock-Latency-Ms": "0"},
            timeout=30,
        )
        if stream:
            content, done = _sse_content(body)
            assert done, f"{rid}: the stream did not end with [DONE]"
            assert content == _sse_content(direct.content)[0] and content
        else:
            answer = orjson.loads(body)
            assert answer["choices"][0]["message"] == direct.json()["choices"][0]["message"]

    events = proxy.events("llm.request")
    assert sorted(e["request_id"] for e in events) == sorted(rid for rid, _, _ in requests)
    for event in events:
        assert event["outcome"] == "success" and event["status_code"] == 200, event
        assert event["completion_tokens"] == 40 and event["token_source"] == "upstream"
        # The local count runs in the accounting process, from the wheel's vocabularies;
        # the cost from the wheel's price table.
        assert event["prompt_tokens_local"] == event["prompt_tokens"]
        assert event["cost_usd"] is not None and event["cost_usd"] > 0
    assert {e["request_id"] for e in events if e["stream"]} == {rid for rid, s, _ in requests if s}
    assert proxy.lines[-1]["event"] == "pulse.stopped"
    assert proxy.lines[-1]["processed"] == len(requests) and proxy.lines[-1]["dropped"] == 0
    assert not any(proxy.tmp.iterdir()) and not any(proxy.home.iterdir()), "the proxy wrote files"


@pytest.mark.slow
def test_a_stream_longer_than_the_grace_period_is_cut_and_still_recorded(
    installed: Installed, workdir: Path
) -> None:
    """With the image's defaults (the bundled mock) and a 1.5 s grace, a 6 s stream is cut
    1.5 s after SIGTERM: the client sees a broken stream (no [DONE]), the event says so
    (outcome timeout, error_type shutdown_grace_exceeded, the bytes sent), and the exit is clean."""
    proxy = ImageProcess(installed, workdir, PULSE_SERVER__SHUTDOWN_GRACE_S="1.5")
    received = bytearray()
    first = threading.Event()
    outcome: list[BaseException | None] = []

    def call() -> None:
        headers = {
            "X-Request-ID": "cut-by-shutdown",
            "X-Mock-Completion-Tokens": "60",
            "X-Mock-Tokens-Per-Second": "10",
        }
        try:
            with (
                httpx.Client(timeout=30) as client,
                client.stream(
                    "POST",
                    proxy.url + "/v1/chat/completions",
                    json=_chat(True, "a long story"),
                    headers=headers,
                ) as response,
            ):
                for chunk in response.iter_raw():
                    received.extend(chunk)
                    first.set()
            outcome.append(None)
        except httpx.HTTPError as exc:
            outcome.append(exc)

    try:
        wait_until(lambda: bool(proxy.events("pulse.started")), timeout=60)
        assert proxy.events("pulse.started")[0]["mock"] is True
        client = threading.Thread(target=call)
        client.start()
        assert first.wait(15)
        proxy.process.send_signal(signal.SIGTERM)
        signalled = time.monotonic()
        client.join(timeout=15)
        cut_after = time.monotonic() - signalled
        code, stderr = proxy.finish(timeout=30)
        exited_after = time.monotonic() - signalled
    finally:
        proxy.kill()

    assert code == 0, stderr
    assert 1.3 < cut_after < 6, cut_after
    assert exited_after < 10, exited_after
    (error,) = outcome
    assert isinstance(error, httpx.RemoteProtocolError), (
        error
    )  # an incomplete read, not a clean end
    content, done = _sse_content(bytes(received).rsplit(b"\n\n", 1)[0])
    assert not done and content
    assert "Traceback" not in stderr, stderr
    (event,) = proxy.events("llm.request")
    assert event["request_id"] == "cut-by-shutdown" and event["stream"] is True
    assert event["outcome"] == "timeout" and event["error_type"] == "shutdown_grace_exceeded", event
    assert event["status_code"] == 200 and event["bytes_out"] == len(received)
    assert event["latency_ms"] > 1500
    assert proxy.lines[-1]["event"] == "pulse.stopped" and proxy.lines[-1]["processed"] == 1


def test_lock_files_carry_no_machine_index_settings() -> None:
    """A lock names packages and hashes; an index URL or wheel folder from the machine
    that wrote it means nothing elsewhere and makes every install print warnings."""
    for name in ("requirements.lock", "requirements-test.lock"):
        options = [line for line in (ROOT / name).read_text().splitlines() if line.startswith("--")]
        assert options == [], f"{name} carries {options}"
    recipe = (ROOT / "Makefile").read_text()
    compiles = [line for line in recipe.splitlines() if "pip-compile" in line and "-o " in line]
    assert compiles and all(
        "--no-emit-index-url" in c and "--no-emit-find-links" in c for c in compiles
    )
