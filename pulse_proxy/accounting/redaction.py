"""Credentials redacted by value: what a request carried never reaches a log line.

Pattern matching finds keys that look like known formats (``sk-proj-…``), but not an
Azure key (32 hex digits), a Basic password or a ``?sig=`` token, and an upstream
that echoes the credential it was sent into a 401 or 500 body would put it in the
event's ``error_message`` verbatim.  The proxy holds those exact values, so it
replaces them wherever they appear: every ``Authorization`` credential (any scheme;
Basic also decoded, with its user and password), ``api-key``, ``x-api-key``, the key
the proxy itself injects upstream, and query parameters whose names say key, token,
sig, secret or password, each raw, percent-decoded and percent-encoded.

The hot path only keeps the header values it reads anyway and the raw query string;
everything here runs in accounting, off the event loop.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Iterable
from urllib.parse import quote, quote_plus, unquote, unquote_plus

from pulse_proxy.records import Exchange

SECRET = "[SECRET]"

# Values shorter than this are not redacted.  Every real key or token is far longer (an
# Azure key 32 characters, OpenAI's over 40), while short values ("test", "admin", a
# 4-digit "key=1234") are common words and numbers: replacing them everywhere would
# shred paths and messages, and the pattern of [SECRET] markers would itself show where
# the value sits.  Eight keeps an 8-character password redacted.
MIN_SECRET_CHARS = 8

_QUERY_NAME_HINTS = ("key", "token", "sig", "secret", "password")

Redact = Callable[[str], str]


def credential_values(
    headers: str | None, query: bytes, configured: Iterable[str] = ()
) -> list[str]:
    """Every form of every credential to redact, longest first (so that a whole
    ``user:password`` goes before its parts), none shorter than MIN_SECRET_CHARS.

    ``headers``: the credential header values, one a line, as the hot path keeps them.
    """
    found: set[str] = set()
    for value in headers.split("\n") if headers else ():
        found.update(_header_credentials(value))
    found.update(_query_credentials(query))
    found.update(value.strip() for value in configured if value)
    variants = {form for value in found for form in _forms(value)}
    return sorted((v for v in variants if len(v) >= MIN_SECRET_CHARS), key=len, reverse=True)


def _header_credentials(value: str) -> list[str]:
    """The credential part of an ``Authorization`` (``Scheme credential``) or key header;
    a bare value is the credential whole.  Basic also yields ``user:password`` decoded,
    and each side of it."""
    value = value.strip()
    scheme, _, rest = value.partition(" ")
    credential = rest.strip() or value
    found = [credential]
    if scheme.lower() == "basic" and rest.strip():
        try:
            decoded = base64.b64decode(credential + "=" * (-len(credential) % 4), validate=True)
        except (binascii.Error, ValueError):
            return found
        for text in {decoded.decode("utf-8", "replace"), decoded.decode("latin-1")}:
            user, _, password = text.partition(":")
            found += [text, user, password]
    return found


def _query_credentials(query: bytes) -> list[str]:
    found = []
    for pair in query.decode("latin-1").replace(";", "&").split("&"):
        name, sep, value = pair.partition("=")
        if sep and value and any(hint in unquote_plus(name).lower() for hint in _QUERY_NAME_HINTS):
            found.append(value)
    return found


def _forms(value: str) -> set[str]:
    """The value as sent, percent-decoded (a query value is sent encoded, an upstream
    may echo it decoded) and percent-encoded (a header value echoed inside a URL)."""
    return {value, unquote(value), unquote_plus(value), quote(value, safe=""), quote_plus(value)}


def value_redactor(secrets: list[str]) -> Redact:
    """A function that replaces each of ``secrets`` in a text by ``[SECRET]``."""
    if not secrets:
        return _unchanged

    def redact(text: str) -> str:
        for secret in secrets:
            if secret in text:
                text = text.replace(secret, SECRET)
        return text

    return redact


def _unchanged(text: str) -> str:
    return text


_FIELDS = Exchange.__struct_fields__


def redact_exchange(exchange: Exchange, redact: Redact) -> None:
    """Every text an event can hold, redacted in place: strings, tag keys and values,
    list items, whatever field they are in."""
    if redact is _unchanged:
        return
    for name in _FIELDS:
        value = getattr(exchange, name)
        if isinstance(value, str):
            setattr(exchange, name, redact(value))
        elif isinstance(value, dict):
            setattr(
                exchange,
                name,
                {redact(str(k)): redact(v) if isinstance(v, str) else v for k, v in value.items()},
            )
        elif isinstance(value, list):
            setattr(exchange, name, [redact(v) if isinstance(v, str) else v for v in value])
