"""The application: one request flows receive → forward → relay → account → sinks.

``create_app`` wires the parts once; the lifespan owns what must be opened and closed
(the upstream connection pool, the dispatcher task, the readiness probe) so that tests
can build as many independent apps as they like, each with its own sinks.

``/v1/*`` goes straight to the :class:`~pulse_proxy.proxy.forward.Forwarder` as plain ASGI
(no framework in the hot path); everything else, admin and health, is the small
Starlette app of :mod:`pulse_proxy.admin`.  Routing looks only at the request path,
never the ``Host`` header.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import secrets
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import IO, Any

import aiohttp
from aiohttp import hdrs
from prometheus_client import CollectorRegistry
from starlette.applications import Starlette

from pulse_proxy import __version__, uvicorn_log
from pulse_proxy.accounting import tokens
from pulse_proxy.accounting.dispatch import Dispatcher
from pulse_proxy.accounting.process import build_accountant
from pulse_proxy.accounting.screening import Screen
from pulse_proxy.admin import AdminEndpoints, admin_app
from pulse_proxy.alerts import AlertEngine
from pulse_proxy.limits.build import build_limiter
from pulse_proxy.limits.observe import (
    BACKEND_ALERT,
    BackendAlert,
    CorrectionSink,
    LimitsCollector,
    act,
)
from pulse_proxy.ops.bundled_mock import BundledMock
from pulse_proxy.proxy.errors import upstream_failure
from pulse_proxy.proxy.forward import Forwarder, new_identity
from pulse_proxy.proxy.types import Receive, Scope, Send
from pulse_proxy.proxy.urls import UpstreamBase, display_url
from pulse_proxy.readiness import Readiness
from pulse_proxy.settings import Settings, redacted
from pulse_proxy.sinks import Sink
from pulse_proxy.sinks.log import LineWriter, LogSink, make_logger
from pulse_proxy.sinks.otel import OtelSink
from pulse_proxy.sinks.prometheus import PrometheusSink
from pulse_proxy.sinks.statsd import StatsdSink
from pulse_proxy.sinks.webhook import WebhookSink
from pulse_proxy.stats import RollingStats
from pulse_proxy.stats.breakdown import Breakdown
from pulse_proxy.stats.tally import Tally

# How uvicorn must serve the proxy to stay invisible: the upstream's own ``Server`` and
# ``Date`` headers pass through, so uvicorn must not add a second copy of each, and
# X-Forwarded-* from the client must not rewrite the ASGI scope.
UVICORN_OPTIONS: dict[str, Any] = {
    "loop": "uvloop",
    "http": "httptools",
    "lifespan": "on",
    "access_log": False,
    "server_header": False,
    "date_header": False,
    "proxy_headers": False,
}


def uvicorn_options(settings: Settings) -> dict[str, Any]:
    """:data:`UVICORN_OPTIONS` with uvicorn's httptools protocol replaced by one that
    enforces ``settings.server``'s limits on slow clients and open connections."""
    from pulse_proxy.proxy.protocol import guarded_protocol

    return {**UVICORN_OPTIONS, "http": guarded_protocol(settings.server)}


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


def open_upstream_session(settings: Settings) -> aiohttp.ClientSession:
    """One pooled client for all upstream traffic, configured to be transparent.

    No decompression (bytes reach the client as sent), no cookie jar (one client's
    cookies must never ride on another's request), no environment proxies, and none
    of aiohttp's default headers (nor its ``Content-Length: 0``, see
    :class:`UnframedRequest`): what the client did not send, we do not add.
    """
    upstream = settings.upstream
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=upstream.max_connections, ttl_dns_cache=300),
        timeout=aiohttp.ClientTimeout(
            total=None,
            connect=upstream.connect_timeout_s,
            sock_connect=upstream.connect_timeout_s,
            sock_read=upstream.read_timeout_s,
        ),
        auto_decompress=False,
        cookie_jar=aiohttp.DummyCookieJar(),
        trust_env=False,
        skip_auto_headers=("User-Agent", "Accept", "Accept-Encoding", "Content-Type"),
        request_class=UnframedRequest,
    )


