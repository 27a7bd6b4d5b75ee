"""Clients that never finish their request are cut off, and the cap on connections holds.

Each test runs the real command (``python -m pulse_proxy``) with short limits set
through ``PULSE_SERVER__*`` variables and talks to it over raw sockets, since no HTTP
client can be made to send a request this badly.
"""

from __future__ import annotations

import os
import select
import signal
import socket
import sys
import time
from collections.abc import Iterator

import httpx
import orjson
import pytest
from conftest import JsonLinesProcess, free_port, start_proxy, wait_until

TIMEOUT_S = 1.0
# Generous on purpose: the point is "cut near the limit, not held", on a busy machine.
CUT_WITHIN_S = TIMEOUT_S + 6.0


class SlowProxy(JsonLinesProcess):
    def __init__(self, **server: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {k: v for k, v in os.environ.items() if not k.startswith("PULSE_")}
        env.update({f"PULSE_SERVER__{key.upper()}": value for key, value in server.items()})
        super().__init__([sys.executable, "-m", "pulse_proxy", "--port", str(self.port)], env=env)
        wait_until(lambda: bool(self.events("pulse.started")) or self.process.poll() is not None, timeout=30)
        if self.process.poll() is not None:
            raise RuntimeError(self.read_stderr().decode() or "exited")

    def connect(self) -> socket.socket:
        return socket.create_connection(("127.0.0.1", self.port), timeout=10)

    def stop(self) -> int:
        self.process.send_signal(signal.SIGTERM)
        code, _ = self.wait_exit(timeout=30)
        return code


@pytest.fixture(scope="module")
def slow_proxy() -> Iterator[SlowProxy]:
    """One proxy with one-second limits for the timeout tests (they never hit the cap)."""
    proc = SlowProxy(
        request_header_timeout_s=str(TIMEOUT_S),
        request_body_timeout_s=str(TIMEOUT_S),
        request_body_min_rate="100",
    )
    try:
        yield proc
    finally:
        if proc.process.poll() is None:
            proc.process.kill()
            proc.process.wait()


def _drip(sock: socket.socket, data: bytes, every: float, limit: float) -> tuple[float, bytes]:
    """Send ``data`` one byte per ``every`` seconds until the proxy closes the
    connection; the seconds that took and what the proxy answered (maybe nothing)."""
    started = time.monotonic()
    answer = b""
    position = 0
    while time.monotonic() - started < limit:
        readable, _, _ = select.select([sock], [], [], every)
        if readable:
            try:
                chunk = sock.recv(65536)
            except ConnectionResetError:
                return time.monotonic() - started, answer
            if not chunk:
                return time.monotonic() - started, answer
            answer += chunk
            continue
        try:
            sock.sendall(data[position % len(data) : position % len(data) + 1])
        except (BrokenPipeError, ConnectionResetError):
            return time.monotonic() - started, answer
        position += 1
    raise AssertionError(f"connection still open after {limit} s")


def _assert_408_or_nothing(answer: bytes) -> None:
    if answer:
        head, _, body = answer.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 408 "), head
        assert b"connection: close" in head.lower()
        assert orjson.loads(body)["error"]["code"] == "request_timeout"


def _chat_works(proxy: SlowProxy) -> None:
    response = httpx.post(
        proxy.url + "/v1/chat/completions",
        json={"model": "gpt-4o", "messages": [{"role": "user", "content": "still there?"}]},
        timeout=30,
    )
    assert response.status_code == 200, response.text


def _timeout_events(proxy: SlowProxy) -> list[dict]:
    return [e for e in proxy.events("llm.request") if e["error_type"] == "client_timeout"]


def test_headers_sent_one_byte_at_a_time_are_cut_at_the_header_timeout(slow_proxy: SlowProxy) -> None:
    """A request whose headers trickle in is answered 408 (or closed) near the header timeout, while others are served."""
    request = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: " + b"a" * 200 + b"\r\n\r\n"
    with slow_proxy.connect() as sock:
        sock.sendall(request[:5])
        _chat_works(slow_proxy)
        elapsed, answer = _drip(sock, request[5:], every=0.3, limit=CUT_WITHIN_S)
    _assert_408_or_nothing(answer)
    assert elapsed < CUT_WITHIN_S


def test_many_connections_that_send_nothing_are_closed(slow_proxy: SlowProxy) -> None:
    """Connections that never send a byte are closed at the header timeout, without an answer."""
    socks = [slow_proxy.connect() for _ in range(30)]
    try:
        _chat_works(slow_proxy)
        started = time.monotonic()
        for sock in socks:
            sock.settimeout(max(CUT_WITHIN_S - (time.monotonic() - started), 0.1))
            assert sock.recv(100) == b""
    finally:
        for sock in socks:
            sock.close()


def test_a_body_that_pauses_is_cut_and_recorded(slow_proxy: SlowProxy) -> None:
    """A body sent one byte every two seconds is cut after the body timeout, 408, recorded as a client timeout."""
    head = (
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        b"Content-Length: 1000\r\nX-Request-ID: slow-body-1\r\n\r\n{"
    )
    with slow_proxy.connect() as sock:
        sock.sendall(head)
        _chat_works(slow_proxy)
        elapsed, answer = _drip(sock, b" " * 999, every=2.0, limit=CUT_WITHIN_S)
    _assert_408_or_nothing(answer)
    assert elapsed < CUT_WITHIN_S
    wait_until(lambda: any(e["request_id"] == "slow-body-1" for e in _timeout_events(slow_proxy)))
    (event,) = [e for e in slow_proxy.events("llm.request") if e["request_id"] == "slow-body-1"]
    assert event["outcome"] == "client_disconnected" and event["status_code"] == 408
    assert event["bytes_in"] >= 1


def test_a_chunked_body_that_never_ends_is_cut(slow_proxy: SlowProxy) -> None:
    """A chunked body that stops sending before its last chunk is cut after the body timeout."""
    head = (
        b"POST /v1/embeddings HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n"
        b"X-Request-ID: endless-chunks-1\r\n\r\n5\r\nhello\r\n"
    )
    with slow_proxy.connect() as sock:
        sock.sendall(head)
        sock.settimeout(CUT_WITHIN_S)
        started = time.monotonic()
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
        elapsed = time.monotonic() - started
    _assert_408_or_nothing(answer)
    assert answer, "nothing was sent after the body started, so the 408 must arrive"
    assert elapsed < CUT_WITHIN_S
    wait_until(lambda: any(e["request_id"] == "endless-chunks-1" for e in _timeout_events(slow_proxy)))


def test_a_body_that_keeps_dripping_is_cut_by_the_minimum_rate(slow_proxy: SlowProxy) -> None:
    """A chunked body that never pauses long but averages a few bytes a second is cut by the minimum rate."""
    head = (
        b"POST /v1/embeddings HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n"
        b"X-Request-ID: drip-rate-1\r\n\r\n"
    )
    with slow_proxy.connect() as sock:
        sock.sendall(head)
        started = time.monotonic()
        answer = b""
        while time.monotonic() - started < CUT_WITHIN_S and not answer:
            readable, _, _ = select.select([sock], [], [], 0.2)
            if readable:
                answer = sock.recv(65536) or b"closed"
            else:
                sock.sendall(b"1\r\na\r\n")
        elapsed = time.monotonic() - started
    assert answer.startswith(b"HTTP/1.1 408 "), answer[:100]
    assert elapsed < CUT_WITHIN_S
    wait_until(lambda: any(e["request_id"] == "drip-rate-1" for e in _timeout_events(slow_proxy)))


def test_past_max_connections_new_connections_get_503_until_others_close() -> None:
    """Past server.max_connections a new connection is answered 503 in OpenAI's shape and closed; once others close, requests work again."""
    proxy = SlowProxy(max_connections="20", request_header_timeout_s="30")
    socks: list[socket.socket] = []
    try:
        socks = [proxy.connect() for _ in range(25)]
        time.sleep(0.5)  # let the proxy accept them all, in order
        for sock in socks:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        answers = []
        for sock in socks:
            answer = b""
            while b"\r\n\r\n" not in answer or not answer.rstrip().endswith(b"}"):
                chunk = sock.recv(65536)
                if not chunk:
                    break
                answer += chunk
            answers.append(answer)
        refused = [a for a in answers if a.startswith(b"HTTP/1.1 503 ")]
        served = [a for a in answers if a.startswith(b"HTTP/1.1 200 ")]
        assert len(refused) == 5 and len(served) == 20, [a[:20] for a in answers]
        head, _, body = refused[0].partition(b"\r\n\r\n")
        assert b"connection: close" in head.lower()
        assert orjson.loads(body)["error"]["code"] == "too_many_connections"
        for sock in socks:
            sock.close()
        socks = []
        wait_until(lambda: httpx.get(proxy.url + "/healthz").status_code == 200)
        _chat_works(proxy)
        assert proxy.stop() == 0
    finally:
        for sock in socks:
            sock.close()
        if proxy.process.poll() is None:
            proxy.process.kill()
            proxy.process.wait()


def _read_until_closed(sock: socket.socket, limit: float) -> tuple[float, bytes]:
    sock.settimeout(limit)
    started = time.monotonic()
    answer = b""
    while chunk := sock.recv(65536):
        answer += chunk
    return time.monotonic() - started, answer


SHORT_LIMITS = {"server": {"request_header_timeout_s": TIMEOUT_S, "request_body_timeout_s": TIMEOUT_S}}


def test_the_tests_in_process_server_applies_the_limits_too(mock_url: str) -> None:
    """start_proxy serves with the guarded protocol: a stalled body becomes one exchange, a client timeout with 408."""
    with start_proxy(mock_url + "/v1", SHORT_LIMITS) as running, socket.create_connection(
        ("127.0.0.1", int(running.url.rsplit(":", 1)[1])), timeout=10
    ) as sock:
        sock.sendall(b"POST /v1/embeddings HTTP/1.1\r\nHost: x\r\nContent-Length: 50\r\n\r\n{")
        elapsed, answer = _read_until_closed(sock, CUT_WITHIN_S)
        assert answer.startswith(b"HTTP/1.1 408 ") and elapsed < CUT_WITHIN_S
        (exchange,) = running.wait_for(1)
    assert (exchange.outcome, exchange.error_type, exchange.status_code) == ("client_disconnected", "client_timeout", 408)


def test_a_response_in_flight_survives_the_next_requests_slow_headers(mock_url: str) -> None:
    """Headers of a pipelined request stalling while the previous answer is still pending: that answer completes, then the connection closes."""
    with start_proxy(mock_url + "/v1", SHORT_LIMITS) as running, socket.create_connection(
        ("127.0.0.1", int(running.url.rsplit(":", 1)[1])), timeout=10
    ) as sock:
        sock.sendall(b"GET /v1/models HTTP/1.1\r\nHost: x\r\nX-Mock-Latency-Ms: 2500\r\n\r\nGET /v1/mo")
        _, answer = _read_until_closed(sock, 2.5 + CUT_WITHIN_S)
        (exchange,) = running.wait_for(1)
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 ") and b"connection: close" in head.lower()
    assert orjson.loads(body)["object"] == "list"
    assert exchange.outcome == "success"


def test_sigterm_still_stops_the_proxy_cleanly(slow_proxy: SlowProxy) -> None:
    """SIGTERM with the guarded protocol still exits cleanly; runs last, as it stops the shared proxy."""
    _chat_works(slow_proxy)
    assert slow_proxy.stop() == 0
    assert slow_proxy.lines[-1]["event"] == "pulse.stopped"
