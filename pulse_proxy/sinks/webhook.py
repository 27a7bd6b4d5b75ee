"""Alert webhooks (generic JSON and Slack-compatible), delivered off the request path.

``on_alert`` only renders the payload and puts it on the target's bounded queue: it
never awaits and never touches the network, so a slow or dead receiver cannot slow
requests or the alert engine.  Each target has its own queue and worker task, so one
dead receiver, busy retrying, does not hold back the others.  A full queue drops the
newest alert and counts it (``dropped``).

A worker POSTs with one shared aiohttp session, ``timeout_s`` per attempt, and retries
connection errors, timeouts, 5xx and 429 (honouring ``Retry-After`` up to
``max_backoff_s``) with exponential backoff; other 4xx are final.  After ``retries``
retries the alert counts as ``failed``.  Redirects are not followed: a webhook URL
names its receiver, and nothing should be re-sent elsewhere.

Routing: a rule whose ``webhooks`` list names targets goes to those targets only; a
rule naming none goes to every target.  Either way a target's own ``alerts`` filter
and ``min_severity`` apply.

Payloads carry the alert event's fields only: rule, numbers, window, message and the
rule's configured labels.  No API key, no prompt text.  Webhook URLs can themselves
be credentials (a Slack incoming-webhook URL is), so they are never logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson

from pulse_proxy.alerts import format_duration, format_value
from pulse_proxy.records import SCHEMA, AlertEvent, Batch, Exchange
from pulse_proxy.settings.sinks import WebhookSettings, WebhookTarget, unknown_webhooks
from pulse_proxy.sinks import Rendered
from pulse_proxy.stats import window_label

SEVERITY_RANK = {"info": 0, "warning": 1, "critical": 2}
_SLACK_ICON = {
    "critical": ":rotating_light:",
    "warning": ":warning:",
    "info": ":information_source:",
}


def accepts(target: WebhookTarget, alert: AlertEvent) -> bool:
    """The target's own filters (rule names, severity, resolved events)."""
    if target.alerts is not None and alert.alert not in target.alerts:
        return False
    if alert.event == "alert.resolved" and not target.send_resolved:
        return False
    return SEVERITY_RANK.get(alert.severity, 1) >= SEVERITY_RANK[target.min_severity]


# -- payloads ------------------------------------------------------------------------


def json_payload(alert: AlertEvent) -> dict[str, Any]:
    """The generic body: the alert event as the JSON log has it."""
    return {"event": alert.event, "schema": SCHEMA, **alert.to_event()}


def _slack_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def slack_payload(alert: AlertEvent) -> dict[str, Any]:
    """A Slack incoming-webhook body: ``text`` for notifications, ``blocks`` for the card."""
    fired = alert.event == "alert.fired"
    icon = _SLACK_ICON.get(alert.severity, ":warning:") if fired else ":white_check_mark:"
    state = "fired" if fired else "resolved"
    value = format_value(alert.value, alert.metric, alert.stat)
    threshold = format_value(alert.threshold, alert.metric, alert.stat)
    window = window_label(alert.window_s)
    text = (
        f"{icon} [{alert.severity.upper()}] {alert.alert} {state}: {alert.stat} {alert.metric} "
        f"over {window} is {value} (threshold {threshold})"
    )
    fields = [
        ("Rule", alert.alert),
        ("Severity", alert.severity),
        ("Value", f"{value} ({alert.stat} {alert.metric})"),
        ("Threshold", threshold),
        ("Window", window),
        ("Fired at", alert.fired_at),
    ]
    if not fired:
        fields.append(("Resolved at", alert.resolved_at or "n/a"))
        fields.append(("Duration", format_duration(alert.duration_s or 0)))
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": f"{alert.alert} {state}"[:150]}},
        {
            "type": "section",
            "text": {"type": "mrkdwn", "text": _slack_escape(alert.message)[:3000]},
        },
        {
            "type": "section",
            "fields": [
                {"type": "mrkdwn", "text": f"*{k}*\n{_slack_escape(str(v))}"} for k, v in fields
            ],
        },
    ]
    if alert.labels:
        labels = ", ".join(f"{k}={v}" for k, v in sorted(alert.labels.items()))
        blocks.append(
            {
                "type": "context",
                "elements": [{"type": "mrkdwn", "text": _slack_escape(labels)[:3000]}],
            }
        )
    if alert.actions:
        blocks.append(
            {
                "type": "context",
                "elements": [
                    {"type": "mrkdwn", "text": _slack_escape(_actions_text(alert.actions))[:3000]}
                ],
            }
        )
    return {"text": _slack_escape(text), "blocks": blocks}


