"""The proxy is transparent: bytes, headers and streams reach each side as sent."""

from __future__ import annotations

import gzip
import hashlib
import socket
import threading
from collections.abc import Iterator

import httpx
import orjson
import pytest
from conftest import RunningProxy, run_server, start_proxy, wait_until
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

CHAT = {"model": "gpt-4o", "messages": [{"role": "user", "content": "Say hello"}]}


def mock_request(mock_url: str, request_id: str) -> dict:
    """What the mock recorded for one request."""
    wait_until(lambda: httpx.get(f"{mock_url}/_mock/requests/{request_id}").status_code == 200)
    return httpx.get(f"{mock_url}/_mock/requests/{request_id}").json()


def header_values(recorded: dict, name: str) -> list[str]:
    return [v for k, v in recorded["headers"] if k.lower() == name]


def test_request_reaches_upstream_byte_for_byte(proxy: RunningProxy, mock_url: str) -> None:
    """Method, path, query, body bytes and end-to-end headers arrive unchanged; hop-by-hop and Pulse's own headers do not."""
    body = b'{"model": "gpt-4o",  "messages": [{"role":"user","content":"hi"}], "model": "gpt-4o"}'
    response = httpx.post(
        proxy.base_url + "/chat/completions?api-version=2024-10-21&x=%2Fa%20b",
        content=body,
        headers={
            "Content-Type": "application/json",
            "X-Request-ID": "fwd-bytes-1",
            "OpenAI-Organization": "org-123",
            "Connection": "keep-alive, X-Hop-Only",
            "X-Hop-Only": "must-not-pass",
            "Keep-Alive": "timeout=5",
            "X-Pulse-User": "alice",
            "X-Pulse-Tags": "team=search",
            "Authorization": "Bearer sk-client-key",
        },
    )
    assert response.status_code == 200
    seen = mock_request(mock_url, "fwd-bytes-1")
    assert seen["method"] == "POST"
    assert seen["path"] == "/v1/chat/completions"
    assert seen["query"] == "api-version=2024-10-21&x=%2Fa%20b"
    assert seen["body_sha256"] == hashlib.sha256(body).hexdigest()
    assert header_values(seen, "openai-organization") == ["org-123"]
    assert header_values(seen, "authorization") == ["Bearer sk-client-key"]
    for hop in ("x-hop-only", "keep-alive", "x-pulse-user", "x-pulse-tags"):
        assert header_values(seen, hop) == [], hop
    assert header_values(seen, "host") == [mock_url.removeprefix("http://")]
    (event,) = proxy.wait_for(1)
    assert event.user == "alice" and event.tags == {"team": "search"}
    assert event.api_key_hash and "sk-client-key" not in orjson.dumps(event.to_event()).decode()


def test_configured_key_is_injected_only_when_client_sends_none(mock_url: str) -> None:
    """PULSE_UPSTREAM_API_KEY fills in a missing Authorization but never replaces one."""
    with start_proxy(mock_url + "/v1", {"upstream": {"api_key": "sk-operator"}}) as proxy:
        httpx.post(
            proxy.base_url + "/chat/completions", json=CHAT, headers={"X-Request-ID": "inject-1"}
        )
        httpx.post(
            proxy.base_url + "/chat/completions",
            json=CHAT,
            headers={"X-Request-ID": "inject-2", "Authorization": "Bearer sk-own"},
        )
        httpx.post(
            proxy.base_url + "/chat/completions",
            json=CHAT,
            headers={"X-Request-ID": "inject-3", "Authorization": ""},
        )
        assert header_values(mock_request(mock_url, "inject-1"), "authorization") == [
            "Bearer sk-operator"
        ]
        assert header_values(mock_request(mock_url, "inject-2"), "authorization") == [
            "Bearer sk-own"
        ]
        # An empty header counts as none, and is replaced rather than sent alongside.
        assert header_values(mock_request(mock_url, "inject-3"), "authorization") == [
            "Bearer sk-operator"
        ]
        proxy.wait_for(3)


