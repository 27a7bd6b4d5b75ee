"""The records that cross from the request path to everything else.

An :class:`Exchange` is one proxied request, complete: the hot path fills in what it
saw (timings, status, bytes), accounting adds tokens, cost and risk, and from then on
it is read-only data for the log line, the statistics, the alert engine and every
sink.  Its fields are the ``llm.request`` event, so the event is just
``exchange.to_event()``; nothing else needs to know how a request was forwarded.

A :class:`Capture` is what the hot path hands to accounting (the exchange so far and
copies of the bodies), and a :class:`Batch` what accounting hands back.  Both cross a
process boundary when accounting runs in its child process, so they are declared here,
once, as msgspec Structs, with the codec beside them (:class:`Codec`): a field added
to one of these classes crosses the pipe and reaches the event without another edit.
Structs encode to MessagePack in C, several times faster than pickling tuples of the
same values, and build faster than slotted dataclasses on the request path.
"""

from __future__ import annotations

import operator
import pickle
import time
from collections.abc import Callable, Sequence
from typing import Any, Generic, Literal, TypeVar

import msgspec
from msgspec import Struct, field

SCHEMA = "pulse.v1"

Outcome = Literal[
    "success",
    "client_error",
    "upstream_error",
    "timeout",
    "connection_error",
    "client_disconnected",
    "rejected",
    "throttled",
]
Endpoint = Literal["chat", "completions", "embeddings", "responses", "models", "other"]
TokenSource = Literal["upstream", "tiktoken", "estimate"]
UsageUnread = Literal[
    "backlog", "quarantined", "max_decoded_bytes", "unsupported_encoding", "corrupt_encoding"
]

# Outcomes that count against the service in error rates and alerts.  A client's own
# 4xx (bad request, wrong key) and a client hanging up are not the upstream failing.
ERROR_OUTCOMES = frozenset({"upstream_error", "timeout", "connection_error"})


class Exchange(Struct, array_like=True):
    """One proxied request: the ``llm.request`` event's fields, in the event's order.

    ``array_like``: on the wire an exchange is a MessagePack array, its fields in
    declaration order, which the decoder reads back by this same declaration."""

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
    # Beyond the documented field list, kept because they explain cost and correlate with the provider.
    cached_tokens: int | None = None
    reasoning_tokens: int | None = None
    upstream_request_id: str | None = None
    # Failover: tries made (0: none, the request was refused before), the upstreams
    # tried before the one that answered (in order; null when the first one did), and
    # the time spent waiting between tries (back-off or the upstream's Retry-After).
    attempts: int = 0
    failover_from: list[str] | None = None
    retry_wait_ms: float = 0.0
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
    # The limit rule that answered 429 in the upstream's stead (``outcome: throttled``).
    throttled_by: str | None = None
    # Set when the limits' shared store failed for this request ("timeout",
    # "unavailable"): it was then let through or refused by limits.on_backend_error.
    limits_backend_error: str | None = None

    @property
    def is_error(self) -> bool:
        return self.outcome in ERROR_OUTCOMES

    def to_event(self) -> dict[str, Any]:
        """The event body; the log pipeline adds ``event``, ``timestamp``, ``level``, ``schema``."""
        names, values = _event_getter(type(self))
        event = dict(zip(names, values(self)))
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
    if ex.retry_wait_ms:
        ex.retry_wait_ms = round(ex.retry_wait_ms, 3)


# Fields of an exchange that are not event fields (text rides along only when asked).
_NOT_EVENT = frozenset({"ended_at", "prompt_text", "completion_text"})
_event_getters: dict[
    type[Exchange], tuple[tuple[str, ...], Callable[[Exchange], tuple[Any, ...]]]
] = {}


def _event_getter(
    kind: type[Exchange],
) -> tuple[tuple[str, ...], Callable[[Exchange], tuple[Any, ...]]]:
    """The event's field names and an attrgetter reading them all in one C call, per
    class (so that a subclass's own fields are event fields too)."""
    found = _event_getters.get(kind)
    if found is None:
        names = tuple(name for name in kind.__struct_fields__ if name not in _NOT_EVENT)
        found = _event_getters[kind] = (names, operator.attrgetter(*names))
    return found


class Capture(Struct, array_like=True):
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


Figures = TypeVar("Figures")


class Batch(Struct, Generic[Figures], array_like=True):
    """A batch of captures, accounted: what the event loop's side still hands on.

    Generic in its figures, whose class lives with the statistics (which import this
    module): the codec decodes ``Batch[Tally]``, typed end to end.
    """

    lines: list[bytes]  # rendered ``llm.request`` lines, for the log sink's writer
    unrendered: list[Exchange]  # the few whose line failed to render: the log sink tries
    exchanges: list[Exchange]  # all of them, but only when a sink takes them one by one
    # The batch's figures for statistics, breakdown and Prometheus, summed: a
    # :class:`~pulse_proxy.stats.tally.Tally`.
    figures: Figures
    statsd: list[bytes] | None  # DogStatsD lines, when StatsD is on; None: not rendered