def _actions_text(actions: list[dict[str, Any]]) -> str:
    """``breaker opened: primary (consecutive_failures); traffic to: fallback; limit on: cap``."""
    parts = []
    for action in actions:
        kind = str(action.get("action", "")).replace("_", " ")
        detail = str(action.get("upstream") or action.get("limit") or "")
        if action.get("reason"):
            detail += f" ({action['reason']})"
        parts.append(f"{kind}: {detail}")
    return "; ".join(parts)


# -- delivery ------------------------------------------------------------------------


@dataclass(slots=True)
class TargetCounters:
    delivered: int = 0
    failed: int = 0
    dropped: int = 0


class _Retry(Exception):
    def __init__(self, reason: str, delay: float | None = None) -> None:
        super().__init__(reason)
        self.delay = delay


class _Final(Exception):
    pass


class WebhookSink:
    """Alert events to HTTP receivers; see the module docstring.

    ``rule_webhooks`` maps rule names to the target names their ``webhooks`` list
    gives (``{r.name: r.webhooks for r in settings.alerts.rules}``).  ``logger`` is a
    structlog-style logger for delivery failures (target name and reason only).
    """

    def __init__(
        self,
        targets: Sequence[WebhookTarget],
        *,
        rule_webhooks: Mapping[str, Sequence[str]] | None = None,
        session_factory: Callable[[], aiohttp.ClientSession] | None = None,
        queue_size: int = 1000,
        timeout_s: float = 5.0,
        retries: int = 3,
        backoff_s: float = 0.5,
        max_backoff_s: float = 30.0,
        logger: Any = None,
    ) -> None:
        self.targets = {t.name: t for t in targets}
        self.rule_webhooks = {rule: list(hooks) for rule, hooks in (rule_webhooks or {}).items()}
        unknown = unknown_webhooks(self.rule_webhooks, targets)
        if unknown:
            raise ValueError(f"alert rules name unknown webhooks: {', '.join(unknown)}")
        self._session_factory = session_factory or self._default_session
        self.queue_size = queue_size
        self.timeout_s = timeout_s
        self.retries = retries
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self._log = logger
        self.counters = {name: TargetCounters() for name in self.targets}
        self._queues: dict[str, asyncio.Queue[bytes]] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._session: aiohttp.ClientSession | None = None
        self._closed = False

    @classmethod
    def from_settings(
        cls,
        settings: WebhookSettings,
        *,
        rule_webhooks: Mapping[str, Sequence[str]] | None = None,
        logger: Any = None,
    ) -> WebhookSink:
        return cls(
            settings.targets, rule_webhooks=rule_webhooks, queue_size=settings.queue_size,
            timeout_s=settings.timeout_s, retries=settings.retries, backoff_s=settings.backoff_s,
            max_backoff_s=settings.max_backoff_s, logger=logger,
        )  # fmt: skip

    # totals over targets, for pulse_dropped_events_total and tests
    @property
    def delivered(self) -> int:
        return sum(c.delivered for c in self.counters.values())

    @property
    def failed(self) -> int:
        return sum(c.failed for c in self.counters.values())

    @property
    def dropped(self) -> int:
        return sum(c.dropped for c in self.counters.values())

    def routes(self, alert: AlertEvent) -> list[WebhookTarget]:
        """The targets ``alert`` goes to."""
        names = self.rule_webhooks.get(alert.alert)
        chosen = [self.targets[n] for n in names] if names else list(self.targets.values())
        return [t for t in chosen if accepts(t, alert)]

    def takes_exchanges(self, rendered: Rendered) -> bool:
        return False  # alerts only

    def write(self, batch: Batch[Any]) -> None:
        """Webhooks carry alerts only."""

    def on_exchange(self, exchange: Exchange) -> None:
        """Webhooks carry alerts only."""

    def on_alert(self, alert: AlertEvent) -> None:
        """Queue ``alert`` for each of its targets; never waits, never does I/O."""
        for target in self.routes(alert):
            if self._closed:
                self.counters[target.name].dropped += 1
                continue
            body = slack_payload(alert) if target.format == "slack" else json_payload(alert)
            queue = self._queue(target.name)
            try:
                queue.put_nowait(orjson.dumps(body))
            except asyncio.QueueFull:
                counters = self.counters[target.name]
                counters.dropped += 1
                if counters.dropped % 100 == 1:  # the first drop, then every 100th: no log flood
                    self._warn(
                        "pulse.webhook_dropped",
                        target.name,
                        f"queue full ({counters.dropped} dropped)",
                    )
                continue
            self._ensure_worker(target.name)

    def start(self) -> None:
        """Start every target's worker now (else each starts with its first alert)."""
        for name in self.targets:
            self._queue(name)
            self._ensure_worker(name)

    def _queue(self, name: str) -> asyncio.Queue[bytes]:
        queue = self._queues.get(name)
        if queue is None:
            queue = self._queues[name] = asyncio.Queue(self.queue_size)
        return queue

    def _ensure_worker(self, name: str) -> None:
        task = self._tasks.get(name)
        if task is not None and not task.done():
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # queued; the worker starts with the next call made on a loop
        # The dict holds the strong reference the event loop does not.
        self._tasks[name] = loop.create_task(self._work(name), name=f"pulse-webhook-{name}")

    def _default_session(self) -> aiohttp.ClientSession:
        return aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=self.timeout_s),
            headers={"User-Agent": "llm-pulse-webhook"},
        )

    async def _work(self, name: str) -> None:
        target, queue = self.targets[name], self._queues[name]
        while True:
            body = await queue.get()
            try:
                await self._deliver(target, body)
            except asyncio.CancelledError:
                self.counters[name].dropped += 1  # shutdown cut this delivery short
                raise
            except Exception as exc:  # noqa: BLE001 - a bug must not kill the worker
                self.counters[name].failed += 1
                self._warn("pulse.webhook_failed", name, type(exc).__name__)
            finally:
                queue.task_done()

    async def _deliver(self, target: WebhookTarget, body: bytes) -> None:
        counters = self.counters[target.name]
        for attempt in range(self.retries + 1):
            try:
                await self._post(target, body)
            except _Final as exc:
                counters.failed += 1
                self._warn("pulse.webhook_failed", target.name, str(exc))
                return
            except _Retry as exc:
                if attempt == self.retries:
                    counters.failed += 1
                    self._warn(
                        "pulse.webhook_failed", target.name, f"{exc} after {attempt + 1} attempts"
                    )
                    return
                delay = exc.delay if exc.delay is not None else self.backoff_s * 2**attempt
                delay = min(delay, self.max_backoff_s) * random.uniform(1.0, 1.1)  # noqa: S311 - jitter
                await asyncio.sleep(delay)
            else:
                counters.delivered += 1
                return

    async def _post(self, target: WebhookTarget, body: bytes) -> None:
        if self._session is None or self._session.closed:
            self._session = self._session_factory()
        headers = {"Content-Type": "application/json", **target.headers}
        try:
            async with self._session.post(
                target.url,
                data=body,
                headers=headers,
                timeout=aiohttp.ClientTimeout(total=self.timeout_s),
                allow_redirects=False,
            ) as response:
                status = response.status
                retry_after = response.headers.get("Retry-After")
                await response.content.read(64 * 1024)  # let the connection be reused
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            raise _Retry(type(exc).__name__) from None
        if 200 <= status < 300:
            return
        if status == 429 or status >= 500:
            raise _Retry(f"HTTP {status}", _seconds(retry_after))
        raise _Final(f"HTTP {status}")

    def _warn(self, event: str, target: str, reason: str) -> None:
        if self._log is not None:
            with contextlib.suppress(Exception):
                self._log.warning(event, webhook=target, reason=reason)

    async def aclose(self, timeout: float = 3.0) -> None:
        """Deliver what is queued within ``timeout``, then stop; the rest counts as dropped."""
        self._closed = True
        for name, queue in self._queues.items():
            if not queue.empty():
                self._ensure_worker(name)
        pending = [q.join() for name, q in self._queues.items() if name in self._tasks]
        if pending:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(asyncio.gather(*pending), timeout)
        for task in self._tasks.values():
            task.cancel()
        await asyncio.gather(*self._tasks.values(), return_exceptions=True)
        for name, queue in self._queues.items():
            self.counters[name].dropped += queue.qsize()
        self._tasks.clear()
        if self._session is not None:
            await self._session.close()
            self._session = None


def _seconds(retry_after: str | None) -> float | None:
    """``Retry-After`` in seconds (the delta form; an HTTP date falls back to backoff)."""
    if retry_after is None:
        return None
    try:
        return max(0.0, float(retry_after))
    except ValueError:
        return None