def test_response_is_identical_to_a_direct_call(proxy: RunningProxy, mock_url: str) -> None:
    """Status, headers and body bytes match a direct call, X-Request-ID aside."""
    headers = {"X-Request-ID": "same-1", "X-Mock-Status": "429", "X-Mock-Retry-After": "7"}
    direct = httpx.post(mock_url + "/v1/chat/completions", json=CHAT, headers=headers)
    via = httpx.post(proxy.base_url + "/chat/completions", json=CHAT, headers=headers)
    assert via.status_code == direct.status_code == 429
    assert via.content == direct.content
    assert via.headers["retry-after"] == "7"
    strip = {"date"}
    assert [(k, v) for k, v in via.headers.items() if k not in strip] == [
        (k, v) for k, v in direct.headers.items() if k not in strip
    ]
    (event,) = proxy.wait_for(1)
    assert event.outcome == "upstream_error" and event.status_code == 429
    assert event.error_type == "rate_limit_exceeded"


def test_compressed_body_stays_compressed_and_is_still_accounted(proxy: RunningProxy) -> None:
    """A gzip body reaches the client compressed, and its usage is still read."""
    with httpx.stream(
        "POST",
        proxy.base_url + "/chat/completions",
        json=CHAT,
        headers={"X-Mock-Content-Encoding": "gzip", "Accept-Encoding": "gzip"},
    ) as response:
        raw = b"".join(response.iter_raw())
    assert response.headers["content-encoding"] == "gzip"
    body = orjson.loads(gzip.decompress(raw))
    (event,) = proxy.wait_for(1)
    assert event.token_source == "upstream"
    assert event.prompt_tokens == body["usage"]["prompt_tokens"]
    assert event.completion_tokens == body["usage"]["completion_tokens"]


def test_first_event_arrives_while_upstream_holds_the_second(
    proxy: RunningProxy, mock_url: str
) -> None:
    """SSE is relayed chunk by chunk: the client reads the first event before the upstream sends the next."""
    body = {**CHAT, "stream": True}
    with httpx.stream(
        "POST",
        proxy.base_url + "/chat/completions",
        json=body,
        headers={"X-Mock-Gate": "relay-1"},
        timeout=10,
    ) as response:
        lines = response.iter_lines()
        first = next(line for line in lines if line.startswith("data:"))
        assert '"role":"assistant"' in first.replace(" ", "")
        # The upstream is still holding everything else back; now let it go.
        assert httpx.post(mock_url + "/_mock/gates/relay-1").status_code < 300
        rest = [line for line in lines if line.startswith("data:")]
    assert rest[-1] == "data: [DONE]"
    (event,) = proxy.wait_for(1)
    assert event.stream and event.outcome == "success" and event.ttft_ms is not None


def test_injected_usage_chunk_is_hidden_but_counted(proxy: RunningProxy) -> None:
    """A client that did not ask for stream usage does not get the usage chunk, yet the event has exact tokens."""
    body = {**CHAT, "stream": True}
    response = httpx.post(proxy.base_url + "/chat/completions", json=body)
    chunks = [
        orjson.loads(line[6:]) for line in response.text.splitlines() if line.startswith("data: {")
    ]
    assert all(chunk["choices"] for chunk in chunks), "usage-only chunk leaked to the client"
    asked = httpx.post(
        proxy.base_url + "/chat/completions",
        json={**body, "stream_options": {"include_usage": True}},
    )
    asked_chunks = [
        orjson.loads(line[6:]) for line in asked.text.splitlines() if line.startswith("data: {")
    ]
    usage = asked_chunks[-1]["usage"]
    assert asked_chunks[-1]["choices"] == []
    hidden, shown = proxy.wait_for(2)
    for event in (hidden, shown):
        assert event.token_source == "upstream"
        assert (event.prompt_tokens, event.completion_tokens) == (
            usage["prompt_tokens"],
            usage["completion_tokens"],
        )


def test_request_id_is_kept_generated_or_replaced(proxy: RunningProxy) -> None:
    """A client's X-Request-ID is used; a missing or unsafe one is replaced by a generated id."""
    given = httpx.get(proxy.base_url + "/models", headers={"X-Request-ID": "my-id-42"})
    assert given.headers["x-request-id"] == "my-id-42"
    generated = httpx.get(proxy.base_url + "/models")
    unsafe = httpx.get(proxy.base_url + "/models", headers={"X-Request-ID": "a" * 300})
    events = proxy.wait_for(3)
    assert events[0].request_id == "my-id-42"
    assert generated.headers["x-request-id"] == events[1].request_id != "my-id-42"
    assert (
        len(events[2].request_id) == 32 and unsafe.headers["x-request-id"] == events[2].request_id
    )


