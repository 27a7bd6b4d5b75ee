"""Readiness changes are logged once each, with their reason; probes are not."""

from __future__ import annotations

import time

import httpx
from conftest import RunningProxy, free_port, run_server, start_proxy, wait_until


def _readiness_lines(proxy: RunningProxy) -> list[tuple[str, bool, str]]:
    return [
        (line["level"], line["ready"], line["reason"])
        for line in proxy.log_lines()
        if line["event"] == "pulse.readiness"
    ]


def _ready_is(proxy: RunningProxy, status: int) -> bool:
    return httpx.get(proxy.url + "/readyz").status_code == status


def test_each_readiness_change_logs_one_line() -> None:
    """Against a dead port, then an upstream started on it, then stopped again: one
    pulse.readiness line per change of /readyz's answer, however many probes ran."""
    from mock_upstream.app import create_app

    port = free_port()
    # A probe can also time out (a loaded machine, or a pooled connection being
    # closed): the cause may vary, the address and the flip may not.
    unreachable = f"upstream unreachable: 127.0.0.1:{port} ("
    with start_proxy(
        f"http://127.0.0.1:{port}/v1", {"upstream": {"probe_interval_s": 0.2}}
    ) as proxy:
        wait_until(lambda: _ready_is(proxy, 503) and _readiness_lines(proxy))
        time.sleep(1)  # about five more probes, each with the same verdict
        assert _ready_is(proxy, 503)
        (down,) = _readiness_lines(proxy)
        assert down[:2] == ("warning", False) and down[2].startswith(unreachable)
        with run_server(create_app(), port=port):
            wait_until(lambda: _ready_is(proxy, 200))
            time.sleep(1)
            assert _readiness_lines(proxy) == [down, ("info", True, "upstream answered 200")]
        wait_until(lambda: _ready_is(proxy, 503))
        time.sleep(1)
        *before, again = _readiness_lines(proxy)
        assert len(before) == 2
        assert again[:2] == ("warning", False) and again[2].startswith(unreachable)
