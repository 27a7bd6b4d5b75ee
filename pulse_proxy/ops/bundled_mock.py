"""Start the bundled mock upstream as a child process, for ``PULSE_UPSTREAM_URL=mock``.

A separate process rather than a thread: the mock then costs the proxy no event-loop
time, and traffic crosses a real loopback socket exactly as it would to a provider.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any

from pulse_proxy.backoff import Backoff


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _answers(port: int) -> bool:
    """Whether the mock answers on ``port``.  An HTTP answer, not just an accepted
    connection: on a restart the port may be held by another process, whose listener
    would accept while our mock fails to bind and exits."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=0.5)
    try:
        connection.request("GET", "/v1/models")
        return connection.getresponse().status == 200
    except (OSError, http.client.HTTPException):
        return False
    finally:
        connection.close()


def die_with_parent() -> None:
    """Linux: a child gets SIGTERM if the proxy dies without stopping it (kill -9)."""
    if sys.platform.startswith("linux"):
        import ctypes

        with contextlib.suppress(OSError):
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class BundledMock:
    """The mock's process, started on a fixed port and kept alive while the proxy runs.

    The forwarder's upstream URL is fixed at start-up, so a restarted mock listens on
    the same port.  :meth:`supervise`, run on the proxy's event loop, reaps a mock that
    exited (no zombie), starts it again with back-off (the port may still be held for a
    while) and reports the outage, so that ``/readyz`` can say why requests fail.
    """

    def __init__(self, *, backoff: Backoff | None = None, poll_s: float = 0.5) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}/v1"
        self._process: subprocess.Popen[bytes] | None = None
        self._backoff = backoff or Backoff(first_s=0.1, max_s=10.0, healthy_s=30.0)
        self._poll_s = poll_s
        # start() may run in a thread (a restart) while stop() runs on shutdown.
        self._lock = threading.Lock()
        self._stopped = False

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def start(self, timeout: float = 20.0) -> None:
        with self._lock:
            if self._stopped:
                raise RuntimeError("the bundled mock was stopped")
            self._process = process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "mock_upstream",
                    "--log-level",
                    "warning",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(self.port),
                ],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                preexec_fn=die_with_parent,  # noqa: PLW1509 - prctl only, before exec
                # Its own process group: Ctrl-C in a terminal reaches the whole
                # foreground group, and the mock must not die (and be restarted) while
                # the proxy finishes its in-flight requests; the proxy stops it last.
                process_group=0,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"the bundled mock exited with code {process.returncode}")
            if _answers(self.port):
                self._backoff.started()
                return
            time.sleep(0.05)
        self._end(process)
        raise RuntimeError("the bundled mock did not start listening in time")

    def exited(self) -> int | None:
        """The mock's exit code once it has exited (reaping it), else None."""
        process = self._process
        return None if process is None else process.poll()

    async def supervise(
        self,
        logger: Any,
        *,
        down: Callable[[str], None],
        up: Callable[[], Awaitable[None]],
    ) -> None:
        """Forever: notice the mock's exit within ``poll_s``, call ``down`` with the
        reason, restart it on the same port, log ``pulse.mock_restarted``, call ``up``."""
        while True:
            await asyncio.sleep(self._poll_s)
            code = self.exited()
            if code is None:
                continue
            logger.error("pulse.mock_exited", pid=self.pid, exitcode=code, port=self.port)
            down(f"the bundled mock upstream exited with code {code}; restarting it")
            attempts = await self._restart(logger)
            logger.warning("pulse.mock_restarted", pid=self.pid, port=self.port, attempts=attempts)
            await up()

    async def _restart(self, logger: Any) -> int:
        """Start the mock again, backing off while it cannot (its port still taken)."""
        attempts = 0
        while True:
            await asyncio.sleep(self._backoff.next_delay())
            attempts += 1
            try:
                await asyncio.to_thread(self.start)
                return attempts
            except RuntimeError as exc:
                logger.warning(
                    "pulse.mock_restart_failed", attempt=attempts, port=self.port, reason=str(exc)
                )

    def stop(self) -> None:
        with self._lock:
            self._stopped = True
            process = self._process
        if process is not None:
            self._end(process)

    @staticmethod
    def _end(process: subprocess.Popen[bytes]) -> None:
        if process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