# -- failures ------------------------------------------------------------------------


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_unreachable_upstream_gives_502_in_openai_shape() -> None:
    """A refused connection is a 502 upstream_connection_error and one connection_error
    event, and the client, the event and /readyz each name the upstream's host:port and
    the cause in words."""
    port = _closed_port()
    with start_proxy(f"http://127.0.0.1:{port}/v1") as proxy:
        response = httpx.post(proxy.base_url + "/chat/completions", json=CHAT)
        assert response.status_code == 502
        error = response.json()["error"]
        assert error["code"] == "upstream_connection_error" and error["type"] == "api_error"
        assert set(error) == {"message", "type", "param", "code"}
        cause = f"127.0.0.1:{port} (connection refused)"
        assert error["message"] == f"Upstream unreachable: {cause}."
        (event,) = proxy.wait_for(1)
        assert event.outcome == "connection_error" and event.status_code == 502
        assert event.error_type == "upstream_connection_error"
        assert event.error_message == error["message"]
        assert event.model == "gpt-4o"
        assert httpx.get(proxy.url + "/healthz").status_code == 200
        wait_until(lambda: httpx.get(proxy.url + "/readyz").status_code == 503)
        assert httpx.get(proxy.url + "/readyz").json()["reason"] == f"upstream unreachable: {cause}"


def test_unresolvable_upstream_is_named_as_a_dns_failure() -> None:
    """A host that does not resolve is reported as a DNS failure, naming host and port,
    and a client's own Host header or path never takes the upstream's place."""
    with start_proxy("http://pulse-test-upstream.invalid:8443/v1") as proxy:
        response = httpx.post(
            proxy.base_url + "/chat/completions",
            json=CHAT,
            headers={"Host": "client-chosen.example:1"},
        )
        assert response.status_code == 502
        message = response.json()["error"]["message"]
        assert (
            message == "Upstream unreachable: pulse-test-upstream.invalid:8443 (DNS lookup failed)."
        )
        (event,) = proxy.wait_for(1)
        assert event.error_message == message


def test_slow_upstream_gives_504(mock_url: str) -> None:
    """No response headers within the read timeout is a 504 upstream_timeout."""
    with start_proxy(mock_url + "/v1", {"upstream": {"read_timeout_s": 0.3}}) as proxy:
        response = httpx.post(
            proxy.base_url + "/chat/completions", json=CHAT, headers={"X-Mock-Latency-Ms": "3000"}
        )
        assert response.status_code == 504
        assert response.json()["error"]["code"] == "upstream_timeout"
        address = mock_url.removeprefix("http://")
        assert response.json()["error"]["message"] == (
            f"The upstream {address} did not answer in time (timed out reading)."
        )
        (event,) = proxy.wait_for(1)
        assert event.outcome == "timeout" and event.status_code == 504


def test_stream_that_stalls_mid_way_is_a_timeout(mock_url: str) -> None:
    """An upstream that goes silent mid-stream ends the client's stream and records a timeout."""
    with start_proxy(mock_url + "/v1", {"upstream": {"read_timeout_s": 0.5}}) as proxy:
        with (
            pytest.raises(httpx.RemoteProtocolError),
            httpx.stream(
                "POST",
                proxy.base_url + "/chat/completions",
                json={**CHAT, "stream": True},
                headers={"X-Mock-Gate": "stall-1"},
            ) as response,
        ):
            for _ in response.iter_raw():
                pass
        (event,) = proxy.wait_for(1)
        assert event.outcome == "timeout" and event.status_code == 200 and event.bytes_out > 0


def test_upstream_dropping_mid_stream_drops_the_client_too(proxy: RunningProxy) -> None:
    """A broken upstream stream reaches the client as an incomplete read, and is recorded."""
    received: list[bytes] = []
    with (
        pytest.raises(httpx.RemoteProtocolError),
        httpx.stream(
            "POST",
            proxy.base_url + "/chat/completions",
            json={**CHAT, "stream": True},
            headers={"X-Mock-Drop-After-Chunks": "2"},
        ) as response,
    ):
        received.extend(response.iter_raw())  # keeps what arrived before the break
    assert b"data:" in b"".join(received)
    (event,) = proxy.wait_for(1)
    assert event.outcome == "connection_error"
    assert event.error_type == "upstream_stream_interrupted"
    address = proxy.app.upstream.address
    assert event.error_message == (
        f"The connection to the upstream {address} broke mid-response (response body cut short)."
    )
    assert httpx.get(proxy.url + "/healthz").status_code == 200


