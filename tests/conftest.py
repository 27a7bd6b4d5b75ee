"""Shared fixtures: real servers on ephemeral loopback ports.

In-process clients (``TestClient``, ``httpx.ASGITransport``) buffer whole bodies and
cannot show that streaming is incremental or that a disconnect reached the upstream,
so every server here is a real uvicorn on a real socket.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import orjson
import pytest
import uvicorn


@contextlib.contextmanager
def run_server(
    app: Any, *, sock: socket.socket | None = None, port: int = 0, **config: Any
) -> Iterator[str]:
    """Serve ``app`` with uvicorn in a thread; yield its base URL, stop it on exit.

    ``port=N`` serves on that loopback port rather than an ephemeral one.  ``sock``,
    bound (and maybe listening) already, lets a caller know the port before the app is
    built, so an app can name its own address."""
    if sock is None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", port))
    port = sock.getsockname()[1]
    options: dict[str, Any] = {
        "loop": "uvloop",
        "http": "httptools",
        "log_level": "warning",
        "access_log": False,
        "lifespan": "auto",
    }
    options.update(config)
    server = uvicorn.Server(uvicorn.Config(app, **options))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("test server did not start")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=15)
        sock.close()


def free_port() -> int:
    """A loopback port nobody listens on now, for a server started as a subprocess."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def clean_env(**extra: str) -> dict[str, str]:
    """This environment without PULSE_* variables, which would change what a proxy
    started as a subprocess runs with, plus ``extra``."""
    return {**{k: v for k, v in os.environ.items() if not k.startswith("PULSE_")}, **extra}


class JsonLinesProcess:
    """A subprocess whose stdout is one JSON event per line, read as the lines come.

    Both pipes are read to the end by threads, which close them there: a test that
    kills the process leaves no pipe open, and a chatty stderr never fills its pipe.
    """

    def __init__(self, argv: Sequence[str], **popen: Any) -> None:
        self.process = subprocess.Popen(
            argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, **popen
        )
        self.lines: list[dict[str, Any]] = []
        self.raw: list[bytes] = []
        self._stderr = bytearray()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self._stderr_reader = threading.Thread(target=self._read_stderr, daemon=True)
        self._stderr_reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        with self.process.stdout as stdout:
            for line in stdout:
                self.raw.append(line)
                self.lines.append(orjson.loads(line))

    def _read_stderr(self) -> None:
        assert self.process.stderr is not None
        with self.process.stderr as stderr:
            while chunk := stderr.read1():
                self._stderr += chunk

    def read_stderr(self, timeout: float = 10.0) -> bytes:
        """Everything written to stderr, once the process (and any child) closed it."""
        self._stderr_reader.join(timeout=timeout)
        return bytes(self._stderr)

    def events(self, name: str) -> list[dict[str, Any]]:
        return [line for line in self.lines if line["event"] == name]

    def wait_exit(self, timeout: float) -> tuple[int, bytes]:
        """The exit code and stderr, once the process and the reader are done."""
        code = self.process.wait(timeout=timeout)
        self._reader.join(timeout=10)
        return code, self.read_stderr()


