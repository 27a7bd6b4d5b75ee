"""A request path can never choose the upstream's host nor leave its base path.

Every case runs against a real proxy in front of a recording upstream, in both forms
of upstream URL (no path, and a path prefix), while a canary listener on another
loopback address records any connection the proxy makes to it: there must be none.
Requests are sent with ``http.client``, which puts the path on the request line
exactly as written (httpx would normalise it first).
"""

from __future__ import annotations

import http.client
import json
import socket
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import httpx
import orjson
import pytest
from conftest import Recorder, RunningProxy, SocketServer, start_proxy, wait_until

PREFIX = "/tenant-a/v1"


class Canary(SocketServer):
    """A listener on 127.0.0.2 that records every connection and answers 200: the
    proxy must never reach it, whatever the request path says."""

    def __init__(self) -> None:
        self.connections: list[bytes] = []
        super().__init__(self._record, host="127.0.0.2")

    def _record(self, conn: socket.socket) -> None:
        conn.settimeout(2)
        try:
            self.connections.append(conn.recv(65536))
            conn.sendall(
                b"HTTP/1.1 200 OK\r\ncontent-length: 15\r\nconnection: close\r\n\r\ninternal secret"
            )
        except OSError:
            self.connections.append(b"")


@pytest.fixture(scope="module")
def canary() -> Iterator[Canary]:
    listener = Canary()
    yield listener
    listener.close()


@pytest.fixture(scope="module", params=["bare", "prefixed"])
def form(
    request: pytest.FixtureRequest, recorder: tuple[Recorder, str]
) -> Iterator[tuple[str, RunningProxy]]:
    """A proxy whose upstream URL has no path, or the path prefix ``/tenant-a/v1``
    (with an operator key injected, which must only ever go below that prefix)."""
    _, url = recorder
    if request.param == "bare":
        with start_proxy(url) as proxy:
            yield "", proxy
    else:
        with start_proxy(url + PREFIX, {"upstream": {"api_key": "sk-operator-key"}}) as proxy:
            yield PREFIX, proxy


