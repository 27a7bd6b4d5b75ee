"""Which headers cross the proxy, in each direction.

Hop-by-hop headers (RFC 9110 §7.6.1) describe one connection and must not be
forwarded, nor may any header the ``Connection`` header names.  ``Host`` and
``Content-Length`` are recomputed for the upstream request; attribution headers meant
for LLM Pulse itself are consumed here and never reach the provider.
"""

from __future__ import annotations

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
            named.update(token.strip().lower() for token in value.split(b",") if token.strip())
    return frozenset(named)


def filter_request_headers(
    headers: list[tuple[bytes, bytes]], *, drop: frozenset[bytes] = frozenset()
) -> list[tuple[str, str]]:
    """Client headers to send upstream, as ``str`` pairs (duplicates and order kept)."""
    named = _connection_named(headers)
    kept: list[tuple[str, str]] = []
    for key, value in headers:
        lowered = key.lower()
        if lowered in HOP_BY_HOP or lowered in drop or lowered in named:
            continue
        kept.append((lowered.decode("latin-1"), value.decode("latin-1")))
    return kept


def filter_response_headers(headers: tuple[tuple[bytes, bytes], ...]) -> list[tuple[bytes, bytes]]:
    """Upstream headers to send to the client, bytes untouched."""
    named = _connection_named(list(headers))
    return [
        (key, value)
        for key, value in headers
        if (lowered := key.lower()) not in HOP_BY_HOP and lowered not in named
    ]
