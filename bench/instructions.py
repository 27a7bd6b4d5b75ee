#!/usr/bin/env python3
"""Instructions per request: what the proxy's event loop executes, next to the bare
pass-through's, counted by valgrind instead of timed.

On this 2-vCPU VM the req/s of ``bench/overhead.py`` move by ±30 % between identical
runs (neighbours on the host), which hides any change worth less than that.  An
instruction count does not move with them, so it is the figure to judge a change to
the request path by; ``overhead.py`` stays the one that says what a user would see.

Each target runs under ``valgrind --tool=callgrind`` (Debian's ``valgrind``).  After a
warm-up of 200 requests the counters are zeroed, ``--requests`` POSTs go through at
``--connections`` from an aiohttp client in this process, and the counters are dumped:
only those requests are counted, in the target's own process.  The proxy's accounting
child runs outside valgrind and is not counted: it is the work moved off the loop.

Under valgrind the proxy does some 50 req/s, so a 5 ms accounting batch would hold
one request where at full speed it holds ten: ``--batch-ms`` (``accounting.batch_ms``
for the proxy) stretches the window so batches hold what they hold at full speed (150
gives 6–8), and the table shows the requests per batch it got.

Instructions are not time: Python bytecode retires about 2.5 instructions a
nanosecond here, a ``bytes.find`` or regular-expression scan four times as many, so a
scan weighs more in this count than in seconds.  Run from the repository root::

    .venv/bin/python bench/instructions.py                 # 1,000 requests per row
    .venv/bin/python bench/instructions.py --requests 300  # quicker
    .venv/bin/python bench/instructions.py --batch-ms 150  # batches as at full speed
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR))

import overhead  # the canned upstream, bare pass-through and request bodies

WARMUP_REQUESTS = 200
DEFAULT_BATCH_MS = 5.0


async def drive(port: int, body: bytes, requests: int, connections: int) -> None:
    """``requests`` POSTs over ``connections`` keep-alive connections, bodies read whole."""
    left = requests
    url = f"http://127.0.0.1:{port}/v1/chat/completions"
    headers = {
        "Content-Type": "application/json",
        "Authorization": "Bearer sk-bench-not-a-real-key",
    }
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=connections)) as session:

        async def worker() -> None:
            nonlocal left
            while left > 0:
                left -= 1
                async with session.post(url, data=body, headers=headers) as response:
                    await response.read()
                    if response.status != 200:
                        raise RuntimeError(f"{url} answered {response.status}")

        await asyncio.gather(*(worker() for _ in range(connections)))


def wait_ready(port: int, proc: subprocess.Popen[bytes], timeout: float = 600.0) -> None:
    deadline = time.monotonic() + timeout  # valgrind makes start-up some 50 times slower
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"target exited with {proc.returncode} before it was ready")
        try:
            if overhead.http_request(port, "GET", "/healthz", timeout=2)[0] == 200:
                return
        except OSError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"target on port {port} not ready after {timeout:.0f} s")


def count(
    argv: list[str],
    port: int,
    body: bytes,
    requests: int,
    connections: int,
    out: Path,
    env: dict[str, str] | None = None,
) -> tuple[int, float]:
    """Instructions the process started by ``argv`` executed for ``requests`` requests,
    and the requests per second it managed under valgrind."""
    prefix = out / f"callgrind.{port}"
    proc = subprocess.Popen(
        ["valgrind", "--tool=callgrind", f"--callgrind-out-file={prefix}.%p", *argv],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=None if env is None else {**os.environ, **env},
    )
    try:
        wait_ready(port, proc)
        asyncio.run(drive(port, body, WARMUP_REQUESTS, connections))
        subprocess.run(["callgrind_control", "-z", str(proc.pid)], check=True, capture_output=True)
        started = time.monotonic()
        asyncio.run(drive(port, body, requests, connections))
        rate = requests / (time.monotonic() - started)
        subprocess.run(["callgrind_control", "-d", str(proc.pid)], check=True, capture_output=True)
    finally:
        proc.terminate()
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
    dump = Path(f"{prefix}.{proc.pid}.1")  # the part dumped on demand: the measured requests
    totals = re.search(r"^(?:summary|totals):\s+(\d+)", dump.read_text(), re.MULTILINE)
    if totals is None:
        raise RuntimeError(f"no instruction total in {dump}")
    return int(totals.group(1)), rate


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--requests", type=int, default=1000, help="measured requests per row (1000)"
    )
    parser.add_argument("--connections", type=int, default=32, help="concurrent connections (32)")
    parser.add_argument(
        "--batch-ms",
        type=float,
        default=DEFAULT_BATCH_MS,
        help=f"the proxy's accounting.batch_ms under valgrind ({DEFAULT_BATCH_MS:g})",
    )
    args = parser.parse_args(argv)
    for tool in ("valgrind", "callgrind_control"):
        if shutil.which(tool) is None:
            print(f"{tool} not found: apt-get install -y valgrind", file=sys.stderr)
            return 1
    pulse_cli = BENCH_DIR.parent / ".venv" / "bin" / "pulse-proxy"
    here = str(BENCH_DIR / "overhead.py")
    out = Path(tempfile.mkdtemp(prefix="pulse-instructions-"))
    upstream_port = overhead.free_port()
    upstream = subprocess.Popen([sys.executable, here, "--_upstream", str(upstream_port)])
    try:
        wait_ready(upstream_port, upstream)
        print(
            "| kind | bare-aiohttp instructions/request | pulse instructions/request | bare ÷ pulse "
            "| pulse req/s under valgrind | requests per batch |"
        )
        print("| --- | ---: | ---: | ---: | ---: | ---: |")
        for kind in overhead.KINDS:
            body = overhead.make_request_body(kind == "stream")
            port = overhead.free_port()
            bare, _ = count(
                overhead.bare_argv(port, upstream_port),
                port,
                body,
                args.requests,
                args.connections,
                out,
            )
            port = overhead.free_port()
            # Under the interpreter explicitly: valgrind must run python, not the script.
            pulse, rate = count(
                [sys.executable, *overhead.pulse_argv(pulse_cli, port, upstream_port)],
                port,
                body,
                args.requests,
                args.connections,
                out,
                env={"PULSE_ACCOUNTING__BATCH_MS": str(args.batch_ms)},
            )
            per_bare, per_pulse = bare // args.requests, pulse // args.requests
            print(
                f"| {kind} | {per_bare:,} | {per_pulse:,} | {100 * per_bare / per_pulse:.0f} % "
                f"| {rate:.0f} | {rate * args.batch_ms / 1000:.1f} |",
                flush=True,
            )
    finally:
        upstream.terminate()
        upstream.wait(10)
        shutil.rmtree(out, ignore_errors=True)
    print(
        f"\n{args.requests} requests per row at {args.connections} connections, after {WARMUP_REQUESTS} to warm up."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
