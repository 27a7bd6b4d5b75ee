"""The proxy's children misbehaving, against a real ``python -m pulse_proxy`` process:
a stalled or crashing accounting process, and a bundled mock that dies."""

from __future__ import annotations

import contextlib
import itertools
import os
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path

import httpx
import pytest
from conftest import JsonLinesProcess, free_port, start_proxy, wait_until
from prometheus_client.parser import text_string_to_metric_families

from pulse_proxy.backoff import Backoff
from pulse_proxy.settings import ConfigError, load_settings

CHAT = {"model": "gpt-4o", "messages": [{"role": "user", "content": "Say hello"}]}
# Padding in a field the mock ignores: the request body is large, the mock's work is not.
PAD = "x" * (512 * 1024)


class Proxy(JsonLinesProcess):
    """``python -m pulse_proxy`` in front of its bundled mock, with extra variables."""

    def __init__(self, **env: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        clean = {k: v for k, v in os.environ.items() if not k.startswith("PULSE_")}
        super().__init__(
            [sys.executable, "-m", "pulse_proxy", "--port", str(self.port)], env={**clean, **env}
        )
        wait_until(lambda: bool(self.events("pulse.started")) or self.process.poll() is not None, timeout=60)
        assert self.process.poll() is None, self.read_stderr()

    def child(self, module: str) -> int:
        """The pid of this proxy's child running ``module``."""
        for pid, cmdline in children(self.process.pid).items():
            if module in cmdline:
                return pid
        raise AssertionError(f"no child running {module}")

    def accounting_child(self) -> int:
        """The pid of this proxy's accounting process: forked from the proxy, it has the
        proxy's command line, so it is the child that is not the bundled mock."""
        others = [pid for pid, cmdline in children(self.process.pid).items() if "mock_upstream" not in cmdline]
        assert len(others) == 1, others
        return others[0]

    def request_ids(self) -> Counter[str]:
        return Counter(event["request_id"] for event in self.events("llm.request"))

    def metric(self, name: str, **labels: str) -> float | None:
        text = httpx.get(self.url + "/metrics").text
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                    return float(sample.value)
        return None


@pytest.fixture
def start() -> Iterator[type[Proxy]]:
    """Start proxies with ``start(**env)``; each is killed at the end if still running."""
    started: list[Proxy] = []

    def make(**env: str) -> Proxy:
        proxy = Proxy(**env)
        started.append(proxy)
        return proxy

    yield make  # type: ignore[misc]
    for proxy in started:
        for pid in children(proxy.process.pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
        if proxy.process.poll() is None:
            proxy.process.terminate()
            try:
                proxy.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proxy.process.kill()
                proxy.process.wait()


def stat_fields(pid: int) -> list[str]:
    """/proc/<pid>/stat after the command name: [state, ppid, ...]."""
    text = Path(f"/proc/{pid}/stat").read_text()
    return text[text.rindex(")") + 2 :].split()


def children(parent: int) -> dict[int, str]:
    """Live (not zombie) children of ``parent``, with their command lines."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = stat_fields(int(entry.name))
            if int(fields[1]) != parent or fields[0] == "Z":
                continue
            found[int(entry.name)] = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except (OSError, ValueError, IndexError):
            continue
    return found


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def post(client: httpx.Client, request_id: str, body: dict[str, object] = CHAT) -> httpx.Response:
    return client.post("/v1/chat/completions", json=body, headers={"X-Request-ID": request_id})


def test_a_stalled_accounting_process_costs_accuracy_not_memory(start: type[Proxy]) -> None:
    """With the accounting child stopped, the proxy's backlog stays within its bounds
    (bodies dropped, then header-only accounting), every request still succeeds, and
    once the child resumes each request has exactly one event."""
    max_bytes = 4 * 1024 * 1024
    proxy = start(
        PULSE_ACCOUNTING__MAX_PENDING_REQUESTS="50", PULSE_ACCOUNTING__MAX_PENDING_BYTES=str(max_bytes)
    )
    big = {**CHAT, "metadata": {"pad": PAD}}
    sent: list[str] = []
    with httpx.Client(base_url=proxy.url, timeout=60) as client:
        for i in range(20):  # warm up: the allocator's high-water mark for a big body
            sent.append(f"warm-{i}")
            assert post(client, sent[-1], big).status_code == 200
        wait_until(lambda: len(proxy.events("llm.request")) == 20, timeout=30)
        worker = proxy.accounting_child()
        before = rss_bytes(proxy.process.pid)
        os.kill(worker, signal.SIGSTOP)
        try:
            for i in range(160):  # 80 MiB of request bodies
                sent.append(f"stalled-{i}")
                assert post(client, sent[-1], big).status_code == 200
            grown = rss_bytes(proxy.process.pid) - before
            assert proxy.events("pulse.accounting_backlog_full")
        finally:
            os.kill(worker, signal.SIGCONT)
        wait_until(lambda: len(proxy.events("llm.request")) >= len(sent), timeout=60)
        time.sleep(0.5)
        assert proxy.request_ids() == Counter(sent)
        # The bound is 4 MiB of bodies; without it the backlog held all 80 MiB.
        assert grown < max_bytes + 40 * 1024 * 1024, grown
        unread = [e for e in proxy.events("llm.request") if e["usage_unread"] == "backlog"]
        assert len(unread) >= 160 - 50
        assert all(e["token_source"] is None and e["prompt_tokens"] is None for e in unread)
        assert all(e["status_code"] == 200 and e["outcome"] == "success" for e in unread)
        assert (proxy.metric("pulse_accounting_degraded_total", stage="headers_only") or 0) > 0
        assert (proxy.metric("pulse_accounting_degraded_total", stage="bodies_dropped") or 0) > 0
        # The child is still the same one, and accounts fully again.
        assert proxy.accounting_child() == worker
        sent.append("after")
        assert post(client, "after").status_code == 200
        wait_until(lambda: "after" in proxy.request_ids(), timeout=30)
    (after,) = [e for e in proxy.events("llm.request") if e["request_id"] == "after"]
    assert after["token_source"] == "upstream" and after["usage_unread"] is None


def test_a_batch_that_kills_the_accounting_process_is_quarantined(start: type[Proxy]) -> None:
    """A request that crashes the child every time: the child is restarted with growing
    delays, the request alone is quarantined after two deaths (logged without content)
    while its batch mates keep their usage, every request gets one event, and the
    proxy keeps serving throughout."""
    proxy = start(PULSE_TEST_CRASH_ON_REQUEST_ID="poison-request")
    sent: list[str] = []
    with httpx.Client(base_url=proxy.url, timeout=60) as client, ThreadPoolExecutor(4) as pool:
        for round_ in range(2):
            # Sent together, so that they most likely share the poisonous one's batch.
            ids = [f"mate-{round_}-0", f"mate-{round_}-1", "poison-request", f"mate-{round_}-2"]
            sent.extend(ids)
            assert list(pool.map(lambda rid: post(client, rid).status_code, ids)) == [200] * 4
            wait_until(
                lambda n=round_: len(proxy.events("pulse.accounting_batch_quarantined")) > n, timeout=60
            )
            for i in range(5):  # served while the child is down or backing off
                sent.append(f"ok-{round_}-{i}")
                assert post(client, sent[-1]).status_code == 200
            assert client.get("/healthz").status_code == 200
        wait_until(lambda: sum(proxy.request_ids().values()) >= len(sent), timeout=60)
        time.sleep(0.5)
    assert proxy.request_ids() == Counter(sent)
    quarantined = proxy.events("pulse.accounting_batch_quarantined")
    assert [line["requests"] for line in quarantined] == [1, 1]
    restarts = proxy.events("pulse.accounting_worker_restarted")
    # Two deaths per poisonous request, each restart waiting twice as long as the last:
    # an immediate restart would have looped as fast as the child could start.
    assert [line["delay_s"] for line in restarts] == [0.1, 0.2, 0.4, 0.8]
    stamps = [_epoch(line["timestamp"]) for line in restarts]
    for (earlier, later), delay in zip(itertools.pairwise(stamps), [0.1, 0.2, 0.4]):
        assert later - earlier >= delay - 0.002
    events = proxy.events("llm.request")
    poisoned = [e for e in events if e["request_id"] == "poison-request"]
    assert [e["usage_unread"] for e in poisoned] == ["quarantined"] * 2
    assert all(e["token_source"] is None and e["status_code"] == 200 for e in poisoned)
    others = [e for e in events if e["request_id"] != "poison-request"]
    assert all(e["token_source"] == "upstream" and e["usage_unread"] is None for e in others)
    assert proxy.metric("pulse_accounting_degraded_total", stage="quarantined") == 2
    assert not any(b"Say hello" in line for line in proxy.raw if b"quarantined" in line)


def _epoch(stamp: str) -> float:
    return datetime.fromisoformat(stamp).timestamp()


def _ready(proxy: Proxy) -> tuple[int, str]:
    response = httpx.get(proxy.url + "/readyz")
    return response.status_code, response.json()["reason"]


def _mock_port(proxy: Proxy) -> int:
    """The bundled mock's port, from the start-up line that announces it."""
    url = httpx.URL(proxy.events("pulse.started")[0]["message"].split(" at ")[1])
    assert url.port is not None
    return url.port


def _reaped(pid: int, parent: int) -> bool:
    """No zombie of ``pid`` left under ``parent`` (the pid may be gone or reused)."""
    try:
        state, ppid = stat_fields(pid)[:2]
    except FileNotFoundError:
        return True
    return not (state == "Z" and int(ppid) == parent)


def test_a_killed_bundled_mock_is_reaped_and_restarted_on_its_port(start: type[Proxy]) -> None:
    """SIGKILL the bundled mock: the proxy reaps it (no zombie), starts it again on the
    same port, logs pulse.mock_restarted, and requests succeed again."""
    proxy = start()
    with httpx.Client(base_url=proxy.url, timeout=30) as client:
        assert post(client, "before").status_code == 200
        wait_until(lambda: _ready(proxy)[0] == 200, timeout=30)
        mock = proxy.child("mock_upstream")
        os.kill(mock, signal.SIGKILL)
        wait_until(lambda: bool(proxy.events("pulse.mock_restarted")), timeout=30)
        (restarted,) = proxy.events("pulse.mock_restarted")
        assert restarted["pid"] != mock and restarted["pid"] == proxy.child("mock_upstream")
        assert proxy.events("pulse.mock_exited")[0]["exitcode"] == -signal.SIGKILL
        assert _reaped(mock, proxy.process.pid)
        response = post(client, "after")
        assert response.status_code == 200 and response.json()["usage"]["total_tokens"] > 0
        wait_until(lambda: _ready(proxy)[0] == 200, timeout=30)
    assert restarted["port"] == _mock_port(proxy)


def test_readyz_names_the_bundled_mock_while_its_port_is_held(start: type[Proxy]) -> None:
    """While the mock cannot be restarted (another process listens on its port),
    /readyz answers 503 naming the bundled mock and restarts are retried with back-off;
    once the port is free the mock comes back on it and the proxy is ready again."""
    proxy = start()
    with httpx.Client(base_url=proxy.url, timeout=30) as client:
        assert post(client, "before").status_code == 200
        port = _mock_port(proxy)
        os.kill(proxy.child("mock_upstream"), signal.SIGKILL)
        holder = socket.socket()
        holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        deadline = time.monotonic() + 10
        while True:  # the port is free once the kernel has closed the dead mock's listener
            try:
                holder.bind(("127.0.0.1", port))
                break
            except OSError:
                assert time.monotonic() < deadline
                time.sleep(0.005)
        holder.listen()
        try:
            wait_until(lambda: len(proxy.events("pulse.mock_restart_failed")) >= 2, timeout=60)
            status, reason = _ready(proxy)
            assert status == 503 and "bundled mock" in reason, reason
            assert not proxy.events("pulse.mock_restarted")
        finally:
            holder.close()
        wait_until(lambda: bool(proxy.events("pulse.mock_restarted")), timeout=60)
        assert post(client, "after").status_code == 200
        wait_until(lambda: _ready(proxy)[0] == 200, timeout=30)


def test_backoff_doubles_to_its_cap_and_resets_after_a_healthy_run() -> None:
    """Delays double from the first to the cap; a child that stayed up for the healthy
    period starts the sequence again, one that died sooner does not."""
    now = [0.0]
    backoff = Backoff(first_s=0.1, max_s=1.0, healthy_s=30.0, clock=lambda: now[0])
    assert [backoff.next_delay() for _ in range(6)] == [0.1, 0.2, 0.4, 0.8, 1.0, 1.0]
    backoff.started()
    now[0] += 29.0
    assert backoff.next_delay() == 1.0
    backoff.started()
    now[0] += 30.0
    assert backoff.next_delay() == 0.1


def test_backoff_stays_at_its_cap_however_often_the_child_dies() -> None:
    """A child that never stays up gets the capped delay for ever, not an overflow."""
    backoff = Backoff(first_s=0.1, max_s=10.0, healthy_s=30.0, clock=lambda: 0.0)
    delays = [backoff.next_delay() for _ in range(5000)]
    assert delays[:3] == [0.1, 0.2, 0.4] and set(delays[-4000:]) == {10.0}


def test_a_proxy_stopping_while_the_accounting_child_is_down_finishes_at_once(mock_url: str) -> None:
    """Shutdown during a restart back-off accounts the backlog in-process instead of
    waiting for a child that is not there, so every request still has its event."""
    with start_proxy(mock_url + "/v1") as proxy:
        worker = proxy.app.dispatcher.worker
        assert worker is not None
        worker._backoff = Backoff(first_s=60.0)  # the successor would come much later
        os.kill(worker._process.pid, signal.SIGKILL)
        wait_until(lambda: worker.restarts == 1)
        with httpx.Client(base_url=proxy.url) as client:
            assert post(client, "while-down").status_code == 200
        wait_until(lambda: bool(worker._pending))
        stopping = time.monotonic()
    # Without a child, waiting for its answers would last the whole grace period (30 s).
    assert time.monotonic() - stopping < 15
    (event,) = proxy.exchanges
    assert event.request_id == "while-down" and event.token_source == "upstream"


@pytest.mark.parametrize("key", ["MAX_PENDING_REQUESTS", "MAX_PENDING_BYTES"])
def test_backlog_bounds_must_be_positive(key: str) -> None:
    """A zero bound would degrade every request: start-up refuses it, naming the key."""
    with pytest.raises(ConfigError, match=f"accounting.{key.lower()}"):
        load_settings(environ={f"PULSE_ACCOUNTING__{key}": "0"})
    assert getattr(load_settings(environ={}).accounting, key.lower()) > 0
