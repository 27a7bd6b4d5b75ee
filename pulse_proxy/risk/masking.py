"""The :func:`mask` entry point: a text with every PII and secret match replaced."""

from __future__ import annotations

from pulse_proxy.risk.credentials import _secret_spans
from pulse_proxy.risk.pii import _pii_spans


def mask(text: str) -> str:
    """``text`` with PII and secrets replaced by ``[EMAIL]``, ``[CARD]``, ``[SECRET]``, …

    For the opt-in content-logging mode.  The whole text is masked (no scan cap): mask
    first, then truncate, so that a cut never leaves half a secret unrecognised.
    Overlapping matches merge, so no fragment of either survives.
    """
    return _replace(text, [*_pii_spans(text), *_secret_spans(text)])


def mask_secrets(text: str) -> str:
    """``text`` with only the credentials that look like known key formats replaced by
    ``[SECRET]``: for texts such as a URL path, where an e-mail or a number is no leak
    but a key pasted into ``/v1/models/sk-…`` is."""
    return _replace(text, list(_secret_spans(text)))


def _replace(text: str, found: list[tuple[str, int, int]]) -> str:
    spans = sorted(found, key=lambda s: (s[1], -s[2]))
    if not spans:
        return text
    out: list[str] = []
    position = 0
    label, start, end = spans[0]
    for next_label, next_start, next_end in spans[1:]:
        if next_start < end:
            end = max(end, next_end)
            continue
        out += (text[position:start], label)
        position = end
        label, start, end = next_label, next_start, next_end
    out += (text[position:start], label, text[end:])
    return "".join(out)
