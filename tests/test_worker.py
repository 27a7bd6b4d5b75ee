"""The accounting child: what crosses the pipe, and what happens when the child dies."""

from __future__ import annotations

import os
import signal

import openai
from conftest import CHILD_ACCOUNTING, start_proxy, wait_until

from pulse_proxy.records import Capture, Codec
from tests.factories import make_exchange


def test_captures_cross_with_their_bodies_apart_and_come_back_whole() -> None:
    """Bodies travel as raw bytes behind the pickled fields; cut back out, every capture
    is what it was, empty bodies and chunk lists included."""
    captures = [
        Capture(
            make_exchange(request_id="a"),
            b'{"model":"gpt-4o"}',
            [b"data: 1\n\n", b"", b"data: [DONE]\n\n"],
            captured_bytes=23,
            response_content_type="text/event-stream",
            usage_injected=True,
            api_key="sk-test",
            tags_header="team=a",
        ),
        Capture(make_exchange(request_id="b", method="GET")),  # no body, no response
        Capture(
            make_exchange(request_id="c"),
            b"\x00\xff" * 1000,
            [b"\x1f\x8b" + bytes(range(256))],
            truncated=True,
            response_content_encoding="gzip",
        ),
    ]
    packed, sizes, bodies = Codec.pack_captures(captures)
    assert sum(sizes) == sum(len(body) for body in bodies)
    assert all(isinstance(body, bytes) for body in bodies)
    assert Codec.unpack_captures(packed, sizes, b"".join(bodies)) == captures


def test_a_killed_accounting_child_is_replaced_and_its_batches_accounted_once(
    mock_url: str,
) -> None:
    """Batches sent to a child that dies are sent again to its successor: every request
    still yields exactly one event with the upstream's usage, and later ones go on."""
    with start_proxy(mock_url + "/v1", CHILD_ACCOUNTING) as proxy:
        worker = proxy.app.dispatcher.worker
        assert worker is not None
        first = worker._process
        client = openai.OpenAI(base_url=proxy.base_url, api_key="sk-test", max_retries=0)
        os.kill(first.pid, signal.SIGSTOP)  # batches now wait, sent and unanswered
        try:
            for _ in range(4):
                client.chat.completions.create(
                    model="gpt-4o", messages=[{"role": "user", "content": "Say hello"}]
                )
            wait_until(lambda: len(worker._pending) >= 1)
            assert proxy.exchanges == []
        finally:
            os.kill(first.pid, signal.SIGKILL)
        accounted = proxy.wait_for(4)
        assert worker.restarts == 1 and worker._process.pid != first.pid
        stream = client.chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": "Say hello"}], stream=True
        )
        assert [chunk.choices for chunk in stream][-1] != []  # the usage chunk stays hidden
        events = proxy.wait_for(5)
        assert events[:4] == accounted
        assert len({event.request_id for event in events}) == 5
        assert all(
            event.outcome == "success" and event.token_source == "upstream" for event in events
        )
        assert all(event.prompt_tokens == event.prompt_tokens_local for event in events)
        assert "pulse.accounting_worker_restarted" in [line["event"] for line in proxy.log_lines()]
