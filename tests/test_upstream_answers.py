"""Upstream answers reach the client faithfully, or as a 502 that says why they cannot.

Raw-socket upstreams here send what no well-behaved server would (control characters
in headers, an SSE body with no event separators) and record the exact request head
the proxy sent; the bundled mock is the reference for byte-for-byte comparisons.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator

import httpx
import pytest

from conftest import start_proxy

CHAT = {"model": "gpt-4o", "messages": [{"role": "user", "content": "Say hello"}]}


class RawUpstream:
    """A loopback HTTP/1.1 server made of a socket: each connection gets ``answer``
    (called with the raw request head) and is closed; request heads are recorded."""

    def __init__(self, answer: object) -> None:
        self._answer = answer
        self.heads: list[bytes] = []
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}/v1"
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._one, args=(conn,), daemon=True).start()

    def _one(self, conn: socket.socket) -> None:
        with conn:
            data = b""
            while b"\r\n\r\n" not in data:
                part = conn.recv(65536)
                if not part:
                    return
                data += part
            head = data.split(b"\r\n\r\n", 1)[0]
            self.heads.append(head)
            try:
                self._answer(conn, head)  # type: ignore[operator]
            except OSError:
                pass

    def close(self) -> None:
        self.sock.close()


@contextlib.contextmanager
def raw_upstream(answer: object) -> Iterator[RawUpstream]:
    upstream = RawUpstream(answer)
    try:
        yield upstream
    finally:
        upstream.close()


def fixed_answer(head_lines: bytes, body: bytes) -> object:
    def answer(conn: socket.socket, _: bytes) -> None:
        conn.sendall(
            b"HTTP/1.1 200 OK\r\n" + head_lines
            + b"Content-Length: %d\r\nConnection: close\r\n\r\n" % len(body) + body
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
            502, "upstream_error", "upstream_bad_response",
        )
        assert event.stream is False
