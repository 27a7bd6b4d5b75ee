"""Talking to the proxy: the aiohttp plumbing and the checks made before the run starts."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from typing import Any

import aiohttp

from pulse_proxy.ops.demo.mix import Call, Mix
from pulse_proxy.ops.demo.proxy_stats import total_requests

MOCK_OWNER = "llm-pulse-mock"  # what the bundled mock puts in each model's ``owned_by``


class DemoError(Exception):
    """A reason the demo cannot start, phrased for the person who ran it."""


class Proxy:
    """The proxy's HTTP surface as the demo uses it; counts what the traffic got back."""

    def __init__(self, session: aiohttp.ClientSession, base: str, admin_token: str | None) -> None:
        self.session = session
        self.base = base
        self._admin = {"Authorization": f"Bearer {admin_token}"} if admin_token else {}
        self.sent: Counter[str] = Counter()
        self.statuses: Counter[int] = Counter()
        self.failed = 0
        self._inflight: set[asyncio.Task[None]] = set()

    async def admin(self, path: str) -> Any:
        async with self.session.get(self.base + path, headers=self._admin) as response:
            if response.status == 401:
                raise DemoError(
                    f"{self.base}{path} asks for the admin token: pass --admin-token "
                    '(e.g. --admin-token "$PULSE_ADMIN_TOKEN")'
                )
            if response.status != 200:
                raise DemoError(f"{self.base}{path} answered {response.status}")
            return await response.json()

    def send(self, call: Call) -> None:
        """Start ``call`` without waiting for it (the loop holds tasks weakly: keep them)."""
        self.sent[call.kind] += 1
        task = asyncio.create_task(self._send(call))
        self._inflight.add(task)
        task.add_done_callback(self._inflight.discard)

    async def _send(self, call: Call) -> None:
        try:
            async with self.session.request(
                call.method, self.base + call.path, json=call.body, headers=call.headers
            ) as response:
                await response.read()
                self.statuses[response.status] += 1
        except (TimeoutError, aiohttp.ClientError):
            self.failed += 1  # a dropped stream ends here too: that is its point

    async def drain(self, timeout: float) -> None:
        """Let requests in flight finish (bounded), then cancel the rest."""
        if self._inflight:
            _, pending = await asyncio.wait(set(self._inflight), timeout=timeout)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)


async def wait_until_ready(proxy: Proxy, wait_s: float) -> None:
    """/readyz answers 200 within ``wait_s`` (the proxy may be starting), else DemoError."""
    deadline = time.monotonic() + wait_s
    while True:
        try:
            async with proxy.session.get(proxy.base + "/readyz") as response:
                if response.status == 200:
                    return
                reason = (await response.json(content_type=None) or {}).get("reason", "")
                problem = (
                    f"the proxy at {proxy.base} is up but not ready ({reason or response.status})"
                )
        except (TimeoutError, aiohttp.ClientError, ValueError) as exc:
            problem = (
                f"no proxy answers at {proxy.base} ({type(exc).__name__}: {exc}). "
                "Start one in front of the bundled mock first: `pulse-proxy` (or `make run`)"
            )
        if time.monotonic() >= deadline:
            raise DemoError(problem)
        await asyncio.sleep(0.5)


async def warm_up(proxy: Proxy, mix: Mix, wait_s: float) -> None:
    """Send one chat and one embedding request and wait until the statistics count them.

    A fresh proxy's accounting process loads each tokenizer on first use, a second or two
    during which records queue up; at a high ``--speed`` that would be minutes of demo
    time in which the rules judge windows that are missing their requests.
    """
    before = total_requests(await proxy.admin("/pulse/stats"))
    for call in (mix.chat_probe(), mix.embeddings_probe()):
        proxy.send(call)
    await proxy.drain(timeout=wait_s)
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        if total_requests(await proxy.admin("/pulse/stats")) >= before + 2:
            return
        await asyncio.sleep(0.1)


async def check_upstream_is_mock(proxy: Proxy) -> None:
    """The bundled mock signs its model list; any other upstream would bill real requests."""
    try:
        async with proxy.session.get(proxy.base + "/v1/models") as response:
            body = await response.json(content_type=None) if response.status == 200 else None
    except (TimeoutError, aiohttp.ClientError, ValueError):
        body = None
    data = body.get("data") if isinstance(body, dict) else None
    if not isinstance(data, list) or not any(
        isinstance(m, dict) and m.get("owned_by") == MOCK_OWNER for m in data
    ):
        raise DemoError(
            f"the proxy at {proxy.base} does not forward to the bundled mock upstream. "
            "The demo steers the mock with X-Mock-* headers; a real provider would ignore "
            "them and bill every request. Start the proxy with PULSE_UPSTREAM_URL=mock (the default)"
        )
