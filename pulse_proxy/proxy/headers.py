"""Which headers cross the proxy, in each direction.

Hop-by-hop headers (RFC 9110 §7.6.1) describe one connection and must not be
forwarded, nor may any header the ``Connection`` header names.  ``Host`` and
``Content-Length`` are recomputed for the upstream request, ``Via`` is sent on with
our own entry appended; attribution headers meant for LLM Pulse itself are consumed
here and never reach the provider.
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
# it is safe, else a generated one; Via: the client's with ours appended), or LLM
# Pulse's own.
REQUEST_ONLY_HEADERS = frozenset(
    {b"host", b"content-length", b"x-request-id", b"via", b"x-pulse-user", b"x-pulse-tags"}
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
    transfer_encoding: bytes | None = None  # with content_length: whether a body was framed
    api_key: str | None = None  # the first of Authorization (bearer), api-key, x-api-key
    # Every Authorization, api-key and x-api-key value as sent, one a line (a header
    # value holds no newline), for accounting to redact by value, parsed there, off
    # the event loop.  One string rather than a list: cheaper to build and to pickle.
    credentials: str | None = None
    user: str | None = None  # X-Pulse-User
    tags: str | None = None  # X-Pulse-Tags
    # Every Via field the client sent, joined with ", " (RFC 9110 §5.3): the proxies
    # the request already passed through, ours among them if it is looping.
    via: str | None = None


# The headers read on the way, by what they hold.
_READ = {
    b"x-request-id": "request_id",
    b"content-length": "content_length",
    b"transfer-encoding": "transfer_encoding",
    b"authorization": "authorization",
    b"api-key": "api_key",
    b"x-api-key": "api_key",
    b"x-pulse-user": "user",
    b"x-pulse-tags": "tags",
    b"via": "via",
}


@functools.lru_cache(maxsize=8)
def _actions(drop: frozenset[bytes]) -> dict[bytes, tuple[str | None, bool]]:
    """For every header that is not simply forwarded: what it holds, and whether it
    still goes upstream.  One lookup per header instead of three set tests."""
    names = HOP_BY_HOP | drop | _READ.keys()
    return {name: (_READ.get(name), name not in HOP_BY_HOP and name not in drop) for name in names}


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
            setattr(read, what, _attribution_text(value))
        elif what == "via":
            text = value.decode("latin-1")
            read.via = text if read.via is None else f"{read.via}, {text}"
        elif getattr(read, what) is None:
            setattr(read, what, bytes(value))
        if forward:
            upstream.append((lowered.decode("latin-1"), value.decode("latin-1")))
    if named:
        # Headers the Connection header names are hop-by-hop too (RFC 9110 §7.6.1).
        extra = {token.decode("latin-1") for token in named}
        read.upstream = [(k, v) for k, v in upstream if k not in extra]
    return read


def _attribution_text(value: bytes) -> str:
    """X-Pulse-User / X-Pulse-Tags as text: UTF-8, which is what clients send for a
    name like ``josé``; bytes that are not valid UTF-8 are read as latin-1 instead of
    being replaced, so that two different byte strings never become the same user."""
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        return value.decode("latin-1")


def filter_response_headers(headers: tuple[tuple[bytes, bytes], ...]) -> list[tuple[bytes, bytes]]:
    """Upstream headers to send to the client, bytes untouched."""
    named = _connection_named(list(headers))
    return [
        (key, value)
        for key, value in headers
        if (lowered := key.lower()) not in HOP_BY_HOP and lowered not in named
    ]


# What an HTTP/1.1 server may send (RFC 9110 §5.1, §5.5): names are tokens (a
# superset of uvicorn's check), values hold no control character but HTAB (exactly
# uvicorn's check, made when the response starts).  ``bytes.translate`` deletes the
# allowed (names) or forbidden (values) bytes in one C pass over the joined list, a
# few times faster than a regex over the same bytes.  ``,`` is not a token character
# and HTAB is allowed in a value, so neither separator can hide or fake a bad byte.
_TOKEN_CHARS = b"!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_VALUE_FORBIDDEN = bytes(range(0x09)) + bytes(range(0x0A, 0x20)) + b"\x7f"


def response_headers_relayable(headers: list[tuple[bytes, bytes]]) -> bool:
    """Whether the server can send these headers to the client.

    Checked before the response starts: once started, a header the server refuses
    can only end in a dropped connection, where a 502 can still say what happened.
    """
    if not headers:
        return True
    names = b",".join([key for key, _ in headers])
    if names.translate(None, _TOKEN_CHARS) != b"," * (len(headers) - 1):
        return False
    if b",," in names or names[:1] == b"," or names[-1:] == b",":
        return False  # an empty name
    values = b"\t".join([value for _, value in headers])
    return len(values.translate(None, _VALUE_FORBIDDEN)) == len(values)
