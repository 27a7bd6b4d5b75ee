"""Memory footprint of the sidecar: the proxy and its accounting process, summed.

A sidecar runs in every pod, usually under a memory limit, so what counts is the
memory of the whole sidecar: the proxy's process plus the accounting child it starts.
This starts the bundled mock as a separate upstream (``python -m mock_upstream``) and
the proxy in front of it (``python -m pulse_proxy serve``), then reports:

- idle: just started (``/healthz`` answers, nothing proxied yet);
- warm: after a few ordinary requests (chat, streamed chat, embeddings, responses), so
  that each process has loaded what a request makes it load;
- streams: with N concurrent streams held open (1,000 by default), each paced by the
  mock at one token every few seconds so that all are mid-flight when sampled;
- after: once the streams are closed and accounted.

For each: RSS (what ``ps`` and most dashboards show; pages shared by the two processes
count twice) and PSS from ``/proc/<pid>/smaps_rollup`` (each shared page split between
its sharers: the fairer sum, and closer to what a cgroup charges).  Linux only.

    .venv/bin/python bench/footprint.py [--streams 1000]

The machine is shared: run it alone, once before and once after a change.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
CHAT = b'{"model":"gpt-4o","messages":[{"role":"user","content":"Tell me a story."}],"stream":true}'


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_http(url: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer")


def children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(c) for c in text.split()]


def memory_kb(pid: int) -> tuple[int, int | None]:
    """(RSS, PSS) of one process in KiB; PSS is None where smaps_rollup is missing."""
    rss = 0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            rss = int(line.split()[1])
    try:
        rollup = Path(f"/proc/{pid}/smaps_rollup").read_text()
    except OSError:
        return rss, None
    for line in rollup.splitlines():
        if line.startswith("Pss:"):
            return rss, int(line.split()[1])
    return rss, None


def sample(proxy_pid: int) -> dict[str, Any]:
    """The proxy and every process below it (the accounting child), in MiB."""
    pids = [proxy_pid, *children(proxy_pid)]
    figures = [memory_kb(pid) for pid in pids]
    pss = [p for _, p in figures]
    return {
        "pids": len(pids),
        "rss": [round(r / 1024, 1) for r, _ in figures],
        "rss_sum": round(sum(r for r, _ in figures) / 1024, 1),
        "pss": [round(p / 1024, 1) for p in pss] if None not in pss else None,
        "pss_sum": round(sum(p for p in pss if p is not None) / 1024, 1)
        if None not in pss
        else None,
    }


def peak(proxy_pid: int, seconds: float) -> dict[str, Any]:
    """The largest of a few samples over ``seconds`` (streams keep allocating)."""
    best = sample(proxy_pid)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        time.sleep(0.5)
        now = sample(proxy_pid)
        if now["rss_sum"] > best["rss_sum"]:
            best = now
    return best


def warm_up(base: str) -> None:
    with httpx.Client(base_url=base, timeout=30) as client:
        chat = {"model": "gpt-4o", "messages": [{"role": "user", "content": "Hello there"}]}
        for _ in range(3):
            client.post("/chat/completions", json=chat).raise_for_status()
            client.post("/chat/completions", json={**chat, "stream": True}).raise_for_status()
        client.post("/chat/completions", json={**chat, "model": "gpt-4-turbo"}).raise_for_status()
        client.post(
            "/embeddings", json={"model": "text-embedding-3-small", "input": "hi"}
        ).raise_for_status()
        client.post("/responses", json={"model": "gpt-4o", "input": "hi"}).raise_for_status()


async def open_stream(port: int, started: list[int], writers: list[asyncio.StreamWriter]) -> None:
    """One streamed chat request on a raw socket, read until its first SSE bytes."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writers.append(writer)
    writer.write(
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        b"Content-Type: application/json\r\nAuthorization: Bearer sk-bench\r\n"
        b"X-Mock-Completion-Tokens: 40\r\nX-Mock-Tokens-Per-Second: 0.5\r\n"
        b"Content-Length: " + str(len(CHAT)).encode() + b"\r\n\r\n" + CHAT
    )
    head = await reader.readuntil(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 200"):
        raise RuntimeError(head[:80].decode(errors="replace"))
    await reader.readuntil(b"data: ")
    started.append(1)


async def hold_streams(port: int, count: int, proxy_pid: int, hold_s: float) -> dict[str, Any]:
    started: list[int] = []
    writers: list[asyncio.StreamWriter] = []
    tasks = [asyncio.ensure_future(open_stream(port, started, writers)) for _ in range(count)]
    done, pending = await asyncio.wait(tasks, timeout=120)
    failures = [t.exception() for t in done if t.exception() is not None]
    figures = await asyncio.to_thread(peak, proxy_pid, hold_s)
    figures["streams_open"] = len(started)
    figures["failures"] = len(failures) + len(pending)
    for task in pending:
        task.cancel()
    for writer in writers:
        writer.close()
    await asyncio.gather(*pending, return_exceptions=True)
    return figures


def row(name: str, figures: dict[str, Any]) -> str:
    pss = f"{figures['pss_sum']:7.1f}" if figures["pss_sum"] is not None else "      -"
    parts = " + ".join(f"{r:.1f}" for r in figures["rss"])
    extra = f"  ({figures['streams_open']} streams open)" if "streams_open" in figures else ""
    return f"| {name:<8} | {figures['rss_sum']:7.1f} | {pss} | {parts}{extra} |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--streams", type=int, default=1000)
    parser.add_argument(
        "--hold-s", type=float, default=3.0, help="sampling time with the streams open"
    )
    args = parser.parse_args()

    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    mock_port, proxy_port = free_port(), free_port()
    # Room for every stream plus the readiness probe on the upstream side.
    proxy_env = {**env, "PULSE_UPSTREAM__MAX_CONNECTIONS": str(args.streams + 100)}
    with tempfile.TemporaryFile() as errors:
        results = measure(args, env, proxy_env, mock_port, proxy_port, errors)
    report(results)