class ProxyProcess(JsonLinesProcess):
    """``python -m pulse_proxy`` on a free port, as a user runs it: with its bundled mock
    unless ``args`` name an upstream, and ``env`` added to a clean environment."""

    def __init__(self, *args: str, env: Mapping[str, str] | None = None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        super().__init__(
            [sys.executable, "-m", "pulse_proxy", "--port", str(self.port), *args],
            env=clean_env(**(env or {})),
        )

    def wait_started(self, timeout: float = 30) -> None:
        """Wait for ``pulse.started``; fail at once, with its stderr, if it exited."""
        wait_until(
            lambda: bool(self.events("pulse.started")) or self.process.poll() is not None, timeout
        )
        assert self.process.poll() is None, self.read_stderr()

    def stop(self) -> tuple[int, bytes]:
        self.process.send_signal(signal.SIGTERM)
        return self.wait_exit(timeout=30)

    def kill(self) -> None:
        """Kill the process if it is still running (the end of every test that started it)."""
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


@contextlib.contextmanager
def proxy_process(*args: str, env: Mapping[str, str] | None = None) -> Iterator[ProxyProcess]:
    """A started :class:`ProxyProcess`, killed on exit if the test did not stop it."""
    proc = ProxyProcess(*args, env=env)
    try:
        proc.wait_started()
        yield proc
    finally:
        proc.kill()


@pytest.fixture
def running() -> Iterator[ProxyProcess]:
    """``pulse-proxy`` serving in front of its bundled mock."""
    with proxy_process() as proc:
        yield proc


def child_processes(parent: int) -> dict[int, str]:
    """Live (not zombie) children of ``parent``, with their command lines, from /proc."""
    found = {}
    for children in Path(f"/proc/{parent}/task").glob("*/children"):
        try:
            pids = [int(pid) for pid in children.read_text().split()]
        except OSError:  # the thread ended
            continue
        for pid in pids:
            try:
                stat = Path(f"/proc/{pid}/stat").read_text()
                if stat[stat.rindex(")") + 2 :].split()[0] == "Z":
                    continue
                found[pid] = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
            except (OSError, ValueError, IndexError):
                continue
    return found


def accounting_child(parent: int) -> int:
    """The pid of a proxy's accounting process: forked from the proxy, it has the
    proxy's command line, so it is the child that is not the bundled mock."""
    others = [
        pid for pid, cmdline in child_processes(parent).items() if "mock_upstream" not in cmdline
    ]
    assert len(others) == 1, others
    return others[0]


class Recorder:
    """An ASGI upstream that records each request line's path and query, and headers,
    and answers an empty model list."""

    def __init__(self) -> None:
        self.seen: list[dict[str, Any]] = []

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        assert scope["type"] == "http"
        while (await receive()).get("more_body"):
            pass
        headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in scope["headers"]]
        self.seen.append(
            {
                "method": scope["method"],
                "raw_path": scope["raw_path"].decode("latin-1"),
                "query": scope["query_string"].decode("latin-1"),
                "headers": headers,
                "request_id": dict(headers).get("x-request-id"),
            }
        )
        body = b'{"object": "list", "data": []}'
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"application/json")],
            }
        )
        await send({"type": "http.response.body", "body": body})

    def for_request(self, request_id: str) -> list[dict[str, Any]]:
        return [seen for seen in self.seen if seen["request_id"] == request_id]


@pytest.fixture(scope="module")
def recorder() -> Iterator[tuple[Recorder, str]]:
    """A :class:`Recorder` served for the module, and its URL."""
    app = Recorder()
    with run_server(app, lifespan="off") as url:
        yield app, url


class SocketServer:
    """A loopback listener made of a bare socket: each connection is handed to
    ``handle`` in a thread of its own, for answers no well-behaved server would send."""

    def __init__(self, handle: Callable[[socket.socket], None], host: str = "127.0.0.1") -> None:
        self._handle = handle
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host, 0))
        self.sock.listen(16)
        self.port: int = self.sock.getsockname()[1]
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._one, args=(conn,), daemon=True).start()

    def _one(self, conn: socket.socket) -> None:
        with conn, contextlib.suppress(OSError):
            self._handle(conn)

    def close(self) -> None:
        self.sock.close()


class RawUpstream(SocketServer):
    """A loopback HTTP/1.1 upstream made of a socket: each connection gets ``answer``
    (called with the raw request head) and is closed; request heads are recorded."""

    def __init__(self, answer: Callable[[socket.socket, bytes], None]) -> None:
        self._answer = answer
        self.heads: list[bytes] = []
        super().__init__(self._read_head)
        self.url = f"http://127.0.0.1:{self.port}/v1"

    def _read_head(self, conn: socket.socket) -> None:
        data = b""
        while b"\r\n\r\n" not in data:
            part = conn.recv(65536)
            if not part:
                return
            data += part
        head = data.split(b"\r\n\r\n", 1)[0]
        self.heads.append(head)
        self._answer(conn, head)


@contextlib.contextmanager
def raw_upstream(answer: Callable[[socket.socket, bytes], None]) -> Iterator[RawUpstream]:
    upstream = RawUpstream(answer)
    try:
        yield upstream
    finally:
        upstream.close()


