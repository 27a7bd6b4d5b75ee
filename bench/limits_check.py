#!/usr/bin/env python3
"""The cost of the limits check on the request path, per request, without HTTP.

Run from the repository root::

    .venv/bin/python bench/limits_check.py                       # memory backend
    .venv/bin/python bench/limits_check.py --redis redis://127.0.0.1:6379/0

Times ``Limiter.admit`` + ``Limiter.release`` for a chat request under one per-key
``requests_per_min`` rule that never trips (the salted key hash included), and under
a per-user ``tokens_per_min`` rule (which parses the body for the user and the token
estimate).  With ``--redis`` it also times one admission at a time against that
server (one connection, as at one client connection) and prints p50 and p99.
The end-to-end figures (paired throughput, added p50) come from ``bench/overhead.py``
with ``PULSE_CONFIG`` naming a limits config.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from typing import Any

from pulse_proxy.limits.limiter import Limiter
from pulse_proxy.records import Capture, Exchange
from pulse_proxy.settings.limits import LimitsSettings

BODY = (
    b'{"model":"gpt-4o-mini","max_tokens":64,"user":"user-7","messages":'
    b'[{"role":"system","content":"You are terse."},'
    b'{"role":"user","content":"Name three colours."}]}'
)


def capture(n: int) -> Capture:
    cap = Capture(Exchange(request_id=str(n), method="POST", path="/v1/chat/completions"))
    cap.exchange.endpoint = "chat"
    cap.api_key = "sk-bench-not-a-real-key"
    cap.request_body = BODY
    return cap


def limiter(rules: list[dict[str, Any]], store: Any = None, **options: Any) -> Limiter:
    settings = LimitsSettings.model_validate({"rules": rules, **options})
    return Limiter(settings, hash_key=b"k" * 32, max_tags=10, prices=None, store=store)


async def per_call_us(lim: Limiter, count: int) -> float:
    captures = [capture(n) for n in range(count)]
    admit, release = lim.admit, lim.release
    started = time.perf_counter()
    for cap in captures:
        if await admit(cap) is None:
            release(cap)
    return (time.perf_counter() - started) / count * 1e6


async def baseline_us(count: int) -> float:
    """An ``async def`` that does nothing, awaited: the floor of any awaited check."""

    async def nothing(_: Capture) -> None:
        return None

    captures = [capture(n) for n in range(count)]
    started = time.perf_counter()
    for cap in captures:
        await nothing(cap)
    return (time.perf_counter() - started) / count * 1e6


async def redis_latencies(url: str, count: int) -> list[float]:
    from pulse_proxy.limits.redis_store import RedisStore

    store = RedisStore(url, timeout_ms=50, max_keys=10_000)
    lim = limiter(
        [{"name": "per_key", "requests_per_min": 10**9}],
        store,
        backend="redis",
        redis_url=url,
    )
    latencies = []
    try:
        for n in range(count):
            cap = capture(n)
            started = time.perf_counter()
            refusal = await lim.admit(cap)
            latencies.append((time.perf_counter() - started) * 1e6)
            assert refusal is None and cap.exchange.limits_backend_error is None
            lim.release(cap)
    finally:
        await store.aclose()
    return latencies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--redis", default=None, help="a redis:// URL to time as well")
    args = parser.parse_args()

    async def run() -> None:
        cases = {
            "awaited no-op (floor)": None,
            "per-key requests_per_min": [{"name": "per_key", "requests_per_min": 10**9}],
            "per-user tokens_per_min": [
                {"name": "per_user", "by": "user", "tokens_per_min": 10**12}
            ],
        }
        for name, rules in cases.items():
            figures = []
            for _ in range(args.rounds):
                if rules is None:
                    figures.append(await baseline_us(args.count))
                else:
                    figures.append(await per_call_us(limiter(rules), args.count))
            print(f"memory  {name:28s} median {statistics.median(figures):6.2f} us/request "
                  f"(rounds: {', '.join(f'{f:.2f}' for f in figures)})")  # fmt: skip
        if args.redis:
            latencies = sorted(await redis_latencies(args.redis, min(args.count, 20_000)))
            p50 = latencies[len(latencies) // 2]
            p99 = latencies[int(len(latencies) * 0.99)]
            print(f"redis   per-key requests_per_min     p50 {p50:7.1f} us  p99 {p99:7.1f} us "
                  f"({len(latencies):,} admissions, one connection)")  # fmt: skip

    try:
        import uvloop

        uvloop.run(run())
    except ImportError:
        asyncio.run(run())


if __name__ == "__main__":
    main()
