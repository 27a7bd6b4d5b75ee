"""Risk signals for a request: recorded off the path, or enforced on it when asked.

By default every detector only *observes*: flags are computed by accounting after the
response and land in ``risk_flags`` and ``llm_prompt_risk_total``.  A flag whose
policy is ``block`` must be known before forwarding, so for those detectors alone the
request is screened on the hot path (in a worker thread for large bodies) and, when
one fires, answered with OpenAI's 400 shape without calling the upstream.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from typing import Any

import orjson

from pulse_proxy import risk
from pulse_proxy.accounting.tokens import count_prompt
from pulse_proxy.records import Exchange
from pulse_proxy.settings import RiskSettings

_SCREENED_ENDPOINTS = frozenset({"chat", "completions", "embeddings", "responses"})
_THREAD_THRESHOLD_BYTES = 64 * 1024


_CONTENT_DETECTORS = frozenset({"jailbreak", "pii", "secret"})
_CACHE_MAX_CHARS = 32 * 1024


@functools.lru_cache(maxsize=8192)
def _scan_part(text: str) -> frozenset[str]:
    return frozenset(risk.scan(text, detectors=_CONTENT_DETECTORS, max_chars=_CACHE_MAX_CHARS))


def content_flags(body: dict[str, Any], max_chars: int) -> set[str]:
    """Content flags, scanned message by message with a bounded cache.

    Chat clients resend the whole conversation each turn and share system prompts, so
    most message texts were seen moments ago; scanning each once keeps the cost of a
    turn proportional to its new text.  Bodies beyond the scan cap are scanned whole,
    head and tail, as :func:`risk.scan` samples them.
    """
    parts = risk.extract_texts(body)
    if sum(len(part) for part in parts) > max_chars or any(
        len(p) > _CACHE_MAX_CHARS for p in parts
    ):
        return set(risk.scan("\n".join(parts), detectors=_CONTENT_DETECTORS, max_chars=max_chars))
    flags: set[str] = set()
    for part in parts:
        flags |= _scan_part(part)
    return flags


def flagger(settings: RiskSettings) -> Callable[[dict[str, Any], Exchange], list[str]] | None:
    """The accounting step's risk function (None when risk detection is off)."""
    if not settings.enabled:
        return None

    def flags(body: dict[str, Any], exchange: Exchange) -> list[str]:
        tokens = (
            exchange.prompt_tokens
            if exchange.prompt_tokens is not None
            else exchange.prompt_tokens_local
        )
        found = content_flags(body, settings.max_scan_chars)
        if tokens is not None and tokens > settings.long_prompt_tokens:
            found.add("long_prompt")
        return sorted(found)

    return flags


class Screen:
    """Hot-path check for the flags whose policy is ``block``."""

    def __init__(self, settings: RiskSettings) -> None:
        self._settings = settings
        self.blocking = settings.blocking if settings.enabled else frozenset()

    def __bool__(self) -> bool:
        return bool(self.blocking)

    def _check(self, body: bytes, endpoint: str) -> list[str]:
        try:
            parsed = orjson.loads(body)
        except orjson.JSONDecodeError:
            return []
        if not isinstance(parsed, dict):
            return []
        tokens = None
        if "long_prompt" in self.blocking:
            model = parsed.get("model") if isinstance(parsed.get("model"), str) else None
            try:
                tokens = count_prompt(parsed, endpoint, model)
            except Exception:  # noqa: BLE001 - a body the counter chokes on is screened without a count
                tokens = None
        return risk.scan(
            risk.extract_text(parsed),
            prompt_tokens=tokens,
            long_prompt_tokens=self._settings.long_prompt_tokens,
            max_chars=self._settings.max_scan_chars,
            detectors=self.blocking,
        )

    async def blocked_flags(self, body: bytes, endpoint: str) -> list[str]:
        if not self.blocking or endpoint not in _SCREENED_ENDPOINTS or not body:
            return []
        if len(body) > _THREAD_THRESHOLD_BYTES:
            return await asyncio.to_thread(self._check, body, endpoint)
        return self._check(body, endpoint)