# One capture's fields on the wire, bodies apart: the capture with empty bodies and
# how many response chunks it had.  See :meth:`Codec.pack_captures`.
Packed = tuple[Capture, int]
BatchKey = tuple[int, int]
# How a pickle (protocol 2+) starts; a MessagePack message here starts with an array.
_PICKLED = b"\x80"


class Codec:
    """Captures to the accounting process, batches back, as MessagePack.

    Bodies are most of a batch's bytes.  Encoded with the fields, they would be copied
    into a fresh buffer of a few hundred KB on the event loop, and that buffer copied
    again into the socket; so they travel apart, end to end behind the fields, where
    the kernel's copy is the only one.  The classes are parameters so that a test can
    show a subclass's new field crossing with no other change; ``batch`` names its
    figures' class (``Batch[Tally]``), or they decode as plain lists and dicts.
    """

    def __init__(self, capture: type[Capture] = Capture, batch: type[Batch[Any]] = Batch) -> None:
        self._encoder = msgspec.msgpack.Encoder()
        # The classes are values here, which a static checker cannot follow.
        self._captures = msgspec.msgpack.Decoder(
            tuple[tuple[int, int], list[tuple[capture, int]], list[int]]  # type: ignore[valid-type]
        )
        self._batch = msgspec.msgpack.Decoder(tuple[tuple[int, int], batch])  # type: ignore[valid-type]

    @staticmethod
    def pack_captures(captures: Sequence[Capture]) -> tuple[list[Packed], list[int], list[bytes]]:
        """The captures without their bodies, the sizes of the bodies, and the bodies
        (per capture: the request, then the response chunks)."""
        packed: list[Packed] = []
        bodies: list[bytes] = []
        strip = msgspec.structs.replace
        for capture in captures:
            chunks = capture.response_chunks
            packed.append((strip(capture, request_body=b"", response_chunks=[]), len(chunks)))
            bodies.append(capture.request_body)
            bodies.extend(chunks)
        return packed, [len(body) for body in bodies], bodies

    @staticmethod
    def unpack_captures(packed: list[Packed], sizes: list[int], blob: bytes) -> list[Capture]:
        """``pack_captures`` undone, the bodies cut from ``blob`` (all of them, end to end)."""
        view = memoryview(blob)
        position = 0
        next_size = iter(sizes).__next__
        captures = []
        for capture, count in packed:
            end = position + next_size()
            capture.request_body = bytes(view[position:end])
            position = end
            chunks = []
            for _ in range(count):
                end = position + next_size()
                chunks.append(bytes(view[position:end]))
                position = end
            capture.response_chunks = chunks
            captures.append(capture)
        return captures

    def encode_captures(
        self, seq: BatchKey, captures: Sequence[Capture]
    ) -> tuple[bytes, list[int], list[bytes]]:
        """The fields frame, the bodies' sizes and the bodies, for :meth:`decode_captures`."""
        packed, sizes, bodies = self.pack_captures(captures)
        return self._encode((seq, packed, sizes)), sizes, bodies

    def decode_captures(self, fields: bytes, blob: bytes) -> tuple[BatchKey, list[Capture]]:
        if fields.startswith(_PICKLED):
            seq, packed, sizes = pickle.loads(fields)  # noqa: S301 - from our own process
        else:
            seq, packed, sizes = self._captures.decode(fields)
        return seq, self.unpack_captures(packed, sizes, blob)

    def encode_batch(self, seq: BatchKey, batch: Batch[Any]) -> bytes:
        return self._encode((seq, batch))

    def decode_batch(self, data: bytes) -> tuple[BatchKey, Batch[Any]]:
        if data.startswith(_PICKLED):
            seq, batch = pickle.loads(data)  # noqa: S301 - from our own process
            return seq, batch
        return self._batch.decode(data)

    def _encode(self, message: tuple[Any, ...]) -> bytes:
        try:
            return self._encoder.encode(message)
        except (UnicodeEncodeError, OverflowError):
            # A lone surrogate (a header byte that is not UTF-8, kept by
            # surrogateescape) has no UTF-8 form, and an integer past 64 bits (an
            # upstream's absurd token count) no MessagePack one: such a rare message
            # crosses pickled, which keeps every value as it is.
            return pickle.dumps(message, protocol=5)


class AlertEvent(Struct, frozen=True):
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
    # What the proxy switched on or off meanwhile: breakers opened and where traffic
    # went (an error-rate alert), limit rules switched on (fired) or off (resolved).
    actions: list[dict[str, Any]] = field(default_factory=list)

    def to_event(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__struct_fields__ if name != "event"}
