"""Upstream answers reach the client faithfully, or as a 502 that says why they cannot.

Raw-socket upstreams here send what no well-behaved server would (control characters
in headers, an SSE body with no event separators) and record the exact request head
the proxy sent; the bundled mock is the reference for byte-for-byte comparisons.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable

import httpx
import orjson
import pytest
from conftest import RunningProxy, raw_upstream, start_proxy

CHAT = {"model": "gpt-4o", "messages": [{"role": "user", "content": "Say hello"}]}


def fixed_answer(head_lines: bytes, body: bytes) -> Callable[[socket.socket, bytes], None]:
    def answer(conn: socket.socket, _: bytes) -> None:
        conn.sendall(
            b"HTTP/1.1 200 OK\r\n"
            + head_lines
            + b"Content-Length: %d\r\nConnection: close\r\n\r\n" % len(body)
            + body
        )

    return answer


# -- A: answers the server cannot relay as they are -----------------------------------


@pytest.mark.parametrize(
    "header",
    [b"X-Bad: a\x01b", b"X-Bad: a\x7fb", b"X-Bad: a\rb"],
    ids=["control-char", "del", "bare-cr"],
)
def test_upstream_header_the_server_cannot_send_is_a_502(header: bytes) -> None:
    """A header value with a control character becomes a 502 upstream_bad_response in
    OpenAI's shape (never an empty reply), recorded as one upstream_error event.
    \\x01 and DEL pass aiohttp's parser and are caught before the response starts; a
    bare CR is refused by aiohttp itself, and reported the same way."""
    answer = fixed_answer(b"Content-Type: application/json\r\n" + header + b"\r\n", b'{"ok":true}')
    with raw_upstream(answer) as upstream, start_proxy(upstream.url) as proxy:
        response = httpx.get(proxy.base_url + "/models")
        assert response.status_code == 502
        error = response.json()["error"]
        assert error["code"] == "upstream_bad_response" and error["type"] == "api_error"
        assert "a\x01b" not in response.text
        (event,) = proxy.wait_for(1)
        assert (event.status_code, event.outcome, event.error_type) == (
            502,
            "upstream_error",
            "upstream_bad_response",
        )
        assert event.stream is False


SSE_PIECE = {"lf": b"data: " + b"x" * 1000 + b"\n", "crlf": b"data: " + b"x" * 1000 + b"\r\n"}


@pytest.mark.parametrize("ending", ["lf", "crlf"])
def test_sse_without_event_separators_is_not_held_by_the_usage_filter(ending: str) -> None:
    """An SSE body that never has a blank line, with usage injection on, still reaches the
    client while the upstream is sending (bounded look-ahead), and whole."""
    piece = SSE_PIECE[ending]
    before, after = piece * 3000, piece * 500  # ~3 MB before the hold, more after it
    release = threading.Event()

    def answer(conn: socket.socket, _: bytes) -> None:
        conn.sendall(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\n"
        )
        for start in range(0, len(before), 65536):
            conn.sendall(before[start : start + 65536])
        release.wait(30)
        conn.sendall(after)

    with raw_upstream(answer) as upstream, start_proxy(upstream.url) as proxy:
        received = bytearray()
        with httpx.stream(
            "POST",
            proxy.base_url + "/chat/completions",
            json={**CHAT, "stream": True},
            timeout=httpx.Timeout(20.0),
        ) as response:
            chunks = response.iter_raw()
            # Read while the upstream is held: a filter holding the body whole would
            # send nothing here, and the read would time out.
            while len(received) < len(before) // 2:
                received += next(chunks)
            assert not release.is_set()
            release.set()
            for chunk in chunks:
                received += chunk
        assert bytes(received) == before + after
        (event,) = proxy.wait_for(1)
        assert event.outcome == "success" and event.bytes_out == len(before + after)


# -- B: the client's framing, and what `stream` means ---------------------------------


def _raw_request(url: str, head: bytes, body: bytes = b"") -> int:
    """Send one request exactly as given; the status code of the answer."""
    host, port = url.removeprefix("http://").split("/")[0].split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(head + b"Host: x\r\nX-Request-ID: raw-1\r\nConnection: close\r\n\r\n" + body)
        data = b""
        while part := sock.recv(65536):
            data += part
    return int(data.split(b" ", 2)[1])


def _framing(head: bytes) -> list[bytes]:
    return [
        line.lower().replace(b" ", b"")
        for line in head.split(b"\r\n")[1:]
        if line.lower().startswith((b"content-length:", b"transfer-encoding:"))
    ]


@pytest.mark.parametrize(
    ("request_head", "body", "upstream_framing"),
    [
        (b"DELETE /v1/files/file-abc HTTP/1.1\r\n", b"", []),
        (b"GET /v1/models HTTP/1.1\r\n", b"", []),
        (b"POST /v1/files/file-abc/cancel HTTP/1.1\r\n", b"", []),
        (
            b"DELETE /v1/files/file-abc HTTP/1.1\r\nContent-Length: 0\r\n",
            b"",
            [b"content-length:0"],
        ),
        (b"GET /v1/models HTTP/1.1\r\nContent-Length: 0\r\n", b"", [b"content-length:0"]),
        (b"POST /v1/embeddings HTTP/1.1\r\nContent-Length: 2\r\n", b"{}", [b"content-length:2"]),
    ],
    ids=["delete", "get", "post-unframed", "delete-cl0", "get-cl0", "post-body"],
)
def test_upstream_gets_the_clients_body_framing(
    request_head: bytes, body: bytes, upstream_framing: list[bytes]
) -> None:
    """No body and no framing from the client: no Content-Length (nor Transfer-Encoding)
    upstream, whatever the method; an explicit Content-Length: 0 is still sent."""
    answer = fixed_answer(b"Content-Type: application/json\r\n", b"{}")
    with raw_upstream(answer) as upstream, start_proxy(upstream.url) as proxy:
        assert _raw_request(proxy.url, request_head, body) == 200
        # The readiness probe's GET /models may be recorded too.
        (head,) = [h for h in upstream.heads if b"x-request-id: raw-1" in h.lower()]
        assert _framing(head) == upstream_framing
        proxy.wait_for(1)


def test_stream_field_says_whether_the_response_was_sse(proxy: RunningProxy) -> None:
    """`stream` is true only for an SSE response: a streaming request answered with a
    JSON error (400 from the upstream, 429, or the proxy's own 413) is not a stream."""
    streamed = {**CHAT, "stream": True}
    url = proxy.base_url + "/chat/completions"
    assert httpx.post(url, json={"model": "gpt-4o", "stream": True}).status_code == 400
    assert httpx.post(url, json=streamed, headers={"X-Mock-Status": "429"}).status_code == 429
    assert httpx.post(url, json=streamed).headers["content-type"].startswith("text/event-stream")
    bad, limited, ok = proxy.wait_for(3)
    assert (bad.status_code, bad.stream) == (400, False)
    assert (limited.status_code, limited.stream) == (429, False)
    assert (ok.status_code, ok.stream) == (200, True)


def test_stream_field_is_false_for_a_proxy_error() -> None:
    """An answer the proxy produces itself (here a 413 to a streaming request) is JSON."""
    with start_proxy("http://127.0.0.1:9/v1", {"server": {"max_body_bytes": 64}}) as proxy:
        body = {**CHAT, "stream": True, "pad": "x" * 100}
        assert httpx.post(proxy.base_url + "/chat/completions", json=body).status_code == 413
        (event,) = proxy.wait_for(1)
        assert event.outcome == "rejected" and event.stream is False


# -- byte for byte: direct to the mock, and through the proxy -------------------------

# (method, path, JSON body or None).  The mock is deterministic for a given request:
# ids derive from the request and `created` is a fixed constant (see payloads.py).
ENDPOINTS = {
    "models": ("GET", "/models", None),
    "chat": ("POST", "/chat/completions", CHAT),
    "chat-stream": ("POST", "/chat/completions", {**CHAT, "stream": True}),
    "chat-stream-usage": (
        "POST",
        "/chat/completions",
        {**CHAT, "stream": True, "stream_options": {"include_usage": True}},
    ),
    "completions": ("POST", "/completions", {"model": "gpt-3.5-turbo-instruct", "prompt": "Hi"}),
    "completions-stream": (
        "POST",
        "/completions",
        {"model": "gpt-3.5-turbo-instruct", "prompt": "Hi", "stream": True},
    ),
    "embeddings": ("POST", "/embeddings", {"model": "text-embedding-3-small", "input": "Hi"}),
    "responses": ("POST", "/responses", {"model": "gpt-4o", "input": "Hi"}),
    "responses-stream": ("POST", "/responses", {"model": "gpt-4o", "input": "Hi", "stream": True}),
}

# Date is the clock's (the two requests may straddle a second); hop-by-hop headers
# describe each connection, and the proxy documents dropping them.
_NOT_COMPARED = {b"date", b"transfer-encoding", b"connection", b"keep-alive"}


def _fetch(base: str, name: str) -> tuple[bytes, list[tuple[bytes, bytes]]]:
    method, path, body = ENDPOINTS[name]
    content = orjson.dumps(body) if body is not None else None
    headers = {"X-Request-ID": f"same-{name}", "Accept-Encoding": "identity"}
    if content is not None:
        headers["Content-Type"] = "application/json"
    response = httpx.request(method, base + path, content=content, headers=headers)
    assert response.status_code == 200, response.text
    kept = [(k.lower(), v) for k, v in response.headers.raw if k.lower() not in _NOT_COMPARED]
    return response.content, kept


@pytest.mark.parametrize("name", list(ENDPOINTS))
def test_every_mock_endpoint_is_byte_for_byte_the_same_through_the_proxy(
    proxy: RunningProxy, mock_url: str, name: str
) -> None:
    """Body bytes and headers (but Date and hop-by-hop ones) are identical direct and
    proxied, for every endpoint the mock serves; a stream the proxy asked usage for on
    the client's behalf included (no usage chunk, no "usage":null)."""
    direct_body, direct_headers = _fetch(mock_url + "/v1", name)
    proxied_body, proxied_headers = _fetch(proxy.base_url, name)
    assert proxied_body == direct_body
    assert proxied_headers == direct_headers
    (event,) = proxy.wait_for(1)
    assert event.outcome == "success"
    assert event.stream is name.endswith(("stream", "stream-usage"))
    if name.startswith("chat-stream"):
        assert event.token_source == "upstream"
