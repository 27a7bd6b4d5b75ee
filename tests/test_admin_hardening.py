"""Small hardening of the admin surface and of what clients and upstreams put in events,
each through a real proxy on loopback (or the real ``pulse-proxy report`` process)."""

from __future__ import annotations

import contextlib
import re
import socket
import subprocess
import sys
from collections.abc import Iterator

import httpx
import orjson
import pytest
from conftest import SocketServer, clean_env, start_proxy

CHAT = {"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}
_TERMINAL_CONTROL = re.compile(r"[\x00-\x09\x0b-\x1f\x7f-\x9f]")  # everything but \n


def raw_request(url: str, request: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send ``request`` as is over a socket; the status, headers and body of the answer."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(request)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines)}
    return int(status_line.split()[1]), headers, body


@pytest.mark.parametrize("path", ["/metrics/", "/pulse/stats/", "/pulse/alerts/", "/healthz/"])
def test_trailing_slash_is_not_redirected_to_the_clients_host(mock_url: str, path: str) -> None:
    """An admin path with a trailing slash is a 404 in OpenAI's shape, never a redirect
    whose Location comes from a Host header the client chose."""
    with start_proxy(mock_url + "/v1") as proxy:
        request = f"GET {path} HTTP/1.1\r\nHost: evil.example\r\nConnection: close\r\n\r\n".encode()
        status, headers, body = raw_request(proxy.url, request)
    assert status == 404, (status, headers)
    assert "location" not in headers
    error = orjson.loads(body)["error"]
    assert error["code"] == "not_found" and set(error) == {"message", "type", "param", "code"}


def test_admin_token_scheme_is_case_insensitive(mock_url: str) -> None:
    """``bearer``/``BEARER`` work like ``Bearer`` (RFC 9110); the token itself must still match."""
    token = "s3cret-admin"
    with start_proxy(mock_url + "/v1", {"server": {"admin_token": token}}) as proxy:

        def status(authorization: str | None) -> int:
            headers = {"Authorization": authorization} if authorization is not None else {}
            return httpx.get(proxy.url + "/pulse/stats", headers=headers).status_code

        assert status(f"bearer {token}") == 200
        assert status(f"BEARER {token}") == 200
        assert status(f"Bearer  {token}") == 200
        assert status(f"Bearer {token}") == 200
        assert status(f"bearer {token.upper()}") == 401
        assert status(f"Basic {token}") == 401
        assert status(token) == 401
        assert status(f"Bearer {token}x") == 401
        assert status(None) == 401


def test_utf8_user_and_tags_are_decoded_as_utf8(mock_url: str) -> None:
    """``X-Pulse-User: josé`` sent as UTF-8 bytes is josé in the event and the breakdown;
    bytes that are not UTF-8 are read as latin-1 rather than garbled."""
    with start_proxy(mock_url + "/v1") as proxy, httpx.Client() as client:
        utf8 = [
            (b"X-Pulse-User", "josé".encode()),
            (b"X-Pulse-Tags", "équipe=recherche-ü".encode()),
        ]
        assert client.post(proxy.base_url + "/chat/completions", json=CHAT, headers=utf8).is_success
        latin1 = [(b"X-Pulse-User", "zoë".encode("latin-1"))]
        assert client.post(
            proxy.base_url + "/chat/completions", json=CHAT, headers=latin1
        ).is_success
        first, second = proxy.wait_for(2)
        breakdown = client.get(proxy.url + "/pulse/stats").json()["breakdown"]["5m"]
    assert first.user == "josé"
    assert first.tags == {"équipe": "recherche-ü"}
    assert second.user == "zoë"
    assert {"josé", "zoë"} <= set(breakdown["user"])
    logged = [line for line in proxy.log_lines() if line["event"] == "llm.request"]
    assert {line["user"] for line in logged} == {"josé", "zoë"}


@contextlib.contextmanager
def hostile_upstream(request_id: bytes) -> Iterator[str]:
    """An upstream answering every request 200 with ``X-Request-ID: request_id`` (raw bytes)."""
    body = b'{"object":"list","data":[]}'
    response = (
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nX-Request-ID: "
        + request_id
        + b"\r\nContent-Length: "
        + str(len(body)).encode()
        + b"\r\nConnection: close\r\n\r\n"
        + body
    )

    def answer(conn: socket.socket) -> None:
        conn.recv(65536)
        conn.sendall(response)

    server = SocketServer(answer)
    try:
        yield f"http://127.0.0.1:{server.port}/v1"
    finally:
        server.close()


def test_upstream_request_id_is_escaped_truncated_and_never_loses_the_event() -> None:
    """The upstream's X-Request-ID gets error_message's treatment: control characters
    escaped (here C1's CSI, U+009B, which some terminals obey like ESC [), length capped,
    and bytes that are not UTF-8 replaced so the JSON line is still written.  (C0
    controls cannot be tested this way: uvicorn refuses to relay such a header.)"""
    hostile = b"id-\xc2\x9b2J-\xff-" + b"x" * 500
    with hostile_upstream(hostile) as upstream, start_proxy(upstream) as proxy:
        assert httpx.get(proxy.base_url + "/models").status_code == 200
        (exchange,) = proxy.wait_for(1)
        upstream_id = exchange.upstream_request_id
        assert upstream_id is not None and upstream_id.startswith("id-\\u009b2J-\ufffd-x")
        assert len(upstream_id) <= 128
        assert not _TERMINAL_CONTROL.search(upstream_id)
        logged = [line for line in proxy.log_lines() if line["event"] == "llm.request"]
    assert [line["upstream_request_id"] for line in logged] == [upstream_id]


def test_report_escapes_control_characters_from_forged_lines() -> None:
    """A forged log line cannot send escape sequences to the terminal of whoever runs
    ``pulse-proxy report``: every field it prints is escaped."""
    forged = "\x1b[2J\x1b]0;pwned\x07\x9b31m"
    lines = [
        {
            "event": "llm.request",
            "timestamp": "2026-11-29T03:00:00.000Z",
            "model": f"gpt{forged}",
            "request_id": f"r{forged}",
            "user": forged,
            "outcome": f"success{forged}",
            "latency_ms": 120.0,
            "prompt_tokens": 10,
            "completion_tokens": 5,
            "total_tokens": 15,
            "cost_usd": 0.0001,
        },
        {
            "event": "alert.fired",
            "timestamp": "2026-11-29T03:00:01.000Z",
            "alert": f"a{forged}",
            "severity": forged,
            "metric": forged,
            "stat": forged,
            "value": 1.0,
            "threshold": 0.5,
            "fired_at": "2026-11-29T03:00:01.000Z",
        },
    ]
    env = clean_env()
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pulse_proxy",
            "report",
            "-",
        ],
        input=b"\n".join(orjson.dumps(line) for line in lines),
        capture_output=True,
        env=env,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout.decode()
    assert "gpt\\u001b[2J" in out
    assert not _TERMINAL_CONTROL.search(out), [m.group() for m in _TERMINAL_CONTROL.finditer(out)]
