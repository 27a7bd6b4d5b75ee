"""The sidecar's memory: the accounting process shares the proxy's pages.

A sidecar runs under a pod's memory limit, which charges each page once.  Forked from
the proxy, the accounting process starts with the proxy's libraries and objects
shared copy-on-write instead of importing them all again.  These tests run the real
``pulse-proxy serve`` (with its bundled mock) and read the kernel's own accounting of
the child in ``/proc``.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from conftest import wait_until
from test_cli import ProxyProcess

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc; forks on Linux only")


def children(pid: int) -> list[int]:
    return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def rollup_kb(pid: int) -> dict[str, int]:
    """``/proc/PID/smaps_rollup``: the process's memory by kind, in KiB."""
    figures = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]:
        name, value, *_ = line.split()
        figures[name.rstrip(":")] = int(value)
    return figures


@pytest.fixture
def proxy() -> Iterator[ProxyProcess]:
    proc = ProxyProcess()
    try:
        wait_until(lambda: bool(proc.events("pulse.started")), timeout=30)
        yield proc
    finally:
        if proc.process.poll() is None:
            proc.process.kill()
            proc.process.wait()


def accounting_child(proxy: ProxyProcess) -> int:
    """The proxy's children are the bundled mock (an interpreter of its own) and the
    accounting process; the latter is the one whose command line is not the mock's."""
    found = []
    for pid in children(proxy.process.pid):
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        if b"mock_upstream" not in cmdline:
            found.append(pid)
    assert len(found) == 1, found
    return found[0]


def test_the_accounting_process_shares_the_proxys_memory(proxy: ProxyProcess) -> None:
    """Once it has accounted requests (and loaded a vocabulary of its own), the accounting
    process still shares tens of MB of the proxy's heap (an interpreter started afresh
    shares none, only library code), it holds none of the proxy's descriptors but its
    socket, and the events are complete."""
    with httpx.Client(base_url=proxy.url + "/v1", timeout=30) as client:
        chat = {"model": "gpt-4o", "messages": [{"role": "user", "content": "Hello there"}]}
        for stream in (False, True):
            assert client.post("/chat/completions", json={**chat, "stream": stream}).status_code == 200
    wait_until(lambda: len(proxy.events("llm.request")) == 2, timeout=30)
    assert all(e["token_source"] == "upstream" and e["prompt_tokens_local"] for e in proxy.events("llm.request"))

    child = accounting_child(proxy)
    memory = rollup_kb(child)
    # Pages it shares that are not file-backed library code: the proxy's heap.
    shared_anonymous = memory["Shared_Dirty"]
    assert shared_anonymous > 20 * 1024, memory

    descriptors = sorted(int(fd) for fd in os.listdir(f"/proc/{child}/fd"))
    assert descriptors[:3] == [0, 1, 2] and len(descriptors) == 4, descriptors
    assert os.readlink(f"/proc/{child}/fd/{descriptors[3]}").startswith("socket:")
    assert os.readlink(f"/proc/{child}/fd/0") == os.devnull


def test_the_forked_child_ends_with_the_proxy(proxy: ProxyProcess) -> None:
    """SIGTERM: the proxy stops its child and exits 0.  SIGKILL of the proxy: the child
    is not left behind (it holds no listening socket either way)."""
    child = accounting_child(proxy)
    code, stderr = proxy.stop()
    assert code == 0, stderr
    wait_until(lambda: not Path(f"/proc/{child}").exists() or _zombie(child), timeout=10)

    again = ProxyProcess()
    try:
        wait_until(lambda: bool(again.events("pulse.started")), timeout=30)
        orphan = accounting_child(again)
        os.kill(again.process.pid, signal.SIGKILL)
        again.process.wait()
        wait_until(lambda: not Path(f"/proc/{orphan}").exists() or _zombie(orphan), timeout=10)
    finally:
        if again.process.poll() is None:
            again.process.kill()
            again.process.wait()


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True
