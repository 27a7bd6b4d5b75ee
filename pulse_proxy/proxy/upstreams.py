"""The configured upstreams: the primary (``upstream.url``) and its fallbacks, in order.

Each one is fixed at start-up: its name (the ``upstream`` field and label), its base
URL (split once, see :class:`~pulse_proxy.proxy.urls.UpstreamBase`), its own pool of
connections with its own timeouts, the key injected when a client sends none, the
model names it knows requests by, and its circuit breaker.  Nothing a request carries
can add to this list or name a URL: a request can only be sent to one of these.

What the request path records here (results of tries, failovers, a latency average)
are plain counters, read when ``/metrics`` or ``/pulse/upstreams`` is asked for.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import aiohttp
import orjson
from aiohttp import hdrs

from pulse_proxy.proxy.breaker import Breaker, OnChange
from pulse_proxy.proxy.retry import RetryBudget, RetryPolicy
from pulse_proxy.proxy.urls import UpstreamBase, display_url
from pulse_proxy.settings import Settings

# Results of one try, as ``llm_upstream_attempts_total{result}`` shows them.
RESULTS = (
    "success",
    "client_error",
    "rate_limited",
    "server_error",
    "timeout",
    "connect_error",
    "bad_response",
)


class UnframedRequest(aiohttp.ClientRequest):
    """aiohttp's request, minus the ``Content-Length: 0`` it adds to a body-less
    request of a method other than GET, HEAD, OPTIONS, TRACE.

    The forwarder passes ``data=None`` only for a client request that had no body
    framing at all (an SDK's DELETE, say), and ``b""`` for one that framed an empty
    body, so the upstream sees the client's framing either way.  RFC 9110 §8.6: a
    user agent SHOULD NOT send Content-Length when the request has no content and the
    method does not anticipate any.  aiohttp has no switch for this (its
    ``skip_auto_headers`` does not cover Content-Length).
    """

    def update_body_from_data(self, body: Any, *args: Any, **kwargs: Any) -> None:
        preset = hdrs.CONTENT_LENGTH in self.headers
        super().update_body_from_data(body, *args, **kwargs)
        if body is None and not preset:
            self.headers.popall(hdrs.CONTENT_LENGTH, None)


def open_upstream_session(
    *, max_connections: int, connect_timeout_s: float, read_timeout_s: float
) -> aiohttp.ClientSession:
    """A pooled client for one upstream, configured to be transparent.

    No decompression (bytes reach the client as sent), no cookie jar (one client's
    cookies must never ride on another's request), no environment proxies, and none
    of aiohttp's default headers (nor its ``Content-Length: 0``, see
    :class:`UnframedRequest`): what the client did not send, we do not add.
    """
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=max_connections, ttl_dns_cache=300),
        timeout=aiohttp.ClientTimeout(
            total=None,
            connect=connect_timeout_s,
            sock_connect=connect_timeout_s,
            sock_read=read_timeout_s,
        ),
        auto_decompress=False,
        cookie_jar=aiohttp.DummyCookieJar(),
        trust_env=False,
        skip_auto_headers=("User-Agent", "Accept", "Accept-Encoding", "Content-Type"),
        request_class=UnframedRequest,
    )


class Upstream:
    """One configured upstream and what the request path learnt about it."""

    def __init__(
        self,
        name: str,
        url: str,
        *,
        api_key: str | None,
        models: dict[str, str],
        connect_timeout_s: float,
        read_timeout_s: float,
        max_connections: int,
        breaker: Breaker,
    ) -> None:
        self.name = name
        self.url = url.rstrip("/")
        self.base = UpstreamBase(self.url)
        self.api_key = api_key
        self.models = models
        self.connect_timeout_s = connect_timeout_s
        self.read_timeout_s = read_timeout_s
        self.max_connections = max_connections
        self.breaker = breaker
        self.results = dict.fromkeys(RESULTS, 0)
        # Time to response headers of recent tries (exponential average), ms.
        self.latency_ms: float | None = None
        self.last_error: str | None = None
        self._session: aiohttp.ClientSession | None = None

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            raise RuntimeError("upstream session used outside the app's lifespan")
        return self._session

    def open(self) -> None:
        self._session = open_upstream_session(
            max_connections=self.max_connections,
            connect_timeout_s=self.connect_timeout_s,
            read_timeout_s=self.read_timeout_s,
        )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def note(self, result: str, latency_ms: float | None = None) -> None:
        """One try's result, for the attempts counter and ``/pulse/upstreams``."""
        self.results[result] += 1
        if latency_ms is not None:
            previous = self.latency_ms
            self.latency_ms = latency_ms if previous is None else previous * 0.8 + latency_ms * 0.2

    def body_for(self, body: bytes) -> bytes:
        """The body as this upstream must get it: with the requested model renamed when
        ``models`` maps it, else exactly as given (most upstreams: no parse at all)."""
        if not self.models:
            return body
        try:
            parsed = orjson.loads(body)
        except orjson.JSONDecodeError:
            return body
        if not isinstance(parsed, dict):
            return body
        model = parsed.get("model")
        if not isinstance(model, str) or model not in self.models:
            return body
        parsed["model"] = self.models[model]
        return orjson.dumps(parsed)

    def describe(self, now: float) -> dict[str, Any]:
        """This upstream's entry in ``/pulse/upstreams``."""
        breaker = self.breaker
        requests, failures = breaker.error_rate(now)
        state = breaker.shown_state(now)
        return {
            "name": self.name,
            "url": display_url(self.url),
            "state": state.name.lower(),
            "reopen_in_s": round(max(0.0, breaker.reopen_at - now), 3) if state else None,
            "window_requests": requests,
            "error_rate": round(failures / requests, 4) if requests else None,
            "latency_ms": round(self.latency_ms, 3) if self.latency_ms is not None else None,
            "attempts": dict(self.results),
            "last_error": self.last_error,
        }


class Upstreams:
    """All upstreams, the primary first, with the retry policy and budget they share."""

    def __init__(
        self,
        items: Sequence[Upstream],
        policy: RetryPolicy,
        budget: RetryBudget,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.items = tuple(items)
        self.primary = self.items[0]
        self.breakers = tuple(u.breaker for u in self.items)
        self.policy = policy
        self.budget = budget
        self.clock = clock
        # The one-upstream, one-try case: the request path then takes its old road.
        self.single = len(self.items) == 1 and policy.attempts == 1
        self.failovers: dict[tuple[str, str], int] = {}

    def __iter__(self) -> Iterator[Upstream]:
        return iter(self.items)

    def __len__(self) -> int:
        return len(self.items)

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        *,
        primary_url: str,
        mock_url: str | None = None,
        clock: Callable[[], float] = time.monotonic,
        on_change: OnChange | None = None,
    ) -> Upstreams:
        """``primary_url`` is ``upstream.url`` resolved (the bundled mock's address
        when it is ``mock``); ``mock_url`` the same for a fallback that is ``mock``."""
        upstream = settings.upstream

        def breaker(name: str) -> Breaker:
            return Breaker(name, upstream.breaker, clock=clock, on_change=on_change)

        items = [
            Upstream(
                upstream.label,
                primary_url,
                api_key=upstream.api_key,
                models={},
                connect_timeout_s=upstream.connect_timeout_s,
                read_timeout_s=upstream.read_timeout_s,
                max_connections=upstream.max_connections,
                breaker=breaker(upstream.label),
            )
        ]
        for fallback in upstream.fallbacks:
            url = fallback.url
            if url == "mock":
                if mock_url is None:
                    raise ValueError("resolve the bundled mock's URL before creating the app")
                url = mock_url
            items.append(
                Upstream(
                    fallback.name,
                    url,
                    api_key=fallback.api_key,
                    models=dict(fallback.models),
                    connect_timeout_s=fallback.connect_timeout_s or upstream.connect_timeout_s,
                    read_timeout_s=fallback.read_timeout_s or upstream.read_timeout_s,
                    max_connections=upstream.max_connections,
                    breaker=breaker(fallback.name),
                )
            )
        return cls(
            items,
            RetryPolicy(upstream.retry),
            RetryBudget(upstream.retry.budget_ratio),
            clock=clock,
        )

    def open(self) -> None:
        for upstream in self.items:
            upstream.open()

    async def close(self) -> None:
        for upstream in self.items:
            await upstream.close()

    def failed_over(self, source: str, target: str) -> None:
        key = (source, target)
        self.failovers[key] = self.failovers.get(key, 0) + 1

    def describe(self) -> list[dict[str, Any]]:
        now = self.clock()
        return [upstream.describe(now) for upstream in self.items]


__all__ = [
    "RESULTS",
    "UnframedRequest",
    "Upstream",
    "Upstreams",
    "open_upstream_session",
]