def freeze_startup_heap() -> None:
    """Move every object alive now into the garbage collector's permanent generation.

    Called once start-up is done: the settings, the price table, the token
    vocabularies, the modules and the app's own parts then live as long as the
    process, yet every full collection of the cyclic collector would traverse all of
    them again, and under load those traversals are pauses of the event loop, i.e. of
    every stream being relayed.  Frozen objects are never traversed (nor collected:
    fine for what lives until exit).  ``gc.freeze`` is process-wide, so this is a
    decision for the process, made where the process finishes starting; a process
    that builds more apps (the tests do) only freezes what was added since.
    """
    gc.freeze()


class PulseApp:
    """The ASGI callable served by uvicorn.

    One request's flow, in order: :class:`Forwarder` (receive, forward, relay) →
    :class:`Dispatcher` (off the path: :class:`Accountant` for tokens, cost, risk, and
    the batch's :class:`Tally`) → :meth:`count` into :class:`RollingStats`,
    :class:`Breakdown` and Prometheus → every sink (log, StatsD, OpenTelemetry).  The
    alert loop reads the statistics every few seconds and publishes transitions to the
    same sinks.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        upstream_url: str,
        extra_sinks: Sequence[Sink],
        logger: Any,
        writer: LineWriter | None,
        startup_fields: dict[str, Any],
        clock: Callable[[], float],
        bundled_mock: BundledMock | None = None,
    ) -> None:
        self.settings = settings
        self.bundled_mock = bundled_mock
        self.upstream_url = upstream_url.rstrip("/")
        self.upstream = UpstreamBase(self.upstream_url)
        # This proxy's name in Via headers: its own requests (the probe's too) carry
        # it, so one that loops back here is answered 508 instead of forwarded again.
        self.identity = new_identity()
        self.log = logger
        self._writer = writer
        self._startup_fields = startup_fields
        self._clock = clock
        self.readiness = Readiness(self._announce_readiness)
        self._session: aiohttp.ClientSession | None = None
        self._background: set[asyncio.Task[None]] = set()

        self.stats = RollingStats(clock=clock, max_models=settings.metrics.max_models)
        self.breakdown = Breakdown(
            clock=clock,
            max_values=settings.metrics.max_label_values,
            max_tag_keys=settings.metrics.max_tag_keys,
            max_rows=settings.metrics.max_breakdown_rows,
        )
        self.alerts = AlertEngine(settings.alerts, self.stats, clock=clock)
        self.backend_alert: BackendAlert | None = None
        self.registry = CollectorRegistry()
        self.prometheus = PrometheusSink(
            self.registry,
            max_label_values=settings.metrics.max_label_values,
            error_rate=self.error_rate,
            alert_firing=self.alerts_firing,
            dropped=self.dropped_counts,
            degraded=self.degraded_counts,
        )
        sinks: list[Sink] = [LogSink(logger, writer)]
        self.statsd: StatsdSink | None = None
        if settings.statsd.enabled:
            self.statsd = StatsdSink.from_settings(settings.statsd, error_rate=self.error_rate)
            sinks.append(self.statsd)
        self.otel: OtelSink | None = None
        if settings.otel.enabled:
            self.otel = OtelSink.from_settings(
                settings.otel,
                upstream_url=upstream_url,
                max_label_values=settings.metrics.max_label_values,
            )
            sinks.append(self.otel)
        self.webhooks: WebhookSink | None = None
        if settings.webhooks.targets:
            self.webhooks = WebhookSink.from_settings(
                settings.webhooks,
                rule_webhooks={rule.name: rule.webhooks for rule in settings.alerts.rules},
                logger=logger,
            )
            sinks.append(self.webhooks)
        sinks.extend(extra_sinks)
        self.limiter = build_limiter(settings, clock=clock)
        if self.limiter is not None:
            sinks.append(CorrectionSink(self.limiter))
            self.registry.register(LimitsCollector(self.limiter))
            if self.limiter.store is not None:
                self.backend_alert = BackendAlert(self.limiter, clock=clock)

        self.accountant = build_accountant(settings)
        self.dispatcher = Dispatcher(
            self.accountant,
            sinks,
            logger=logger,
            settings=settings,
            process=settings.accounting.mode == "process",
            figures=[self.count],
        )
        self.screen = Screen(settings.risk)
        self.forwarder = Forwarder(
            settings,
            self._get_session,
            self.dispatcher.submit,
            self.upstream_url,
            self.screen,
            clock=clock,
            identity=self.identity,
            limits=self.limiter,
        )
        self.admin = admin_app(
            AdminEndpoints(
                admin_token=settings.server.admin_token,
                readiness=self.readiness,
                registry=self.registry,
                stats=self.stats,
                breakdown=self.breakdown,
                alerts=self.alerts,
                limits=self.limiter,
            ),
            lifespan=self._lifespan,
        )

    def count(self, tally: Tally) -> None:
        """A batch's figures, summed where it was accounted, into those served here."""
        self.stats.merge(tally.stats)
        self.breakdown.merge(tally.breakdown)
        self.prometheus.merge(tally.prometheus)

    def alerts_firing(self) -> dict[str, bool]:
        """Every rule's state for ``llm_alert_firing``, the built-in limits_backend_down too."""
        firing = self.alerts.firing()
        if self.backend_alert is not None:
            firing[BACKEND_ALERT] = self.backend_alert.firing
        return firing

    def error_rate(self) -> float | None:
        """The 5-minute error rate, read at scrape / flush time."""
        return self.stats.measure("error_rate", "rate", 300).value

    def dropped_counts(self) -> dict[str, int]:
        counts = {"dispatcher": self.dispatcher.dropped}
        if self.webhooks is not None:
            counts["webhook"] = self.webhooks.dropped
        if self.statsd is not None:
            counts["statsd"] = self.statsd.dropped
        if self.otel is not None:
            counts["otel"] = self.otel.dropped
        return counts

    def degraded_counts(self) -> dict[str, int]:
        """Requests the accounting process's backlog or crashes left without usage."""
        worker = self.dispatcher.worker
        return dict(worker.degraded) if worker is not None else {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            path: str = scope["path"]
            if path.startswith("/v1/") or path == "/v1":
                await self.forwarder(scope, receive, send)
                return
        await self.admin(scope, receive, send)

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None:
            raise RuntimeError("upstream session used outside the app's lifespan")
        return self._session

    # -- lifespan -------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def _lifespan(self, _: Starlette) -> AsyncIterator[None]:
        if self.settings.accounting.mode == "inline" or self.screen:
            # Counting happens in this process: load both vocabularies now (~1 s, in a
            # thread), since loading them on first use would stall the event loop.
            await asyncio.gather(
                *(asyncio.to_thread(tokens.get_encoding, n) for n in tokens.ENCODING_NAMES)
            )
        self._session = open_upstream_session(self.settings)
        await self.dispatcher.start()
        for sink in (self.statsd, self.webhooks, self.otel):
            if sink is not None:
                sink.start()
        self._spawn(self._probe_loop(), "pulse-readiness-probe")
        if self.bundled_mock is not None:
            self._spawn(
                self.bundled_mock.supervise(self.log, down=self.readiness.hold, up=self._mock_back),
                "pulse-mock-supervisor",
            )
        self._spawn(self._alert_loop(), "pulse-alert-engine")
        if self.settings.server.summary_interval_s:
            self._spawn(self._summary_loop(), "pulse-summary")
        self.log.info("pulse.started", version=__version__, **self._startup_fields)
        self.log.info("pulse.config", config=redacted(self.settings))
        freeze_startup_heap()
        try:
            yield
        finally:
            for task in list(self._background):
                task.cancel()
            await asyncio.gather(*self._background, return_exceptions=True)
            await self.dispatcher.stop(timeout=self.settings.server.shutdown_grace_s or 30.0)
            for closing in self.dispatcher.sinks:
                with contextlib.suppress(Exception):
                    await closing.aclose()
            await self._session.close()
            self._session = None
            if self.limiter is not None and self.limiter.store is not None:
                await self.limiter.store.aclose()
            self.log.info(
                "pulse.stopped",
                processed=self.dispatcher.processed,
                dropped=self.dispatcher.dropped,
            )
            if self._writer is not None:
                self._writer.close()

    def _spawn(self, coro: Awaitable[None], name: str) -> None:
        # The loop holds tasks weakly: keep a strong reference until they finish.
        task = asyncio.ensure_future(coro)
        task.set_name(name)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _probe_loop(self) -> None:
        interval = self.settings.upstream.probe_interval_s
        while True:
            await self.probe()
            await asyncio.sleep(interval)

    def _announce_readiness(self, ready: bool, reason: str) -> None:
        """``/readyz`` changed its answer: say so once, with the reason it now gives."""
        level = self.log.info if ready else self.log.warning
        level("pulse.readiness", ready=ready, reason=reason)

    async def _mock_back(self) -> None:
        """The bundled mock listens again: probe it now rather than at the next tick."""
        self.readiness.release()
        await self.probe()

    async def _alert_loop(self) -> None:
        interval = self.settings.alerts.evaluation_interval_s
        while True:
            await asyncio.sleep(interval)
            self.evaluate_alerts()

    def evaluate_alerts(self) -> None:
        """One evaluation of every rule; transitions go to every sink (log, webhooks…)."""
        try:
            transitions = self.alerts.evaluate()
        except Exception as exc:  # noqa: BLE001  (a rule bug must not stop the loop)
            self.log.error("pulse.alerts_failed", error_type=type(exc).__name__)
            return
        for transition in transitions:
            if self.limiter is not None:
                transition = act(self.limiter, transition)
            self.dispatcher.publish_alert(transition)
        if self.backend_alert is not None:
            backend = self.backend_alert.evaluate()
            if backend is not None:
                self.dispatcher.publish_alert(backend)

    async def _summary_loop(self) -> None:
        interval = self.settings.server.summary_interval_s
        while True:
            await asyncio.sleep(interval)
            window = await asyncio.to_thread(self.stats.window, 60)
            self.log.info("llm.metrics.summary", window="1m", **window)

    async def probe(self) -> None:
        """Ask the upstream for its model list; any HTTP answer below 500 means reachable.

        The probe carries our Via entry like any forwarded request: if the upstream
        leads back to this proxy, the probe is answered 508 (loop detected) on its
        first return instead of starting a chain of requests every interval."""
        headers = {"Via": f"1.1 {self.identity}"}
        if self.settings.upstream.api_key:
            headers["Authorization"] = f"Bearer {self.settings.upstream.api_key}"
        try:
            async with self._get_session().get(
                self.upstream.url_for("/models"),
                headers=headers,
                timeout=aiohttp.ClientTimeout(
                    total=min(5.0, self.settings.upstream.probe_interval_s)
                ),
            ) as response:
                await response.read()
                if response.status == 508:
                    self.readiness.set(
                        False,
                        "upstream answered 508: request loop, the upstream URL leads back to this proxy",
                    )
                elif response.status < 500:
                    self.readiness.set(True, f"upstream answered {response.status}")
                else:
                    self.readiness.set(False, f"upstream answered {response.status}")
        except (TimeoutError, aiohttp.ClientError) as exc:
            self.readiness.set(
                False, f"upstream unreachable: {self.upstream.address} ({upstream_failure(exc)})"
            )


def create_app(
    settings: Settings,
    *,
    upstream_url: str | None = None,
    sinks: Sequence[Sink] = (),
    log_stream: IO[bytes] | None = None,
    startup_fields: dict[str, Any] | None = None,
    clock: Callable[[], float] = time.time,
    bundled_mock: BundledMock | None = None,
) -> PulseApp:
    """Build the app.  ``sinks`` are added to the built-in ones (tests pass a
    :class:`~pulse_proxy.sinks.ListSink`); ``upstream_url`` is the resolved upstream
    base URL (the CLI passes the bundled mock's address when ``url`` is ``mock``);
    ``clock`` drives the statistics and alert engine (tests move it forward);
    ``bundled_mock``, when the CLI started one, is watched and restarted if it dies."""
    url = upstream_url or settings.upstream.url
    if not settings.accounting.key_hash_salt:
        # One salt per run, shared by the accounting process and any in-process fallback.
        salt = secrets.token_hex(16)
        settings = settings.model_copy(
            update={"accounting": settings.accounting.model_copy(update={"key_hash_salt": salt})}
        )
    if url == "mock":
        raise ValueError("resolve the bundled mock's URL before creating the app")
    # The app is about to exist: uvicorn's error log need not show its aborted streams.
    uvicorn_log.install()
    logger, writer = make_logger(log_stream or sys.stdout.buffer, settings.server.log_format)
    fields = {
        "upstream": settings.upstream.label,
        "upstream_url": display_url(url),
        "host": settings.server.host,
        "port": settings.server.port,
    }
    fields.update(startup_fields or {})
    return PulseApp(
        settings,
        upstream_url=url,
        extra_sinks=sinks,
        logger=logger,
        writer=writer,
        startup_fields=fields,
        clock=clock,
        bundled_mock=bundled_mock,
    )
