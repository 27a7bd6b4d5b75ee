"""Per-request controls: request headers that steer the mock.

Demos and tests need every outcome on demand, through a real proxy that forwards
these headers untouched, so each control is a plain request header.  Names are
case-insensitive; a value that cannot be read is answered with a 400
``invalid_mock_control`` error naming the header (a silently ignored typo would make
a test pass for the wrong reason).

| header | effect |
| --- | --- |
| ``X-Mock-Latency-Ms: N`` | wait N ms before sending the response headers (any endpoint, errors too) |
| ``X-Mock-TTFT-Ms: N`` | streams: send the headers at once, then wait N ms before the first SSE event |
| ``X-Mock-Tokens-Per-Second: R`` | streams: pace content events at R per second (one token each); default: as fast as possible |
| ``X-Mock-Completion-Tokens: N`` | generate N completion tokens (default: 8–24, derived from the request); always capped by ``max_tokens`` / ``max_completion_tokens`` / ``max_output_tokens``, and hitting the cap gives ``finish_reason: "length"`` (Responses API: ``status: "incomplete"``) |
| ``X-Mock-Status: N`` | answer with HTTP status N (400–599) and OpenAI's error body ``{"error": {"message", "type", "param", "code"}}`` |
| ``X-Mock-Retry-After: S`` | add ``Retry-After: S`` to the response (use with 429) |
| ``X-Mock-Drop-After-Chunks: N`` | streams: send N SSE events, then drop the TCP connection without the chunked terminator |
| ``X-Mock-Gate: NAME`` | streams: after the first SSE event, hold the rest until ``POST /_mock/gates/NAME`` (or 30 s) |
| ``X-Mock-Usage: omit`` | no ``usage`` anywhere (JSON bodies and streams, even with ``include_usage``) |
| ``X-Mock-Usage: with-choices`` | streams with ``include_usage``: usage rides on the last chunk that carries the ``finish_reason`` instead of a separate ``choices: []`` chunk |
| ``X-Mock-Cached-Tokens: N`` | report N (at most the prompt) in ``prompt_tokens_details.cached_tokens`` (Responses: ``input_tokens_details``) |
| ``X-Mock-Reasoning-Tokens: N`` | report N in ``completion_tokens_details.reasoning_tokens`` (Responses: ``output_tokens_details``); they are part of ``completion_tokens`` and ``total_tokens``, and they use up the token cap first |
| ``X-Mock-Content-Encoding: gzip`` | gzip a non-streamed body and set ``Content-Encoding: gzip`` |
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal, cast

UsageMode = Literal["normal", "omit", "with-choices"]

LATENCY = "x-mock-latency-ms"
TTFT = "x-mock-ttft-ms"
TOKENS_PER_SECOND = "x-mock-tokens-per-second"
COMPLETION_TOKENS = "x-mock-completion-tokens"
STATUS = "x-mock-status"
RETRY_AFTER = "x-mock-retry-after"
DROP_AFTER_CHUNKS = "x-mock-drop-after-chunks"
GATE = "x-mock-gate"
USAGE = "x-mock-usage"
CACHED_TOKENS = "x-mock-cached-tokens"
REASONING_TOKENS = "x-mock-reasoning-tokens"
CONTENT_ENCODING = "x-mock-content-encoding"

CONTROL_HEADERS = (
    LATENCY,
    TTFT,
    TOKENS_PER_SECOND,
    COMPLETION_TOKENS,
    STATUS,
    RETRY_AFTER,
    DROP_AFTER_CHUNKS,
    GATE,
    USAGE,
    CACHED_TOKENS,
    REASONING_TOKENS,
    CONTENT_ENCODING,
)

_MAX_DELAY_MS = 600_000
_MAX_TOKENS = 100_000


class ControlError(ValueError):
    """A control header whose value the mock cannot use."""

    def __init__(self, header: str, value: str, expected: str) -> None:
        super().__init__(f"Invalid {header} header {value!r}: expected {expected}.")
        self.header = header


def _integer(headers: Mapping[str, str], name: str, low: int, high: int) -> int | None:
    raw = headers.get(name)
    if raw is None:
        return None
    try:
        value = int(raw.strip())
    except ValueError:
        raise ControlError(name, raw, f"an integer from {low} to {high}") from None
    if not low <= value <= high:
        raise ControlError(name, raw, f"an integer from {low} to {high}")
    return value


@dataclass(slots=True, frozen=True)
class Controls:
    """What one request asked the mock to do; the defaults are a fast, healthy upstream."""

    latency_ms: int = 0
    ttft_ms: int = 0
    tokens_per_second: float = 0.0
    completion_tokens: int | None = None
    status: int | None = None
    retry_after: str | None = None
    drop_after_chunks: int | None = None
    gate: str | None = None
    usage: UsageMode = "normal"
    cached_tokens: int = 0
    reasoning_tokens: int = 0
    gzip: bool = False

    @classmethod
    def from_headers(cls, headers: Mapping[str, str]) -> Controls:
        """Read the controls from lower-cased request headers; raise ControlError on bad values."""
        rate = headers.get(TOKENS_PER_SECOND)
        tokens_per_second = 0.0
        if rate is not None:
            try:
                tokens_per_second = float(rate)
            except ValueError:
                raise ControlError(TOKENS_PER_SECOND, rate, "a positive number") from None
            if not 0 < tokens_per_second < float("inf"):
                raise ControlError(TOKENS_PER_SECOND, rate, "a positive number")
        usage = (headers.get(USAGE) or "normal").strip().lower()
        if usage not in ("normal", "omit", "with-choices"):
            raise ControlError(USAGE, usage, "'omit' or 'with-choices'")
        encoding = (headers.get(CONTENT_ENCODING) or "identity").strip().lower()
        if encoding not in ("identity", "gzip"):
            raise ControlError(CONTENT_ENCODING, encoding, "'gzip'")
        return cls(
            latency_ms=_integer(headers, LATENCY, 0, _MAX_DELAY_MS) or 0,
            ttft_ms=_integer(headers, TTFT, 0, _MAX_DELAY_MS) or 0,
            tokens_per_second=tokens_per_second,
            completion_tokens=_integer(headers, COMPLETION_TOKENS, 0, _MAX_TOKENS),
            status=_integer(headers, STATUS, 400, 599),
            retry_after=headers.get(RETRY_AFTER),
            drop_after_chunks=_integer(headers, DROP_AFTER_CHUNKS, 0, 1_000_000),
            gate=headers.get(GATE) or None,
            usage=cast(UsageMode, usage),
            cached_tokens=_integer(headers, CACHED_TOKENS, 0, 10_000_000) or 0,
            reasoning_tokens=_integer(headers, REASONING_TOKENS, 0, _MAX_TOKENS) or 0,
            gzip=encoding == "gzip",
        )
