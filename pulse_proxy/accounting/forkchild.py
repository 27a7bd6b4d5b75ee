"""Start the accounting process as a fork of the proxy, so the two share memory.

A sidecar runs in every pod, usually under a memory limit.  Started as a fresh
interpreter (``python -m pulse_proxy.accounting.process``), the accounting process imported the
same libraries as the proxy again (pydantic, aiohttp, structlog, the risk patterns…):
some 55 MB of its own, idle.  Forked, it starts with the proxy's pages, shared
copy-on-write, and pays only for what it writes.  The objects it inherits are frozen
at once, so that its garbage collector never walks (and so copies) them.

The proxy has threads by the time it forks (the log writer, the default executor's);
the child runs only the accounting loop, which takes none of their locks: no logging,
no name resolution, no event loop.  It closes every inherited descriptor but its
socket and the standard streams, and leaves by ``os._exit``, so that nothing the proxy
buffered or registered (stdout, ``atexit``) runs twice.

Off Linux, the child is a fresh interpreter as before.
"""

from __future__ import annotations

import contextlib
import gc
import os
import signal
import subprocess
import sys
import time
import traceback
import warnings
from collections.abc import Callable
from typing import NoReturn

from pulse_proxy.ops.bundled_mock import die_with_parent


class ForkedChild:
    """The part of :class:`subprocess.Popen` a child's owner uses, for a forked child."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None:
            try:
                pid, status = os.waitpid(self.pid, os.WNOHANG)
            except ChildProcessError:  # reaped already
                return self.returncode
            if pid:
                self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        """Like Popen.wait (raises TimeoutExpired); callers run it in a thread."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while (code := self.poll()) is None:
            if deadline is not None and time.monotonic() >= deadline:
                raise subprocess.TimeoutExpired(["pulse_proxy.accounting.process"], timeout or 0.0)
            time.sleep(0.01)
        return code

    def kill(self) -> None:
        if self.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)


Child = ForkedChild | subprocess.Popen[bytes]


def start_child(fd: int, main: Callable[[int], None]) -> Child:
    """A process running ``main(fd)``, ``fd`` being its end of a socket pair."""
    if not sys.platform.startswith("linux"):
        return subprocess.Popen(
            [sys.executable, "-m", "pulse_proxy.accounting.process", str(fd)],
            pass_fds=[fd],
            stdin=subprocess.DEVNULL,
            preexec_fn=die_with_parent,  # noqa: PLW1509 - prctl only, before exec
        )
    with warnings.catch_warnings():
        # Python 3.12+ warns about forking with threads alive; see the module docstring.
        warnings.simplefilter("ignore", DeprecationWarning)
        pid = os.fork()
    if pid:
        return ForkedChild(pid)
    _run_forked(fd, main)  # never returns


def _run_forked(fd: int, main: Callable[[int], None]) -> NoReturn:
    code = 1
    try:
        gc.freeze()  # everything inherited: never traversed, so never copied by the GC
        os.closerange(3, fd)
        os.closerange(fd + 1, os.sysconf("SC_OPEN_MAX"))
        devnull = os.open(os.devnull, os.O_RDONLY)
        os.dup2(devnull, 0)
        os.close(devnull)
        signal.set_wakeup_fd(-1)  # the proxy's event loop's, now closed
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        die_with_parent()
        main(fd)
        code = 0
    except BaseException:  # noqa: BLE001 - report it, then leave without the parent's exit path
        with contextlib.suppress(Exception):
            traceback.print_exc()
            sys.stderr.flush()
    finally:
        os._exit(code)