def test_client_disconnect_mid_stream_closes_the_upstream(
    proxy: RunningProxy, mock_url: str
) -> None:
    """A client hanging up mid-stream closes the upstream request and records client_disconnected."""
    with httpx.stream(
        "POST",
        proxy.base_url + "/chat/completions",
        json={**CHAT, "stream": True},
        headers={
            "X-Request-ID": "hangup-1",
            "X-Mock-Tokens-Per-Second": "5",
            "X-Mock-Completion-Tokens": "200",
        },
    ) as response:
        lines = response.iter_lines()
        next(line for line in lines if line.startswith("data:"))
    # Leaving the block closes the client's connection mid-stream.
    (event,) = proxy.wait_for(1)
    assert event.outcome == "client_disconnected"
    wait_until(lambda: mock_request(mock_url, "hangup-1").get("client_disconnected") is True)


def _raw_request(url: str, payload: bytes) -> bytes:
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(payload)
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
        return data


def test_body_over_the_limit_gets_413(mock_url: str) -> None:
    """Bodies over max_body_bytes get 413, by Content-Length or by counting a chunked body."""
    with start_proxy(mock_url + "/v1", {"server": {"max_body_bytes": 1000}}) as proxy:
        response = httpx.post(proxy.base_url + "/chat/completions", content=b"x" * 5000)
        assert response.status_code == 413
        assert response.json()["error"]["code"] == "request_too_large"

        def chunks() -> Iterator[bytes]:
            for _ in range(10):
                yield b"y" * 500

        chunked = httpx.post(proxy.base_url + "/chat/completions", content=chunks())
        assert chunked.status_code == 413
        events = proxy.wait_for(2)
        assert [e.outcome for e in events] == ["rejected", "rejected"]


def test_malformed_and_non_utf8_bodies_get_the_upstreams_answer(proxy: RunningProxy) -> None:
    """Bodies the proxy cannot parse are forwarded as-is; the upstream answers and one event records it."""
    bad_json = httpx.post(
        proxy.base_url + "/chat/completions",
        content=b'{"model": "gpt-4o", "messages": [',
        headers={"Content-Type": "application/json"},
    )
    assert bad_json.status_code == 400 and "error" in bad_json.json()
    binary = httpx.post(
        proxy.base_url + "/chat/completions",
        content=b"\xff\xfe\x00garbage\x80",
        headers={"Content-Type": "application/json"},
    )
    assert binary.status_code == 400
    raw = _raw_request(
        proxy.url,
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n\xff\xff",
    )
    assert raw.startswith(b"HTTP/1.1 400")
    events = proxy.wait_for(3)
    assert {e.outcome for e in events} == {"client_error"}
    assert all(e.error_type for e in events)


def test_host_header_cannot_change_the_route(proxy: RunningProxy) -> None:
    """A Host header holding / or ? leaves routing to the request path alone."""
    raw = _raw_request(proxy.url, b"GET /healthz HTTP/1.1\r\nHost: evil/v1/models?x#y\r\n\r\n")
    assert raw.startswith(b"HTTP/1.1 200")
    raw = _raw_request(proxy.url, b"GET /v1/models HTTP/1.1\r\nHost: /healthz\r\n\r\n")
    assert raw.startswith(b"HTTP/1.1 200") and b"x-request-id" in raw.lower()
    proxy.wait_for(1)


def test_hop_by_hop_response_headers_are_dropped() -> None:
    """Upstream hop-by-hop headers (and those its Connection names) never reach the client."""

    async def answer(_: Request) -> Response:
        return Response(
            b'{"object":"list","data":[]}',
            media_type="application/json",
            headers={"Connection": "X-Upstream-Hop", "X-Upstream-Hop": "1", "X-Kept": "yes"},
        )

    upstream = Starlette(routes=[Route("/v1/models", answer)])
    with run_server(upstream) as url, start_proxy(url + "/v1") as proxy:
        response = httpx.get(proxy.base_url + "/models")
        assert response.headers["x-kept"] == "yes"
        assert "x-upstream-hop" not in response.headers
        proxy.wait_for(1)


def test_many_concurrent_requests_each_give_one_event(proxy: RunningProxy) -> None:
    """Under concurrency every request still yields exactly one event with its own id."""
    ids = [f"conc-{i}" for i in range(40)]

    def call(request_id: str) -> None:
        httpx.post(
            proxy.base_url + "/chat/completions",
            json={**CHAT, "stream": request_id.endswith("1")},
            headers={"X-Request-ID": request_id},
        )

    threads = [threading.Thread(target=call, args=(i,)) for i in ids]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    events = proxy.wait_for(len(ids))
    assert sorted(e.request_id for e in events) == sorted(ids)
    assert all(e.outcome == "success" and e.token_source == "upstream" for e in events)


