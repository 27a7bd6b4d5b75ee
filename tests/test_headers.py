"""Hop-by-hop headers never cross the proxy; end-to-end headers always do."""

from __future__ import annotations

from pulse_proxy.proxy.headers import (
    REQUEST_ONLY_HEADERS,
    filter_response_headers,
    read_request_headers,
)


def test_request_drops_hop_by_hop_and_connection_named_headers() -> None:
    """RFC 9110 hop-by-hop headers and those named in Connection are removed."""
    headers = [
        (b"Host", b"proxy:8080"),
        (b"Connection", b"keep-alive, X-Private-Hop"),
        (b"Keep-Alive", b"timeout=5"),
        (b"X-Private-Hop", b"secret-to-this-hop"),
        (b"TE", b"trailers"),
        (b"Transfer-Encoding", b"chunked"),
        (b"Upgrade", b"h2c"),
        (b"Proxy-Authorization", b"Basic abc"),
        (b"Content-Length", b"10"),
        (b"Authorization", b"Bearer sk-test"),
        (b"X-Pulse-User", b"alice"),
        (b"OpenAI-Organization", b"org-1"),
        (b"Accept", b"a"),
        (b"Accept", b"b"),
    ]
    kept = read_request_headers(headers, drop=REQUEST_ONLY_HEADERS).upstream
    assert kept == [
        ("authorization", "Bearer sk-test"),
        ("openai-organization", "org-1"),
        ("accept", "a"),
        ("accept", "b"),
    ]


def test_response_keeps_bytes_and_drops_hop_by_hop() -> None:
    """Response headers keep their original bytes; hop-by-hop ones go."""
    headers = (
        (b"Content-Type", b"text/event-stream; charset=utf-8"),
        (b"Connection", b"close, X-Hop"),
        (b"X-Hop", b"1"),
        (b"Transfer-Encoding", b"chunked"),
        (b"x-ratelimit-remaining-requests", b"99"),
    )
    assert filter_response_headers(headers) == [
        (b"Content-Type", b"text/event-stream; charset=utf-8"),
        (b"x-ratelimit-remaining-requests", b"99"),
    ]
