"""The records that cross from the request path to everything else.

An :class:`Exchange` is one proxied request, complete: the hot path fills in what it
saw (timings, status, bytes), accounting adds tokens, cost and risk, and from then on
it is read-only data for the log line, the statistics, the alert engine and every
sink.  Its fields are the ``llm.request`` event of SPEC.md, so the event is just
``exchange.to_event()``; nothing else needs to know how a request was forwarded.
"""

from __future__ import annotations

import dataclasses
import operator
import time
from dataclasses import dataclass, field
from typing import Any, Literal

SCHEMA = "pulse.v1"

Outcome = Literal[
    "success",
    "client_error",
    "upstream_error",
    "timeout",
    "connection_error",
    "client_disconnected",
    "rejected",
]
Endpoint = Literal["chat", "completions", "embeddings", "responses", "models", "other"]
TokenSource = Literal["upstream", "tiktoken", "estimate"]
UsageUnread = Literal[
    "backlog", "quarantined", "max_decoded_bytes", "unsupported_encoding", "corrupt_encoding"
]

# Outcomes that count against the service in error rates and alerts.  A client's own
# 4xx (bad request, wrong key) and a client hanging up are not the upstream failing.
ERROR_OUTCOMES = frozenset({"upstream_error", "timeout", "connection_error"})


@dataclass(slots=True)
class Exchange:
    """One proxied request: the ``llm.request`` event's fields, in SPEC order."""

    request_id: str
    method: str
    path: str
    endpoint: Endpoint = "other"
    model: str | None = None
    response_model: str | None = None
    upstream: str = ""
    status_code: int | None = None
    outcome: Outcome = "success"
    stream: bool = False
    latency_ms: float | None = None
    ttft_ms: float | None = None
    upstream_ms: float | None = None
    overhead_ms: float | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    total_tokens: int | None = None
    token_source: TokenSource | None = None
    prompt_tokens_local: int | None = None
    prompt_chars: int | None = None
    messages: int | None = None
    max_tokens: int | None = None
    finish_reason: str | None = None
    tokens_per_second: float | None = None
    cost_usd: float | None = None
    risk_flags: list[str] = field(default_factory=list)
    user: str | None = None
    tags: dict[str, str] = field(default_factory=dict)
    api_key_hash: str | None = None
    error_type: str | None = None
    error_message: str | None = None
    bytes_in: int = 0
    bytes_out: int = 0
    # Beyond SPEC's list, kept because they explain cost and correlate with the provider.
    cached_tokens: int | None = None
    reasoning_tokens: int | None = None
    upstream_request_id: str | None = None
    # Why the response was never read for usage, when it was not: "backlog" (the
    # accounting backlog was full) or "quarantined" (its batch kept crashing the
    # accounting process): tokens and cost are then absent rather than guessed; or
    # "max_decoded_bytes" (a compressed answer expanded past
    # accounting.max_decoded_bytes), "unsupported_encoding" (no decoder here) or
    # "corrupt_encoding": token counts then come from the local fallback.
    usage_unread: UsageUnread | None = None
    # Only with ``accounting.log_content``: masked, capped text (never by default).
    prompt_text: str | None = None
    completion_text: str | None = None
    # Wall-clock end of the request (epoch seconds): what windows and alerts bucket by.
    ended_at: float = field(default_factory=time.time)

    @property
    def is_error(self) -> bool:
        return self.outcome in ERROR_OUTCOMES

    def to_event(self) -> dict[str, Any]:
        """The event body; the log pipeline adds ``event``, ``timestamp``, ``level``, ``schema``."""
        event = dict(zip(_EVENT_FIELDS, _event_values(self)))
        if self.prompt_text is not None or self.completion_text is not None:
            event["prompt_text"] = self.prompt_text
            event["completion_text"] = self.completion_text
        return event


def round_timings(ex: Exchange) -> None:
    """Timings to the microsecond, as events show them.  The request path stores raw
    float milliseconds, since rounding there costs the event loop half a microsecond
    each; accounting rounds them first thing, so an exchange whose accounting fails
    later still carries rounded timings."""
    if ex.latency_ms is not None:
        ex.latency_ms = round(ex.latency_ms, 3)
    if ex.ttft_ms is not None:
        ex.ttft_ms = round(ex.ttft_ms, 3)
    if ex.upstream_ms is not None:
        ex.upstream_ms = round(ex.upstream_ms, 3)
    if ex.overhead_ms is not None:
        ex.overhead_ms = round(ex.overhead_ms, 3)


_EVENT_FIELDS = tuple(
    f.name
    for f in dataclasses.fields(Exchange)
    if f.name not in ("ended_at", "prompt_text", "completion_text")
)
_event_values = operator.attrgetter(*_EVENT_FIELDS)  # one C call for every field


@dataclass(slots=True, frozen=True)
class AlertEvent:
    """An ``alert.fired`` or ``alert.resolved`` transition, ready for every alert sink."""

    event: Literal["alert.fired", "alert.resolved"]
    alert: str
    severity: str
    metric: str
    stat: str
    value: float | None
    threshold: float | None
    window_s: float
    message: str
    fired_at: str
    resolved_at: str | None
    duration_s: float | None
    labels: dict[str, str] = field(default_factory=dict)

    def to_event(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "event"}


@dataclass(slots=True)
class Capture:
    """What the hot path saw, for accounting to finish off the request path."""

    exchange: Exchange
    request_body: bytes = b""
    response_chunks: list[bytes] = field(default_factory=list)
    captured_bytes: int = 0
    truncated: bool = False
    response_content_type: str = ""
    response_content_encoding: str = ""
    # The client did not ask for stream usage; we did, and hid the usage chunk.
    usage_injected: bool = False
    # Whether the client was sent a status line: after that, an error can only cut
    # the response, not replace it.
    response_started: bool = False
    # Credentials and attribution headers, held in memory only until hashed / parsed.
    api_key: str | None = None
    # Every credential header value and the raw query string: accounting redacts what
    # they hold from the event, by value.
    credentials: str | None = None  # one header value a line
    query: bytes = b""
    user_header: str | None = None
    tags_header: str | None = None

    def keep(self, chunk: bytes, limit: int) -> None:
        """Copy a response chunk for accounting; past ``limit`` keep only a tail."""
        self.response_chunks.append(chunk)
        self.captured_bytes += len(chunk)
        while self.captured_bytes > limit and len(self.response_chunks) > 1:
            dropped = self.response_chunks.pop(0)
            self.captured_bytes -= len(dropped)
            self.truncated = True