@pytest.fixture(scope="session")
def mock_url() -> Iterator[str]:
    """The bundled mock upstream, shared by the whole session (it is stateless per request)."""
    from mock_upstream.app import create_app

    with run_server(create_app()) as url:
        yield url


@pytest.fixture(scope="session")
def schemas() -> Any:
    """Validators for OpenAI's published schemas (the vendored ``openapi.yaml``)."""
    from openapi_schemas import load_schemas

    return load_schemas()


def wait_until(predicate: Any, timeout: float = 10.0, interval: float = 0.01) -> None:
    """Poll ``predicate`` until true; records are written just after the response ends."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(interval)


class RunningProxy:
    """A proxy served on a real socket, with the records it produced."""

    def __init__(self, url: str, app: Any, sink: Any, log: Any) -> None:
        self.url = url
        self.base_url = url + "/v1"
        self.app = app
        self.sink = sink
        self.log = log

    @property
    def exchanges(self) -> list[Any]:
        return list(self.sink.exchanges)

    def wait_for(self, count: int, timeout: float = 10.0) -> list[Any]:
        """Wait until exactly ``count`` exchanges were recorded (and no more arrive)."""
        wait_until(lambda: len(self.sink.exchanges) >= count, timeout)
        time.sleep(0.05)
        assert len(self.sink.exchanges) == count, [e.outcome for e in self.sink.exchanges]
        return self.exchanges

    def log_lines(self) -> list[dict[str, Any]]:
        import orjson

        return [orjson.loads(line) for line in self.log.getvalue().splitlines() if line.strip()]


INLINE_ACCOUNTING = {"accounting": {"mode": "inline"}}
CHILD_ACCOUNTING = {"accounting": {"mode": "process"}}


@contextlib.contextmanager
def start_proxy(
    upstream_url: str, config: dict[str, Any] | None = None, *, clock: Any = time.time
) -> Iterator[RunningProxy]:
    """The full proxy app in front of ``upstream_url``, recording into a ListSink.

    Accounting runs in the test's own process (``accounting.mode: inline``) unless
    ``config`` asks for ``process``: forking an accounting child for every proxy costs
    time and a core, and only the tests about that child need one."""
    import io

    from pulse_proxy.app import create_app, uvicorn_options
    from pulse_proxy.settings import build_settings
    from pulse_proxy.sinks import ListSink

    settings = build_settings(INLINE_ACCOUNTING, {"upstream": {"url": upstream_url}}, config or {})
    sink = ListSink()
    log = io.BytesIO()
    app = create_app(settings, sinks=[sink], log_stream=log, clock=clock)
    with run_server(app, **uvicorn_options(settings)) as url:
        yield RunningProxy(url, app, sink, log)


@pytest.fixture
def proxy(mock_url: str) -> Iterator[RunningProxy]:
    """A fresh proxy in front of the session's mock."""
    with start_proxy(mock_url + "/v1") as running:
        yield running


REDIS_SERVER = "/usr/bin/redis-server"


class RedisServer:
    """A real ``redis-server`` on a loopback port, no persistence, in a temp dir;
    stopped and started again on the same port to show what a Redis outage does."""

    def __init__(self, directory: Path) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self._directory = directory
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self._process = subprocess.Popen(
            [
                REDIS_SERVER,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self._directory),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

        def answers() -> bool:
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock,
            ):
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")
            return False

        wait_until(answers)

    def pause(self, paused: bool) -> None:
        """SIGSTOP / SIGCONT: a Redis that accepts connections but answers nothing."""
        assert self._process is not None
        self._process.send_signal(signal.SIGSTOP if paused else signal.SIGCONT)

    def stop(self) -> None:
        if self._process is not None:
            self._process.send_signal(signal.SIGCONT)
            self._process.terminate()
            self._process.wait(timeout=10)
            self._process = None


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    if not os.path.exists(REDIS_SERVER):
        pytest.skip("redis-server is not installed (Debian package redis-server)")
    server = RedisServer(tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.stop()
