"""Everything the proxy answers besides ``/v1/*``: health, readiness, the Prometheus
scrape, the ``/pulse/`` data endpoints and the dashboard's bundled files.

None of it is on the request path; it only reads what the rest of the app keeps (the
rolling statistics, the breakdown, the alert engine, the Prometheus registry, the
readiness probe's answer), so it takes those and nothing else.  The data endpoints
demand the admin token when one is configured; health, readiness and the dashboard's
files do not, since they hold no data.
"""

from __future__ import annotations

import asyncio
import functools
import hmac
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager
from importlib import resources

import orjson
from prometheus_client import CollectorRegistry
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from pulse_proxy.alerts import AlertEngine
from pulse_proxy.limits.limiter import Limiter
from pulse_proxy.proxy.errors import openai_error_body
from pulse_proxy.readiness import Readiness
from pulse_proxy.sinks.prometheus import exposition
from pulse_proxy.stats import RollingStats, window_label
from pulse_proxy.stats.breakdown import Breakdown

Endpoint = Callable[[Request], Awaitable[Response]]
Lifespan = Callable[[Starlette], AbstractAsyncContextManager[None]]


class AdminEndpoints:
    """The admin handlers, over the figures and state they read."""

    def __init__(
        self,
        *,
        admin_token: str | None,
        readiness: Readiness,
        registry: CollectorRegistry,
        stats: RollingStats,
        breakdown: Breakdown,
        alerts: AlertEngine,
        limits: Limiter | None = None,
        data: Sequence[tuple[str, Endpoint]] = (),
    ) -> None:
        """``data``: further data endpoints by path (the recent requests, the upstreams,
        the limits), served behind the admin token like ``/pulse/stats``."""
        self.admin_token = admin_token
        self.data = list(data)
        self.readiness = readiness
        self.registry = registry
        self.stats = stats
        self.breakdown = breakdown
        self.alerts = alerts
        self.limits = limits

    def routes(self) -> list[Route]:
        """The fixed list of admin paths; the data ones behind the admin token."""
        token = self.admin_token
        return [
            Route("/healthz", self.healthz),
            Route("/readyz", self.readyz),
            Route("/metrics", guarded(self.metrics, token)),
            Route("/pulse/stats", guarded(self.pulse_stats, token)),
            Route("/pulse/alerts", guarded(self.pulse_alerts, token)),
            Route("/pulse/series", guarded(self.pulse_series, token)),
            Route("/pulse/limits", guarded(self.pulse_limits, token)),
            *(Route(path, guarded(endpoint, token)) for path, endpoint in self.data),
            # The page and its assets hold no data, so they load without the admin
            # token; the page then asks for it when the data endpoints answer 401.
            Route("/pulse", dashboard_redirect),
            Route("/pulse/", dashboard_page),
            Route("/pulse/assets/{name}", dashboard_asset),
        ]

    async def healthz(self, _: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def readyz(self, _: Request) -> Response:
        if self.readiness.ready:
            return JSONResponse({"status": "ready", "reason": self.readiness.reason})
        return JSONResponse(
            {"status": "not_ready", "reason": self.readiness.reason}, status_code=503
        )

    async def metrics(self, _: Request) -> Response:
        # With every label at its bound the exposition is megabytes and takes a second
        # of pure Python: in a thread the loop still gets the GIL every few ms, where
        # on the loop it would relay nothing until the scrape was written.  The series
        # are read as snapshots (histogram counts are swapped whole on merge), so a
        # scrape racing a merge is consistent per series.
        body, content_type = await asyncio.to_thread(exposition, self.registry)
        return Response(body, media_type=content_type)

    async def pulse_stats(self, _: Request) -> Response:
        # Merging sketches for every window takes tens of ms: keep it off the loop.  The
        # thread still holds the GIL while it works, so what keeps the loop responsive
        # is that the breakdown is bounded (metrics.max_tag_keys, max_breakdown_rows).
        return Response(await asyncio.to_thread(self._render_stats), media_type="application/json")

    def _render_stats(self) -> bytes:
        body = self.stats.to_json()
        body["breakdown"] = self.breakdown.to_json()
        return orjson.dumps(body)

    async def pulse_alerts(self, _: Request) -> Response:
        return Response(orjson.dumps(self.alerts.state()), media_type="application/json")

    async def pulse_limits(self, _: Request) -> Response:
        """Each limit rule, its state, and its top consumers against the limit."""
        if self.limits is None:
            body: dict[str, object] = {"backend": None, "rules": []}
        else:
            # Tables hold up to limits.max_keys keys each: sorted in a thread.
            body = await asyncio.to_thread(self.limits.snapshot)
        return Response(orjson.dumps(body), media_type="application/json")

    async def pulse_series(self, request: Request) -> Response:
        """The dashboard's charts: ``?window=1m|5m|1h`` and optionally ``&model=NAME``."""
        window = request.query_params.get("window", "5m")
        window_s = {window_label(w): w for w in self.stats.windows}.get(window)
        if window_s is None:
            choices = ", ".join(window_label(w) for w in self.stats.windows)
            message = f"window must be one of {choices}"
            return Response(
                openai_error_body(message, "invalid_request", status=400, param="window"),
                status_code=400,
                media_type="application/json",
            )
        model = request.query_params.get("model") or None
        body = await asyncio.to_thread(self.stats.chart, window_s, model)
        return Response(orjson.dumps(body), media_type="application/json")


def admin_app(endpoints: AdminEndpoints, *, lifespan: Lifespan) -> Starlette:
    """The small Starlette app that serves ``endpoints`` (and runs the proxy's
    ``lifespan``, since uvicorn's lifespan messages reach the app through it)."""
    app = Starlette(
        routes=endpoints.routes(),
        lifespan=lifespan,
        exception_handlers={404: not_found},
    )
    # Starlette would answer /metrics/ with a redirect whose Location it builds from
    # the client's Host header, i.e. to wherever the client says; the admin paths
    # are a fixed list, so a path not on it is simply not found.
    app.router.redirect_slashes = False
    return app


def guarded(endpoint: Endpoint, token: str | None) -> Endpoint:
    """Demand ``Authorization: Bearer <token>`` when a token is configured."""

    async def check(request: Request) -> Response:
        if token and not admin_token_matches(request.headers.get("authorization", ""), token):
            return Response(
                openai_error_body("A valid admin token is required.", "unauthorized", status=401),
                status_code=401,
                media_type="application/json",
                headers={"WWW-Authenticate": "Bearer"},
            )
        return await endpoint(request)

    return check


def admin_token_matches(authorization: str, token: str) -> bool:
    """``Bearer <token>`` with the scheme in any case (RFC 9110 §11.1: schemes are
    case-insensitive) and the token compared in constant time."""
    scheme, _, credentials = authorization.strip().partition(" ")
    # Header text is the request's bytes read as latin-1: back to those bytes.
    supplied = credentials.strip(" ").encode("latin-1")
    # Compare even when the scheme is wrong, so the time taken says nothing either way.
    same = hmac.compare_digest(supplied, token.encode())
    return same and scheme.lower() == "bearer"


async def not_found(_: Request, __: Exception) -> Response:
    """Every unknown admin path, in OpenAI's error shape."""
    return _not_found_response()


def _not_found_response() -> Response:
    return Response(
        openai_error_body("Not found.", "not_found", status=404),
        status_code=404,
        media_type="application/json",
    )


# -- the dashboard's files ------------------------------------------------------------

# The dashboard's files, each with its type; nothing else under /pulse/assets/ exists.
_DASHBOARD_TYPES = {
    "index.html": "text/html; charset=utf-8",
    "dashboard.js": "text/javascript; charset=utf-8",
    "dashboard.css": "text/css; charset=utf-8",
    "favicon.svg": "image/svg+xml",
}
# Only this origin's own files run or load: the browser itself enforces that the page
# uses nothing from a CDN and that no injected inline script could execute.
_DASHBOARD_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)


async def dashboard_redirect(_: Request) -> Response:
    # A relative Location: the redirect never echoes the client's Host header.
    return RedirectResponse("/pulse/", status_code=308)


async def dashboard_page(_: Request) -> Response:
    return dashboard_file("index.html")


async def dashboard_asset(request: Request) -> Response:
    return dashboard_file(request.path_params["name"])


@functools.cache
def _dashboard_bytes(name: str) -> bytes:
    return (resources.files("pulse_proxy") / "dashboard" / name).read_bytes()


def dashboard_file(name: str) -> Response:
    """One of the dashboard's bundled files, served with a strict CSP."""
    media_type = _DASHBOARD_TYPES.get(name)
    if media_type is None:
        return _not_found_response()
    return Response(
        _dashboard_bytes(name),
        media_type=media_type,
        headers={
            "Content-Security-Policy": _DASHBOARD_CSP,
            "Cache-Control": "no-cache",
            "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "no-referrer",
        },
    )