def measure(
    args: argparse.Namespace,
    env: dict[str, str],
    proxy_env: dict[str, str],
    mock_port: int,
    proxy_port: int,
    errors: Any,
) -> dict[str, dict[str, Any]]:
    mock = subprocess.Popen(
        [sys.executable, "-m", "mock_upstream", "--port", str(mock_port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    proxy = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "pulse_proxy",
            "serve",
            "--port",
            str(proxy_port),
            "--upstream",
            f"http://127.0.0.1:{mock_port}/v1",
        ],
        env=proxy_env,
        stdout=subprocess.DEVNULL,
        stderr=errors,
    )
    try:
        wait_http(f"http://127.0.0.1:{mock_port}/v1/models")
        wait_http(f"http://127.0.0.1:{proxy_port}/healthz")
        time.sleep(2)  # the accounting child finishes starting
        results = {"idle": peak(proxy.pid, 1)}
        warm_up(f"http://127.0.0.1:{proxy_port}/v1")
        time.sleep(1)
        results["warm"] = peak(proxy.pid, 1)
        results["streams"] = asyncio.run(
            hold_streams(proxy_port, args.streams, proxy.pid, args.hold_s)
        )
        time.sleep(3)  # disconnects recorded and accounted
        results["after"] = peak(proxy.pid, 1)
    except Exception:
        errors.seek(0)
        sys.stderr.write(errors.read()[-4000:].decode(errors="replace"))
        raise
    finally:
        for process in (proxy, mock):
            process.terminate()
            try:
                process.wait(timeout=40)
            except subprocess.TimeoutExpired:
                process.kill()
    return results


def report(results: dict[str, dict[str, Any]]) -> None:
    print(
        f"python {sys.version.split()[0]}, {os.cpu_count()} cores; MiB, proxy + accounting process"
    )
    print("| state    |     RSS |     PSS | RSS per process |")
    print("| --- | ---: | ---: | --- |")
    for name, figures in results.items():
        print(row(name, figures))
    if results["streams"]["failures"]:
        print(f"{results['streams']['failures']} streams failed to open")


if __name__ == "__main__":
    main()