def raw_request(base_url: str, method: str, path: str, request_id: str) -> tuple[int, bytes]:
    """Send ``path`` on the request line byte for byte."""
    parts = urlsplit(base_url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    try:
        conn.request(method, path, headers={"X-Request-ID": request_id})
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def events_for(proxy: RunningProxy, request_id: str) -> list[Any]:
    wait_until(lambda: any(e.request_id == request_id for e in proxy.sink.exchanges))
    time.sleep(0.1)  # a second event for the same request would have arrived by now
    return [e for e in proxy.sink.exchanges if e.request_id == request_id]


REFUSED = [
    ("GET", "/v1/../../tenant-b/v1/models"),
    ("GET", "/v1/models/../../../tenant-b/v1/models"),
    ("GET", "/v1/%2e%2e/%2e%2e/tenant-b/v1/models"),
    ("GET", "/v1/%2E%2e/x"),
    ("GET", "/v1/..%2f..%2ftenant-b/v1/models"),
    ("GET", "/v1/.."),
    ("DELETE", "/v1%2f@127.0.0.2:{canary}/internal/secret"),
    ("POST", "/v1%2F%2F127.0.0.2:{canary}/x"),
    ("GET", "/v1/@127.0.0.2:{canary}/x"),
    ("GET", "/v1/models/a%40127.0.0.2:{canary}"),
    ("GET", "/v1/..\\..\\tenant-b\\v1\\models"),
    ("GET", "/v1/%5c..%5Ctenant-b/models"),
    ("GET", "/v1/files/a%2Fb"),
]


@pytest.mark.parametrize(("method", "path"), REFUSED, ids=[p for _, p in REFUSED])
def test_path_leaving_v1_or_naming_a_host_is_refused(
    form: tuple[str, RunningProxy],
    recorder: tuple[Recorder, str],
    canary: Canary,
    method: str,
    path: str,
) -> None:
    """400 invalid_path in OpenAI's shape, one `rejected` event, nothing upstream and
    nothing at the canary host, with either form of upstream URL."""
    prefix, proxy = form
    seen, _ = recorder
    request_id = f"refused-{len(proxy.sink.exchanges)}-{'p' if prefix else 'b'}"
    contacted = len(canary.connections)
    status, body = raw_request(proxy.url, method, path.format(canary=canary.port), request_id)
    assert status == 400, body
    error = orjson.loads(body)["error"]
    assert error["code"] == "invalid_path" and error["type"] == "invalid_request_error"
    (event,) = events_for(proxy, request_id)
    assert (event.outcome, event.status_code, event.error_type) == ("rejected", 400, "invalid_path")
    assert seen.for_request(request_id) == []
    assert len(canary.connections) == contacted


ACCEPTED = [
    ("/v1/models", "/models", ""),
    ("/v1/./models", "/models", ""),
    ("/v1/chat/./completions?x=%2Fa%20b&k&y=%2e%2e", "/chat/completions", "x=%2Fa%20b&k&y=%2e%2e"),
    ("/v1/models/%2e/gpt-4o", "/models/gpt-4o", ""),
    ("/v1/files/a%20b/../c%41%7E", "/files/c%41%7E", ""),
    ("/v1/models/gpt-4o/%2E%2E", "/models/", ""),
    ("/v1/.well-known/x", "/.well-known/x", ""),
]


@pytest.mark.parametrize(
    ("path", "upstream_path", "query"), ACCEPTED, ids=[p for p, _, _ in ACCEPTED]
)
def test_paths_that_stay_below_v1_reach_the_configured_base_normalised(
    form: tuple[str, RunningProxy],
    recorder: tuple[Recorder, str],
    canary: Canary,
    path: str,
    upstream_path: str,
    query: str,
) -> None:
    """Dot segments inside /v1 are resolved; every other percent-encoding, and the
    query, reach the upstream's request line exactly as the client sent them."""
    prefix, proxy = form
    seen, _ = recorder
    request_id = f"accepted-{len(proxy.sink.exchanges)}-{'p' if prefix else 'b'}"
    contacted = len(canary.connections)
    status, _ = raw_request(proxy.url, "GET", path, request_id)
    assert status == 200
    (upstream,) = seen.for_request(request_id)
    assert upstream["raw_path"] == prefix + upstream_path
    assert upstream["query"] == query
    (event,) = events_for(proxy, request_id)
    assert event.outcome == "success" and event.path == "/v1" + upstream_path
    if prefix:
        assert dict(upstream["headers"])["authorization"] == "Bearer sk-operator-key"
    assert len(canary.connections) == contacted


def test_the_operator_key_only_ever_went_below_the_configured_base(
    form: tuple[str, RunningProxy], recorder: tuple[Recorder, str], canary: Canary
) -> None:
    """After all the cases above: every request the upstream saw stayed below the base,
    and the canary host was never contacted."""
    seen, _ = recorder
    assert canary.connections == []
    for upstream in seen.seen:
        if dict(upstream["headers"]).get("authorization") == "Bearer sk-operator-key":
            assert upstream["raw_path"].startswith(PREFIX + "/"), upstream["raw_path"]


class _BrokenSession:
    """Stands in for the upstream client and fails in a way nobody anticipated."""

    def request(self, *args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("unexpected failure holding sk-must-not-leak")


def test_unexpected_exception_before_the_answer_gives_500_and_a_failed_event(mock_url: str) -> None:
    """No bare 500 recorded as a success: the client reads an OpenAI-shaped error and
    the event has a status and an outcome that counts as a failure."""
    with start_proxy(mock_url + "/v1") as proxy:
        primary = proxy.app.upstreams.primary
        real, primary._session = primary._session, _BrokenSession()
        try:
            response = httpx.get(proxy.base_url + "/models", headers={"X-Request-ID": "boom-1"})
        finally:
            primary._session = real  # closed with the app, as it was opened
        assert response.status_code == 500
        error = response.json()["error"]
        assert error["code"] == "internal_error" and "RuntimeError" in error["message"]
        assert "sk-must-not-leak" not in response.text
        (event,) = proxy.wait_for(1)
        assert (event.status_code, event.outcome, event.error_type) == (
            500,
            "upstream_error",
            "internal_error",
        )
        assert "sk-must-not-leak" not in json.dumps(event.to_event())


def test_unexpected_exception_mid_response_cuts_the_client_and_fails_the_event(
    mock_url: str,
) -> None:
    """Once the status line is out, the only honest signal is an incomplete body."""
    with start_proxy(mock_url + "/v1") as proxy:
        proxy.app.forwarder._capture_limit = None  # the first kept chunk raises TypeError
        with pytest.raises(httpx.HTTPError):
            httpx.get(proxy.base_url + "/models", headers={"X-Request-ID": "boom-2"}).read()
        (event,) = proxy.wait_for(1)
        assert (event.status_code, event.outcome, event.error_type) == (
            200,
            "upstream_error",
            "internal_error",
        )
