"""A proxy whose upstream leads back to itself answers 508 once instead of fanning out.

The looping proxies here are real servers on sockets bound before the app is built,
so each app's upstream URL can name its own (or its peer's) port.
"""

from __future__ import annotations

import io
import socket
import subprocess
import sys
import time
from typing import Any

import httpx
import pytest
from conftest import Recorder, clean_env, free_port, run_server, start_proxy, wait_until

from pulse_proxy.app import UVICORN_OPTIONS, PulseApp, create_app
from pulse_proxy.proxy.urls import UpstreamBase, points_at_self
from pulse_proxy.settings import build_settings
from pulse_proxy.sinks import ListSink

# A loop that is not stopped exhausts a small pool and then times out in seconds,
# so that on code without loop detection these tests fail instead of hanging.
BOUNDED = {
    "max_connections": 20,
    "connect_timeout_s": 3,
    "read_timeout_s": 10,
    "probe_interval_s": 3600,
}


def bound_socket() -> socket.socket:
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    # Listening already: a probe that starts before uvicorn serves waits in the backlog.
    sock.listen(100)
    return sock


def looping_app(upstream_port: int) -> tuple[PulseApp, ListSink]:
    settings = build_settings(
        {"upstream": {"url": f"http://127.0.0.1:{upstream_port}/v1", **BOUNDED}}
    )
    sink = ListSink()
    return create_app(settings, sinks=[sink], log_stream=io.BytesIO()), sink


def settle(sinks: list[ListSink], expected: list[int], quiet: float = 1.0) -> None:
    """Wait for ``expected`` events in each sink, then until none arrives for
    ``quiet`` seconds: a loop that was not stopped keeps adding events."""

    def counts() -> list[int]:
        return [len(sink.exchanges) for sink in sinks]

    wait_until(lambda: all(n >= e for n, e in zip(counts(), expected, strict=True)), timeout=30)
    last = counts()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        time.sleep(quiet)
        now = counts()
        if now == last:
            return
        last = now
    raise AssertionError(f"events still arriving: {last}")


def by_id(sink: ListSink, request_id: str) -> list[Any]:
    return [e for e in sink.exchanges if e.request_id == request_id]


def test_upstream_request_carries_via_after_the_clients_own(recorder: tuple[Recorder, str]) -> None:
    """RFC 9110 §7.6.3: the client's Via entries are kept, ours is appended."""
    seen, url = recorder
    with start_proxy(url + "/v1") as proxy:
        httpx.get(
            proxy.base_url + "/models", headers={"X-Request-ID": "via-1", "Via": "1.0 corp-gw"}
        )
        httpx.get(proxy.base_url + "/models", headers={"X-Request-ID": "via-2"})
        ours = f"1.1 {proxy.app.identity}"
        (first,) = seen.for_request("via-1")
        assert [v for k, v in first["headers"] if k == "via"] == [f"1.0 corp-gw, {ours}"]
        (second,) = seen.for_request("via-2")
        assert [v for k, v in second["headers"] if k == "via"] == [ours]
        assert proxy.app.identity.startswith("pulse-")


def test_proxy_whose_upstream_is_itself_answers_508_once() -> None:
    """One request: one forward to itself, one 508 loop_detected, two events, no fan-out;
    the readiness probe's own request stops at the first return too."""
    sock = bound_socket()
    app, sink = looping_app(sock.getsockname()[1])
    with run_server(app, sock=sock, **UVICORN_OPTIONS) as url:
        wait_until(lambda: app.readiness.reason != "upstream not probed yet", timeout=30)
        # The probe: one request that came back once (one event), reported as a loop.
        settle([sink], [1])
        assert len(sink.exchanges) == 1
        response = httpx.get(
            url + "/v1/models", headers={"X-Request-ID": "self-loop-1"}, timeout=30
        )
        assert response.status_code == 508
        assert response.json()["error"]["code"] == "loop_detected"
        settle([sink], [3])
        events = by_id(sink, "self-loop-1")
        assert sorted((e.status_code, e.outcome) for e in events) == [
            (508, "rejected"),
            (508, "upstream_error"),
        ]
        assert len(sink.exchanges) == 3
        ready = httpx.get(url + "/readyz")
        assert ready.status_code == 503 and "loop" in ready.json()["reason"]


def test_two_proxies_pointing_at_each_other_stop_after_one_round() -> None:
    """A → B → A: A recognises its own Via entry, answers 508, and that answer
    travels back through B to the client.  One event per hop: A two, B one."""
    sock_a, sock_b = bound_socket(), bound_socket()
    app_a, sink_a = looping_app(sock_b.getsockname()[1])
    app_b, sink_b = looping_app(sock_a.getsockname()[1])
    with (
        run_server(app_a, sock=sock_a, **UVICORN_OPTIONS) as url_a,
        run_server(app_b, sock=sock_b, **UVICORN_OPTIONS),
    ):
        for app in (app_a, app_b):
            wait_until(
                lambda app=app: app.readiness.reason != "upstream not probed yet", timeout=30
            )
        settle([sink_a, sink_b], [2, 2])
        # Each probe went round once: one event on each proxy per probe.
        assert (len(sink_a.exchanges), len(sink_b.exchanges)) == (2, 2)
        response = httpx.post(
            url_a + "/v1/chat/completions",
            json={"model": "gpt-4o", "messages": []},
            headers={"X-Request-ID": "ring-1"},
            timeout=30,
        )
        assert response.status_code == 508
        assert response.json()["error"]["code"] == "loop_detected"
        settle([sink_a, sink_b], [4, 3])
        assert sorted((e.status_code, e.outcome) for e in by_id(sink_a, "ring-1")) == [
            (508, "rejected"),
            (508, "upstream_error"),
        ]
        assert [(e.status_code, e.outcome) for e in by_id(sink_b, "ring-1")] == [
            (508, "upstream_error")
        ]
        assert (len(sink_a.exchanges), len(sink_b.exchanges)) == (4, 3)
        for app in (app_a, app_b):
            assert not app.readiness.ready and "loop" in app.readiness.reason


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
def test_serve_refuses_its_own_address_as_upstream(host: str) -> None:
    port = free_port()
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pulse_proxy",
            "--port",
            str(port),
            "--upstream",
            f"http://{host}:{port}/v1",
        ],
        env=clean_env(),
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    message = result.stderr.decode()
    assert "own listening address" in message and f"{host}:{port}" in message
    assert result.stdout == b""  # refused before serving anything


def test_self_detection_compares_address_and_port() -> None:
    port = free_port()
    upstream = UpstreamBase(f"http://127.0.0.2:{port}/v1")
    assert points_at_self(upstream, "0.0.0.0", port)  # a wildcard listener owns 127.0.0.2 too
    assert not points_at_self(upstream, "127.0.0.1", port)  # another loopback address
    assert not points_at_self(UpstreamBase(f"http://127.0.0.1:{port + 1}/v1"), "127.0.0.1", port)
    assert points_at_self(UpstreamBase(f"http://localhost:{port}"), "127.0.0.1", port)
    assert not points_at_self(UpstreamBase("https://api.openai.com/v1"), "0.0.0.0", 8080)
