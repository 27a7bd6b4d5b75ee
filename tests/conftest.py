"""Shared fixtures: real servers on ephemeral loopback ports.

In-process clients (``TestClient``, ``httpx.ASGITransport``) buffer whole bodies and
cannot show that streaming is incremental or that a disconnect reached the upstream,
so every server here is a real uvicorn on a real socket.
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import threading
import time
from collections.abc import Iterator, Sequence
from typing import Any

import orjson
import pytest
import uvicorn


@contextlib.contextmanager
def run_server(app: Any, **config: Any) -> Iterator[str]:
    """Serve ``app`` with uvicorn in a thread; yield its base URL, stop it on exit."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
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


class JsonLinesProcess:
    """A subprocess whose stdout is one JSON event per line, read as the lines come.

    Both pipes are read to the end by threads, which close them there: a test that
    kills the process leaves no pipe open, and a chatty stderr never fills its pipe.
    """

    def __init__(self, argv: Sequence[str], **popen: Any) -> None:
        self.process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, **popen)
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


@contextlib.contextmanager
def start_proxy(
    upstream_url: str, config: dict[str, Any] | None = None, *, clock: Any = time.time
) -> Iterator[RunningProxy]:
    """The full proxy app in front of ``upstream_url``, recording into a ListSink."""
    import io

    from pulse_proxy.app import create_app, uvicorn_options
    from pulse_proxy.settings import build_settings
    from pulse_proxy.sinks import ListSink

    settings = build_settings({"upstream": {"url": upstream_url}}, config or {})
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
