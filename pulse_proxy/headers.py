"""Which headers cross the proxy, in each direction.

Hop-by-hop headers (RFC 9110 §7.6.1) describe one connection and must not be
forwarded, nor may any header the ``Connection`` header names.  ``Host`` and
``Content-Length`` are recomputed for the upstream request; attribution headers meant
for LLM Pulse itself are consumed here and never reach the provider.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
    }
)

# Recomputed by the upstream client or by the proxy (X-Request-ID: the client's when
# it is safe, else a generated one), or LLM Pulse's own.
REQUEST_ONLY_HEADERS = frozenset(
    {b"host", b"content-length", b"x-request-id", b"x-pulse-user", b"x-pulse-tags"}
)


def _connection_named(headers: list[tuple[bytes, bytes]]) -> frozenset[bytes]:
    named: set[bytes] = set()
    for key, value in headers:
        if key.lower() == b"connection":
            named.update(_tokens(value))
    return frozenset(named)


def _tokens(value: bytes) -> list[bytes]:
    return [token.strip().lower() for token in value.split(b",") if token.strip()]


@dataclass(slots=True)
class ClientHeaders:
    """What the proxy needs from a request's headers, read in one pass over them."""

    upstream: list[tuple[str, str]] = field(default_factory=list)  # what goes upstream
    request_id: bytes | None = None
    content_length: bytes | None = None
    api_key: str | None = None  # the first of Authorization (bearer), api-key, x-api-key
    # Every Authorization, api-key and x-api-key value as sent, one a line (a header
    # value holds no newline), for accounting to redact by value, parsed there, off
    # the event loop.  One string rather than a list: cheaper to build and to pickle.
    credentials: str | None = None
    user: str | None = None  # X-Pulse-User
    tags: str | None = None  # X-Pulse-Tags


# The headers read on the way, by what they hold.
_READ = {
    b"x-request-id": "request_id",
    b"content-length": "content_length",
    b"authorization": "authorization",
    b"api-key": "api_key",
    b"x-api-key": "api_key",
    b"x-pulse-user": "user",
    b"x-pulse-tags": "tags",
}


@functools.lru_cache(maxsize=8)
def _actions(drop: frozenset[bytes]) -> dict[bytes, tuple[str | None, bool]]:
    """For every header that is not simply forwarded: what it holds, and whether it
    still goes upstream.  One lookup per header instead of three set tests."""
    names = HOP_BY_HOP | drop | _READ.keys()
    return {
        name: (_READ.get(name), name not in HOP_BY_HOP and name not in drop) for name in names
    }


def read_request_headers(
    headers: list[tuple[bytes, bytes]], *, drop: frozenset[bytes] = frozenset()
) -> ClientHeaders:
    """The client's headers to send upstream (``str`` pairs, duplicates and order kept,
    hop-by-hop ones and ``drop`` left out) and the few the proxy reads itself.

    One loop: this runs for every request on the event loop, where separate scans for
    each header cost more than the forwarding they serve.
    """
    read = ClientHeaders()
    upstream = read.upstream
    actions = _actions(drop)
    named: list[bytes] = []
    for key, value in headers:
        lowered = key.lower()
        action = actions.get(lowered)
        if action is None:
            upstream.append((lowered.decode("latin-1"), value.decode("latin-1")))
            continue
        what, forward = action
        if what is None:
            if lowered == b"connection":  # usually just "keep-alive", dropped anyway
                named.extend(t for t in _tokens(value) if t not in HOP_BY_HOP)
        elif what == "authorization" or what == "api_key":
            text = value.decode("latin-1")
            read.credentials = text if read.credentials is None else f"{read.credentials}\n{text}"
            if read.api_key is None:
                text = text.strip()
                if what == "authorization" and text[:7].lower() == "bearer ":
                    text = text[7:].strip()
                read.api_key = text or None
        elif what == "user" or what == "tags":
            setattr(read, what, value.decode("latin-1"))
        elif getattr(read, what) is None:
            setattr(read, what, bytes(value))
        if forward:
            upstream.append((lowered.decode("latin-1"), value.decode("latin-1")))
    if named:
        # Headers the Connection header names are hop-by-hop too (RFC 9110 §7.6.1).
        extra = {token.decode("latin-1") for token in named}
        read.upstream = [(k, v) for k, v in upstream if k not in extra]
    return read


def filter_response_headers(headers: tuple[tuple[bytes, bytes], ...]) -> list[tuple[bytes, bytes]]:
    """Upstream headers to send to the client, bytes untouched."""
    named = _connection_named(list(headers))
    return [
        (key, value)
        for key, value in headers
        if (lowered := key.lower()) not in HOP_BY_HOP and lowered not in named
    ]
