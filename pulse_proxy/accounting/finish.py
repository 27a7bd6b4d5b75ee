"""Turn a hot-path :class:`Capture` into a complete :class:`Exchange`.

Runs after the client has its last byte: parse the request copy (orjson), count the
prompt locally (tiktoken, in a worker thread when large, since tiktoken releases the
GIL), read usage from the response copy, then price it and look for risk signals.
The upstream's ``usage`` is the truth when present; local counts fill in only when
it is absent, and ``token_source`` says which.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson

from pulse_proxy.accounting import tokens
from pulse_proxy.accounting.decoding import decode_body
from pulse_proxy.accounting.redaction import (
    Redact,
    credential_values,
    redact_exchange,
    value_redactor,
)
from pulse_proxy.accounting.usage import ResponseFacts, facts_from_json, facts_from_sse
from pulse_proxy.records import Capture, Exchange, round_timings
from pulse_proxy.risk.masking import mask_secrets
from pulse_proxy.settings import Settings
from pulse_proxy.text import escape_control, truncate

# Bodies above this are counted in a worker thread so the event loop keeps relaying.
_THREAD_THRESHOLD_BYTES = 64 * 1024
_MAX_ERROR_CHARS = 300
_MAX_LABEL_CHARS = 128
# A JSON object's start; matched in place, since a decoded body may be tens of MB.
_JSON_OBJECT = re.compile(rb"\s*\{")

CostFn = Callable[[Exchange], float | None]
RiskFn = Callable[[dict[str, Any], Exchange], list[str]]
RedactFn = Callable[[str], str]


@dataclass(slots=True)
class RequestFacts:
    body: dict[str, Any] | None
    model: str | None = None
    messages: int | None = None
    max_tokens: int | None = None
    user: str | None = None
    prompt_chars: int | None = None


def _text_chars(value: Any) -> int:
    if isinstance(value, str):
        return len(value)
    if isinstance(value, list):
        return sum(_text_chars(v) for v in value)
    if isinstance(value, dict):
        return sum(_text_chars(v) for k, v in value.items() if k not in ("role", "type", "name"))
    return 0


def parse_request(raw: bytes, endpoint: str) -> RequestFacts:
    if not raw:
        return RequestFacts(None)
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return RequestFacts(None)
    if not isinstance(body, dict):
        return RequestFacts(None)
    facts = RequestFacts(body)
    model = body.get("model")
    facts.model = model if isinstance(model, str) else None
    user = body.get("user") or body.get("safety_identifier")
    facts.user = user if isinstance(user, str) else None
    for key in ("max_completion_tokens", "max_tokens", "max_output_tokens"):
        value = body.get(key)
        if isinstance(value, int) and not isinstance(value, bool):
            facts.max_tokens = value
            break
    if endpoint == "chat" and isinstance(body.get("messages"), list):
        facts.messages = len(body["messages"])
        facts.prompt_chars = _text_chars(body["messages"])
    elif endpoint == "completions":
        facts.prompt_chars = _text_chars(body.get("prompt"))
    elif endpoint in ("embeddings", "responses"):
        facts.prompt_chars = _text_chars(body.get("input")) + _text_chars(body.get("instructions"))
        if isinstance(body.get("input"), list):
            facts.messages = len(body["input"])
    return facts


def parse_tags(header: str | None, limit: int) -> dict[str, str]:
    """``team=search,feature=summarise`` → a small, bounded dict."""
    tags: dict[str, str] = {}
    if not header:
        return tags
    for part in header.split(","):
        key, sep, value = part.partition("=")
        key, value = key.strip(), value.strip()
        if not sep or not key:
            continue
        if len(tags) >= limit:
            break
        tags[escape_control(key[:64])] = escape_control(value[:_MAX_LABEL_CHARS])
    return tags


def key_hash_key(salt: str | None) -> bytes:
    """The blake2b key for :func:`key_hash` from ``accounting.key_hash_salt`` (random
    when unset, and the hashes then differ per run)."""
    return hashlib.sha256(salt.encode() if salt else os.urandom(32)).digest()


def key_hash(key: str, hash_key: bytes) -> str:
    """Salted and short: an unsalted full hash of a key is itself a credential.  The
    limits compute it on the request path, so that ``/pulse/limits`` names keys as
    the events do."""
    return hashlib.blake2b(key.encode("utf-8", "replace"), key=hash_key, digest_size=6).hexdigest()


class Accountant:
    def __init__(
        self,
        settings: Settings,
        *,
        cost: CostFn | None = None,
        risk: RiskFn | None = None,
        redact: RedactFn | None = None,
    ) -> None:
        self._salt = key_hash_key(settings.accounting.key_hash_salt)
        self._max_tags = settings.accounting.max_tags
        self._log_content = settings.accounting.log_content
        self._content_cap = settings.accounting.content_max_chars
        self._max_decoded = settings.accounting.max_decoded_bytes
        self._cost = cost
        self._risk = risk
        self._redact = redact
        # The key the proxy sends upstream for clients that send none: an upstream may
        # echo it as readily as a client's own.
        self._configured_keys = [settings.upstream.api_key] if settings.upstream.api_key else []

    def key_hash(self, key: str) -> str:
        return key_hash(key, self._salt)

    async def finish(self, capture: Capture) -> Exchange:
        big = len(capture.request_body) > _THREAD_THRESHOLD_BYTES or capture.captured_bytes > (
            _THREAD_THRESHOLD_BYTES * 4
        )
        if big:
            return await asyncio.to_thread(self.finish_sync, capture)
        return self.finish_sync(capture)

    def finish_sync(self, capture: Capture) -> Exchange:
        # Whatever happens here, the exchange leaves with the request's credentials
        # redacted: a caller that catches an accounting bug still logs capture.exchange.
        secrets = credential_values(capture.credentials, capture.query, self._configured_keys)
        capture.credentials = None
        clean = value_redactor(secrets)
        try:
            return self._finish(capture, clean)
        finally:
            redact_exchange(capture.exchange, clean)
            capture.exchange.path = mask_secrets(capture.exchange.path)

    def _finish(self, capture: Capture, clean: Redact) -> Exchange:
        """``clean`` goes over every client or upstream text before it is cut to size, so
        that a cut cannot leave the head of a credential that no longer matches whole."""
        ex = capture.exchange
        round_timings(ex)
        request = parse_request(capture.request_body, ex.endpoint)
        if request.model:
            ex.model = escape_control(clean(request.model)[:_MAX_LABEL_CHARS])
        # ``stream`` stays what the hot path saw: whether the response was SSE.  A
        # request asking for a stream may still get JSON (an error, a proxy refusal).
        ex.messages = request.messages
        ex.max_tokens = request.max_tokens
        ex.prompt_chars = request.prompt_chars
        user = capture.user_header or request.user
        ex.user = escape_control(clean(user)[:_MAX_LABEL_CHARS]) if user else None
        ex.tags = parse_tags(
            clean(capture.tags_header) if capture.tags_header else None, self._max_tags
        )
        if capture.api_key:
            ex.api_key_hash = self.key_hash(capture.api_key)
            capture.api_key = None

        if request.body is not None:
            try:
                ex.prompt_tokens_local = tokens.count_prompt(
                    request.body, ex.endpoint, request.model
                )
            except Exception:  # noqa: BLE001 - a body of unexpected shape must not lose the event
                ex.prompt_tokens_local = None

        facts = self._response_facts(capture, ex)
        if facts is not None:
            self._apply_facts(ex, facts, request, clean)
        if ex.error_message:
            message = clean(ex.error_message)
            message = self._redact(message) if self._redact else message
            ex.error_message = truncate(escape_control(message), _MAX_ERROR_CHARS)
        if ex.error_type:
            ex.error_type = escape_control(clean(ex.error_type)[:64])
        if ex.upstream_request_id:
            ex.upstream_request_id = self._clean_upstream_id(ex.upstream_request_id, clean)

        if self._cost is not None and ex.prompt_tokens is not None:
            ex.cost_usd = self._cost(ex)
        if self._risk is not None and request.body is not None:
            flags = self._risk(request.body, ex)
            ex.risk_flags = sorted(set(ex.risk_flags) | set(flags))
        if self._log_content:
            self._attach_content(ex, request, facts, clean)
        capture.request_body = b""
        capture.response_chunks = []
        return ex

    def _clean_upstream_id(self, value: str, clean: Redact) -> str:
        """The upstream's X-Request-ID is provider-controlled text like an error message,
        so it gets the same treatment: redacted, escaped, truncated.  Header bytes that
        are not UTF-8 arrive as lone surrogates, which no JSON encoder accepts; they
        become U+FFFD first, so the request's event is still written."""
        try:
            raw = value.encode("utf-8", "surrogateescape")  # the bytes aiohttp could not decode
        except UnicodeEncodeError:
            raw = value.encode("utf-8", "surrogatepass")
        value = clean(raw.decode("utf-8", "replace"))
        value = self._redact(value) if self._redact else value
        return truncate(escape_control(value), _MAX_LABEL_CHARS)

    def _attach_content(
        self, ex: Exchange, request: RequestFacts, facts: ResponseFacts | None, clean: Redact
    ) -> None:
        """Opt-in content logging: masked first (so a cap cannot cut a secret in half
        and leave its head), then capped, then escaped."""
        masker = self._redact

        def mask(text: str) -> str:
            text = clean(text)
            return masker(text) if masker is not None else text

        if request.body is not None:
            from pulse_proxy.risk import extract_text

            ex.prompt_text = escape_control(
                truncate(mask(extract_text(request.body)), self._content_cap)
            )
        if facts is not None:
            ex.completion_text = escape_control(
                truncate(mask("".join(facts.completion_text)), self._content_cap)
            )

    def _response_facts(self, capture: Capture, ex: Exchange) -> ResponseFacts | None:
        if not capture.response_chunks:
            return None
        if capture.response_content_type.startswith("text/event-stream"):
            return facts_from_sse(capture.response_chunks, collect_text=self._log_content)
        if capture.truncated:
            return None
        decoded = decode_body(
            capture.response_chunks, capture.response_content_encoding, self._max_decoded
        )
        if decoded.body is None:
            # Unreadable usage: say why, and let the local counts stand in for it.
            ex.usage_unread = decoded.problem
            return ResponseFacts()
        if not _JSON_OBJECT.match(decoded.body):
            return None
        return facts_from_json(decoded.body)

    def _apply_facts(
        self, ex: Exchange, facts: ResponseFacts, request: RequestFacts, clean: Redact
    ) -> None:
        if facts.response_model:
            ex.response_model = escape_control(clean(facts.response_model)[:_MAX_LABEL_CHARS])
            if ex.model is None:
                ex.model = ex.response_model
        ex.finish_reason = facts.finish_reason
        # A 2xx body's ``error`` fails the request only where the body says the generation
        # failed; a job or run that carries its own ``error`` was still fetched successfully.
        failed = facts.failed or ex.outcome != "success"
        if failed and facts.error_type and ex.error_type is None:
            ex.error_type = facts.error_type
            ex.error_message = facts.error_message
        if facts.failed and ex.outcome == "success":
            # An error event inside a 200 stream, or a failed Response, is a failed request.
            ex.outcome = "upstream_error"
        if ex.endpoint not in ("chat", "completions", "embeddings", "responses"):
            return
        usage = facts.usage
        if usage is not None and usage.prompt_tokens is not None:
            ex.prompt_tokens = usage.prompt_tokens
            ex.completion_tokens = usage.completion_tokens
            ex.total_tokens = usage.total_tokens
            ex.cached_tokens = usage.cached_tokens
            ex.reasoning_tokens = usage.reasoning_tokens
            ex.token_source = "upstream"
        elif ex.status_code is not None and ex.status_code < 400:
            model = ex.model or ex.response_model
            text = "".join(facts.completion_text)
            completion = tokens.count_text(text, model) if ex.endpoint != "embeddings" else 0
            if ex.prompt_tokens_local is not None:
                ex.prompt_tokens = ex.prompt_tokens_local
                ex.token_source = "tiktoken"
            elif request.prompt_chars is not None:
                ex.prompt_tokens = (request.prompt_chars + 3) // 4
                ex.token_source = "estimate"
            if ex.prompt_tokens is not None:
                ex.completion_tokens = completion
                ex.total_tokens = ex.prompt_tokens + completion
        if ex.completion_tokens:
            if ex.stream and ex.ttft_ms is not None and ex.latency_ms is not None:
                generation_ms = ex.latency_ms - ex.ttft_ms
            else:
                generation_ms = ex.upstream_ms or 0.0
            if generation_ms > 0:
                ex.tokens_per_second = round(ex.completion_tokens / (generation_ms / 1000), 2)
