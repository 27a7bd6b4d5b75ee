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
from pathlib import Path

import httpx
import pytest
from conftest import ProxyProcess, accounting_child, proxy_process, wait_until

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="reads /proc; forks on Linux only"
)


def rollup_kb(pid: int) -> dict[str, int]:
    """``/proc/PID/smaps_rollup``: the process's memory by kind, in KiB."""
    figures = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]:
        name, value, *_ = line.split()
        figures[name.rstrip(":")] = int(value)
    return figures


def test_the_accounting_process_shares_the_proxys_memory(running: ProxyProcess) -> None:
    """Once it has accounted requests (and loaded a vocabulary of its own), the accounting
    process still shares tens of MB of the proxy's heap (an interpreter started afresh
    shares none, only library code), it holds none of the proxy's descriptors but its
    socket, and the events are complete."""
    with httpx.Client(base_url=running.url + "/v1", timeout=30) as client:
        chat = {"model": "gpt-4o", "messages": [{"role": "user", "content": "Hello there"}]}
        for stream in (False, True):
            assert (
                client.post("/chat/completions", json={**chat, "stream": stream}).status_code == 200
            )
    wait_until(lambda: len(running.events("llm.request")) == 2, timeout=30)
    assert all(
        e["token_source"] == "upstream" and e["prompt_tokens_local"]
        for e in running.events("llm.request")
    )

    child = accounting_child(running.process.pid)
    memory = rollup_kb(child)
    # Pages it shares that are not file-backed library code: the proxy's heap.
    shared_anonymous = memory["Shared_Dirty"]
    assert shared_anonymous > 20 * 1024, memory

    descriptors = sorted(int(fd) for fd in os.listdir(f"/proc/{child}/fd"))
    assert descriptors[:3] == [0, 1, 2] and len(descriptors) == 4, descriptors
    assert os.readlink(f"/proc/{child}/fd/{descriptors[3]}").startswith("socket:")
    assert os.readlink(f"/proc/{child}/fd/0") == os.devnull


def test_the_forked_child_ends_with_the_proxy(running: ProxyProcess) -> None:
    """SIGTERM: the proxy stops its child and exits 0.  SIGKILL of the proxy: the child
    is not left behind (it holds no listening socket either way)."""
    child = accounting_child(running.process.pid)
    code, stderr = running.stop()
    assert code == 0, stderr
    wait_until(lambda: not Path(f"/proc/{child}").exists() or _zombie(child), timeout=10)

    with proxy_process() as again:
        orphan = accounting_child(again.process.pid)
        os.kill(again.process.pid, signal.SIGKILL)
        again.process.wait()
        wait_until(lambda: not Path(f"/proc/{orphan}").exists() or _zombie(orphan), timeout=10)


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True