def test_optional_keepalive_comments_while_waiting_for_the_first_token(mock_url: str) -> None:
    """With sse_keepalive_s set, SSE comments flow while the first token is slow, and the SDK still parses the stream."""
    with start_proxy(mock_url + "/v1", {"upstream": {"sse_keepalive_s": 0.1}}) as proxy:
        response = httpx.post(
            proxy.base_url + "/chat/completions",
            json={**CHAT, "stream": True},
            headers={"X-Mock-TTFT-Ms": "600"},
        )
        lines = response.text.splitlines()
        first_data = next(i for i, line in enumerate(lines) if line.startswith("data:"))
        assert any(line.startswith(": keepalive") for line in lines[:first_data])
        (event,) = proxy.wait_for(1)
        assert event.outcome == "success" and event.token_source == "upstream"


def test_usage_filter_finds_the_usage_chunk_wherever_it_is_split() -> None:
    """The usage-only chunk is removed however the network splits the stream, LF or CRLF;
    on LF streams (OpenAI's) the "usage":null keys go too, CRLF streams keep them."""
    from pulse_proxy.proxy.streaming import UsageChunkFilter

    frames = [
        b'data: {"choices":[{"index":0,"delta":{"content":"Hi"}}],"usage":null}\n\n',
        b'data: {"choices":[{"index":0,"delta":{},"finish_reason":"stop"}],"usage":null}\n\n',
        b'data: {"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":1,"total_tokens":4}}\n\n',
        b"data: [DONE]\n\n",
    ]
    for ending in (b"\n", b"\r\n"):
        stream = b"".join(frames).replace(b"\n", ending)
        expected = b"".join(frames[:2] + frames[3:]).replace(b"\n", ending)
        if ending == b"\n":
            expected = expected.replace(b',"usage":null}', b"}")
        for cut in range(1, len(stream)):
            usage_filter = UsageChunkFilter()
            out = (
                usage_filter.feed(stream[:cut])
                + usage_filter.feed(stream[cut:])
                + usage_filter.flush()
            )
            assert out == expected, (ending, cut)


def test_usage_filter_keeps_content_chunks_that_carry_usage_objects() -> None:
    """Some providers put usage on a content chunk, some nest a "usage" key in tool
    arguments: only a frame whose choices are empty is ours to hide."""
    from pulse_proxy.proxy.streaming import UsageChunkFilter

    kept = [
        b'data: {"choices":[{"delta":{"content":"{\\"usage\\":{}}"}}],"x":{"usage":{"a":1}}}\n\n',
        b'data: {"choices":[{"delta":{},"finish_reason":"stop"}],"usage":{"total_tokens":4},"u2":{"usage":{}}}\n\n',
    ]
    hidden = b'data: {"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":1,"total_tokens":4}}\n\n'
    done = b"data: [DONE]\n\n"
    usage_filter = UsageChunkFilter()
    out = usage_filter.feed(b"".join([*kept, hidden, done])) + usage_filter.flush()
    assert out == b"".join([*kept, done])


def test_stream_usage_injection_keeps_the_clients_bytes() -> None:
    """Injecting include_usage appends one key and leaves the client's bytes otherwise untouched."""
    from pulse_proxy.proxy.streaming import inject_stream_usage

    body = b'{"model": "gpt-4o",  "stream": true, "messages": [{"role": "user", "content": "caf\\u00e9 }"}]}\n'
    injected = inject_stream_usage(body)
    assert injected is not None
    assert injected.startswith(body.rstrip()[:-1])
    assert orjson.loads(injected)["stream_options"] == {"include_usage": True}
    assert orjson.loads(injected)["messages"] == orjson.loads(body)["messages"]
    merged = inject_stream_usage(b'{"stream": true, "stream_options": {"foo": 1}}')
    assert merged is not None and orjson.loads(merged)["stream_options"] == {
        "foo": 1,
        "include_usage": True,
    }
    assert (
        inject_stream_usage(b'{"stream": true, "stream_options": {"include_usage": true}}') is None
    )
    assert inject_stream_usage(b'{"stream": false}') is None
    assert inject_stream_usage(b'{"stream": tru') is None
