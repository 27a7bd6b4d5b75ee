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
import orjson
from prometheus_client import CollectorRegistry
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response

from pulse_proxy import __version__, uvicorn_log
from pulse_proxy.accounting import tokens
from pulse_proxy.accounting.dispatch import Dispatcher
from pulse_proxy.accounting.process import build_accountant
from pulse_proxy.accounting.screening import Screen
from pulse_proxy.admin import AdminEndpoints, admin_app
from pulse_proxy.alerts import AlertEngine
from pulse_proxy.limits.build import build_limiter
from pulse_proxy.limits.observe import (
    BACKEND_RULE,
    BackendAlert,
    CorrectionSink,
    LimitsCollector,
    switch_limits,
)
from pulse_proxy.ops.bundled_mock import BundledMock
from pulse_proxy.proxy.breaker import BreakerState
from pulse_proxy.proxy.errors import upstream_failure
from pulse_proxy.proxy.forward import Forwarder, new_identity
from pulse_proxy.proxy.types import Receive, Scope, Send
from pulse_proxy.proxy.upstreams import Upstream, Upstreams
from pulse_proxy.proxy.urls import display_url
from pulse_proxy.readiness import Readiness
from pulse_proxy.recent import RecentRequests, requests_endpoint
from pulse_proxy.settings import Settings, redacted
from pulse_proxy.settings.alerts import AlertRule
from pulse_proxy.sinks import Sink
from pulse_proxy.sinks.log import LineWriter, LogSink, make_logger
from pulse_proxy.sinks.otel import OtelSink
from pulse_proxy.sinks.prometheus import PrometheusSink
from pulse_proxy.sinks.statsd import StatsdSink
from pulse_proxy.sinks.upstream_metrics import UpstreamCollector
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
        # This proxy's name in Via headers: its own requests (the probe's too) carry
        # it, so one that loops back here is answered 508 instead of forwarded again.
        self.identity = new_identity()
        self.log = logger
        self._writer = writer
        self._startup_fields = startup_fields
        self._clock = clock
        self.readiness = Readiness(self._announce_readiness)
        self.upstreams = Upstreams.from_settings(
            settings,
            primary_url=self.upstream_url,
            mock_url=bundled_mock.url if bundled_mock is not None else None,
            clock=clock,
            on_change=self._breaker_changed,
        )
        self.upstream = self.upstreams.primary.base
        # The last breaker transition per upstream: (event name, fields).
        self.breaker_changes: dict[str, tuple[str, dict[str, Any]]] = {}
        self._background: set[asyncio.Task[None]] = set()

        self.stats = RollingStats(clock=clock, max_models=settings.metrics.max_models)
        self.breakdown = Breakdown(
            clock=clock,
            max_values=settings.metrics.max_label_values,
            max_tag_keys=settings.metrics.max_tag_keys,
            max_rows=settings.metrics.max_breakdown_rows,
        )
        self.limiter = build_limiter(settings, clock=clock)
        self.backend_alert: BackendAlert | None = None
        if self.limiter is not None and self.limiter.store is not None:
            self.backend_alert = BackendAlert(self.limiter, clock=clock)
        self.alerts = AlertEngine(
            settings.alerts,
            self.stats,
            clock=clock,
            actions=self._alert_actions,
            builtin=[BACKEND_RULE] if self.backend_alert is not None else [],
        )
        self.registry = CollectorRegistry()
        self.registry.register(UpstreamCollector(self.upstreams))
        self.prometheus = PrometheusSink(
            self.registry,
            max_label_values=settings.metrics.max_label_values,
            error_rate=self.error_rate,
            alert_firing=self.alerts_firing,
            dropped=self.dropped_counts,
            degraded=self.degraded_counts,
        )
        self.recent = RecentRequests.from_settings(settings)
        sinks: list[Sink] = [LogSink(logger, writer), self.recent]
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
        if self.limiter is not None:
            sinks.append(CorrectionSink(self.limiter))
            self.registry.register(LimitsCollector(self.limiter))

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
            self.upstreams,
            self.dispatcher.submit,
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
                data=[
                    ("/pulse/requests", requests_endpoint(self.recent)),
                    ("/pulse/upstreams", self.pulse_upstreams),
                ],
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
        return self.alerts.firing()

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

    def _breaker_changed(self, name: str, fields: dict[str, Any]) -> None:
        """A breaker opened or closed: one event line, and kept for alert events."""
        self.breaker_changes[fields["upstream"]] = (name, fields)
        level = self.log.warning if name == "upstream.breaker_opened" else self.log.info
        level(name, **fields)

    # -- lifespan -------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def _lifespan(self, _: Starlette) -> AsyncIterator[None]:
        if self.settings.accounting.mode == "inline" or self.screen:
            # Counting happens in this process: load both vocabularies now (~1 s, in a
            # thread), since loading them on first use would stall the event loop.
            await asyncio.gather(
                *(asyncio.to_thread(tokens.get_encoding, n) for n in tokens.ENCODING_NAMES)
            )
        self.upstreams.open()
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
            await self.upstreams.close()
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
            self.dispatcher.publish_alert(transition)
        if self.backend_alert is not None:
            backend = self.backend_alert.evaluate()
            if backend is not None:
                self.alerts.record(backend)
                self.dispatcher.publish_alert(backend)

    def _alert_actions(self, rule: AlertRule, fired: bool) -> list[dict[str, Any]]:
        """What the proxy switched as ``rule`` fired or resolved: for an error-rate
        rule, the breakers and where traffic went; then the limits that wait on it."""
        actions = self.failover_actions() if fired and rule.metric == "error_rate" else []
        if self.limiter is not None:
            actions += switch_limits(self.limiter, rule.name, fired)
        return actions

    def failover_actions(self) -> list[dict[str, Any]]:
        """For an error-rate alert: which breakers are open (why, with the figures that
        opened them) and which upstream traffic goes to now."""
        now = self.upstreams.clock()
        actions: list[dict[str, Any]] = []
        traffic_to: str | None = None
        for upstream in self.upstreams:
            state = upstream.breaker.shown_state(now)
            if state == BreakerState.CLOSED:
                traffic_to = traffic_to or upstream.name
                continue
            _, fields = self.breaker_changes.get(upstream.name, ("", {"upstream": upstream.name}))
            actions.append({"action": "breaker_opened", **fields, "state": state.name.lower()})
        actions.append(
            {"action": "traffic_to", "upstream": traffic_to or self.upstreams.primary.name}
        )
        return actions

    async def _summary_loop(self) -> None:
        interval = self.settings.server.summary_interval_s
        while True:
            await asyncio.sleep(interval)
            window = await asyncio.to_thread(self.stats.window, 60)
            self.log.info("llm.metrics.summary", window="1m", **window)

    async def probe(self) -> None:
        """Probe every upstream; ready while any one is usable, and the reason names
        those that are not."""
        verdicts = await asyncio.gather(*(self._probe_one(u) for u in self.upstreams))
        if len(verdicts) == 1:
            self.readiness.set(*verdicts[0])
            return
        down = [
            f"{upstream.name}: {reason}"
            for upstream, (ok, reason) in zip(self.upstreams, verdicts, strict=True)
            if not ok
        ]
        ready = len(down) < len(verdicts)
        if not down:
            self.readiness.set(True, "every upstream answered")
        else:
            prefix = "usable, but not every upstream" if ready else "no upstream usable"
            self.readiness.set(ready, f"{prefix}: " + "; ".join(down))

    async def _probe_one(self, upstream: Upstream) -> tuple[bool, str]:
        """Ask one upstream for its model list; any HTTP answer below 500 means reachable.

        The probe carries our Via entry like any forwarded request: if the upstream
        leads back to this proxy, the probe is answered 508 (loop detected) on its
        first return instead of starting a chain of requests every interval."""
        headers = {"Via": f"1.1 {self.identity}"}
        if upstream.api_key:
            headers["Authorization"] = f"Bearer {upstream.api_key}"
        try:
            async with upstream.session.get(
                upstream.base.url_for("/models"),
                headers=headers,
                timeout=aiohttp.ClientTimeout(
                    total=min(5.0, self.settings.upstream.probe_interval_s)
                ),
            ) as response:
                await response.read()
                if response.status == 508:
                    return (
                        False,
                        "upstream answered 508: request loop, the upstream URL leads back to this proxy",
                    )
                return response.status < 500, f"upstream answered {response.status}"
        except (TimeoutError, aiohttp.ClientError) as exc:
            return False, f"upstream unreachable: {upstream.base.address} ({upstream_failure(exc)})"

    async def pulse_upstreams(self, _: Request) -> Response:
        """Each upstream in order: breaker state, recent error rate, latency, tries."""
        body = {"upstreams": self.upstreams.describe()}
        return Response(orjson.dumps(body), media_type="application/json")


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
