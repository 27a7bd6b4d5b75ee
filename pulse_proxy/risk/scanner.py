"""The :func:`scan` entry point: which flags a text raises, within the scan cap."""

from __future__ import annotations

from pulse_proxy.risk.credentials import _secret_spans
from pulse_proxy.risk.flags import (
    _FLAG_SET,
    DEFAULT_LONG_PROMPT_TOKENS,
    DEFAULT_MAX_CHARS,
    FLAGS,
)
from pulse_proxy.risk.jailbreak import _JAILBREAK
from pulse_proxy.risk.pii import _pii_spans


def _sample(text: str, max_chars: int) -> str:
    """Head and tail of an over-long text: instructions lead, pasted material trails."""
    if len(text) <= max_chars:
        return text
    head = max_chars // 2
    return text[:head] + "\n" + text[len(text) - (max_chars - head) :]


def scan(
    text: str,
    *,
    prompt_tokens: int | None = None,
    long_prompt_tokens: int = DEFAULT_LONG_PROMPT_TOKENS,
    max_chars: int = DEFAULT_MAX_CHARS,
    detectors: frozenset[str] | None = None,
) -> list[str]:
    """The sorted risk flags of ``text``: a subset of :data:`FLAGS`, never the matches.

    ``prompt_tokens`` is the caller's token count (``long_prompt`` needs it, and is not
    raised without it); at most ``max_chars`` characters are scanned; ``detectors``
    restricts which flags are computed (all by default).
    """
    enabled = _FLAG_SET if detectors is None else frozenset(detectors)
    unknown = enabled - _FLAG_SET
    if unknown:
        raise ValueError(f"unknown risk detectors {sorted(unknown)}; known: {list(FLAGS)}")
    flags: list[str] = []
    if (
        "long_prompt" in enabled
        and prompt_tokens is not None
        and (prompt_tokens > long_prompt_tokens)
    ):
        flags.append("long_prompt")
    if not text or enabled <= {"long_prompt"}:
        return sorted(flags)
    sample = _sample(text, max_chars)
    if "jailbreak" in enabled and _JAILBREAK.search(sample):
        flags.append("jailbreak")
    if "pii" in enabled and next(_pii_spans(sample), None) is not None:
        flags.append("pii")
    if "secret" in enabled and next(_secret_spans(sample), None) is not None:
        flags.append("secret")
    return sorted(flags)
