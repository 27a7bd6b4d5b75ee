"""The bundled mock upstream: OpenAI's schema, tiktoken-exact usage, determinism, controls.

Everything runs against the mock on a real socket (the session's ``mock_url``), driven
by the official ``openai`` SDK and by httpx, and every answer is validated against
OpenAI's published OpenAPI description, vendored in ``tests/data/openai-openapi/``.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import re
import struct
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import orjson
import pytest
from conftest import run_server, wait_until
from openapi_schemas import OpenAPISchemas

from mock_upstream import payloads
from mock_upstream.app import create_app
from pulse_proxy.accounting import tokens

MESSAGES: list[dict[str, Any]] = [
    {"role": "system", "content": "You are terse."},
    {"role": "user", "content": "Name three colours."},
]
CHAT: dict[str, Any] = {"model": "gpt-4o", "messages": MESSAGES}


# -- helpers --------------------------------------------------------------------------------


@pytest.fixture
def client(mock_url: str) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=mock_url + "/v1", api_key="sk-mock", max_retries=0) as sdk:
        yield sdk


def new_id() -> str:
    return f"mock-test-{uuid.uuid4().hex[:12]}"


def sse_frames(raw: str) -> list[tuple[str | None, str]]:
    """(event name, data) for each SSE frame of a complete stream."""
    frames = []
    for block in raw.split("\n\n"):
        if not block.strip():
            continue
        event, data = None, []
        for line in block.split("\n"):
            if line.startswith("event: "):
                event = line[len("event: ") :]
            elif line.startswith("data: "):
                data.append(line[len("data: ") :])
        frames.append((event, "\n".join(data)))
    return frames


def json_chunks(raw: str) -> list[dict[str, Any]]:
    """The JSON payloads of a stream, with the terminating ``[DONE]`` checked and removed."""
    frames = sse_frames(raw)
    assert frames[-1] == (None, "[DONE]")
    return [orjson.loads(data) for _, data in frames[:-1]]


def recorded(mock_url: str, request_id: str) -> dict[str, Any]:
    response = httpx.get(f"{mock_url}/_mock/requests/{request_id}")
    assert response.status_code == 200, response.text
    return dict(response.json())


def post(mock_url: str, path: str, body: dict[str, Any], **headers: str) -> httpx.Response:
    return httpx.post(mock_url + path, json=body, headers=headers, timeout=10)


# -- content --------------------------------------------------------------------------------


def test_every_word_is_one_token() -> None:
    """Each word (leading space or capitalised) is one token in both encodings, so N words are N tokens."""
    for model in ("gpt-4o", "gpt-4"):
        for word in payloads.WORDS:
            assert tokens.count_text(" " + word, model) == 1, (word, model)
            assert tokens.count_text(word.capitalize(), model) == 1, (word, model)


def test_chat_plain_validates_and_counts_exactly(
    mock_url: str, client: openai.OpenAI, schemas: OpenAPISchemas
) -> None:
    """A chat completion matches the schema, and its usage is the tiktoken count of prompt and text."""
    body: dict[str, Any] = {
        **CHAT,
        "tools": [{"type": "function", "function": {"name": "lookup", "parameters": {}}}],
    }
    raw = post(mock_url, "/v1/chat/completions", body).json()
    schemas.validate("CreateChatCompletionResponse", raw)
    completion = client.chat.completions.create(**body)
    text = completion.choices[0].message.content or ""
    assert completion.usage is not None and text
    assert completion.usage.prompt_tokens == tokens.count_chat_messages(
        MESSAGES, "gpt-4o", body["tools"]
    )
    assert completion.usage.completion_tokens == tokens.count_text(text, "gpt-4o")
    assert 8 <= completion.usage.completion_tokens <= 24
    assert (
        completion.usage.total_tokens
        == completion.usage.prompt_tokens + completion.usage.completion_tokens
    )
    assert completion.choices[0].finish_reason == "stop" and completion.id.startswith("chatcmpl-")


def test_chat_stream_with_usage_matches_openai(mock_url: str, schemas: OpenAPISchemas) -> None:
    """With include_usage: role chunk, one-word deltas, finish chunk, choices-[] usage chunk, [DONE]; usage null before."""
    plain = post(mock_url, "/v1/chat/completions", CHAT).json()
    body: dict[str, Any] = {**CHAT, "stream": True, "stream_options": {"include_usage": True}}
    response = post(mock_url, "/v1/chat/completions", body)
    assert response.headers["content-type"].startswith("text/event-stream")
    chunks = json_chunks(response.text)
    for chunk in chunks:
        schemas.validate("CreateChatCompletionStreamResponse", chunk)
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": "", "refusal": None}
    deltas = [c["choices"][0]["delta"]["content"] for c in chunks[1:-2]]
    assert "".join(deltas) == plain["choices"][0]["message"]["content"]
    assert all(tokens.count_text(d, "gpt-4o") == 1 for d in deltas)
    assert chunks[-2]["choices"][0] == {
        "index": 0,
        "delta": {},
        "logprobs": None,
        "finish_reason": "stop",
    }
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"] == plain["usage"]
    assert all("usage" in c and c["usage"] is None for c in chunks[:-1])
    assert len({c["id"] for c in chunks}) == 1


def test_chat_stream_without_include_usage_has_no_usage_key(
    mock_url: str, client: openai.OpenAI
) -> None:
    """Without include_usage no chunk has a usage key, and the SDK reassembles the same text."""
    response = post(mock_url, "/v1/chat/completions", {**CHAT, "stream": True})
    chunks = json_chunks(response.text)
    assert all("usage" not in c and c["choices"] for c in chunks)
    streamed = list(client.chat.completions.create(**CHAT, stream=True))
    text = "".join(c.choices[0].delta.content or "" for c in streamed)
    assert text == client.chat.completions.create(**CHAT).choices[0].message.content


def test_completions_plain_and_streamed(
    mock_url: str, client: openai.OpenAI, schemas: OpenAPISchemas
) -> None:
    """Legacy completions validate (body and every chunk) and count the prompt and text exactly."""
    body: dict[str, Any] = {"model": "gpt-3.5-turbo-instruct", "prompt": "Once upon a time"}
    plain = post(mock_url, "/v1/completions", body).json()
    schemas.validate("CreateCompletionResponse", plain)
    text = plain["choices"][0]["text"]
    assert plain["usage"]["prompt_tokens"] == tokens.count_input("Once upon a time", body["model"])
    assert plain["usage"]["completion_tokens"] == tokens.count_text(text, body["model"])
    stream = post(
        mock_url,
        "/v1/completions",
        {**body, "stream": True, "stream_options": {"include_usage": True}},
    )
    chunks = json_chunks(stream.text)
    for chunk in chunks[:-2]:
        # OpenAI's schema has no value for "not finished yet", which the real API streams as
        # null; everything else in these chunks must validate.
        assert chunk["choices"][0]["finish_reason"] is None
        chunk = {**chunk, "choices": [{**chunk["choices"][0], "finish_reason": "stop"}]}
        schemas.validate("CreateCompletionResponse", chunk)
    for chunk in chunks[-2:]:
        schemas.validate("CreateCompletionResponse", chunk)
    assert "".join(c["choices"][0]["text"] for c in chunks[:-1]) == text
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop"
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"] == plain["usage"]
    sdk = client.completions.create(model=body["model"], prompt=["one", "two three"])
    assert sdk.usage is not None and sdk.usage.prompt_tokens == 3


def test_embeddings_float_base64_and_dimensions(
    mock_url: str, client: openai.OpenAI, schemas: OpenAPISchemas
) -> None:
    """Embeddings are unit vectors seeded per input; dimensions truncates, base64 packs float32; input tokens count."""
    body: dict[str, Any] = {
        "model": "text-embedding-3-small",
        "input": ["hello world", "good night"],
    }
    plain = post(mock_url, "/v1/embeddings", body).json()
    schemas.validate("CreateEmbeddingResponse", plain)
    first, second = (item["embedding"] for item in plain["data"])
    assert len(first) == 1536 and abs(sum(v * v for v in first) - 1) < 1e-4 and first != second
    assert plain["usage"] == {"prompt_tokens": 4, "total_tokens": 4}
    alone = post(mock_url, "/v1/embeddings", {**body, "input": "good night"}).json()
    assert alone["data"][0]["embedding"] == second
    encoded = post(mock_url, "/v1/embeddings", {**body, "encoding_format": "base64"}).json()
    raw = base64.b64decode(encoded["data"][0]["embedding"])
    decoded = list(struct.unpack(f"<{len(raw) // 4}f", raw))
    assert decoded == first
    encoded["data"][0]["embedding"] = decoded  # the schema describes only the float form
    encoded["data"][1]["embedding"] = second
    schemas.validate("CreateEmbeddingResponse", encoded)
    short = (
        client.embeddings.create(model=body["model"], input="hello world", dimensions=8)
        .data[0]
        .embedding
    )
    norm = sum(v * v for v in first[:8]) ** 0.5  # shortened = truncated and renormalised
    assert short == pytest.approx([v / norm for v in first[:8]], abs=1e-6)
    assert (
        client.embeddings.create(
            model="text-embedding-3-large", input=[[1, 2, 3]]
        ).usage.prompt_tokens
        == 3
    )


def test_models_list_and_retrieve(
    mock_url: str, client: openai.OpenAI, schemas: OpenAPISchemas
) -> None:
    """The model list and single models validate; an unknown model is a 404 model_not_found."""
    listing = httpx.get(mock_url + "/v1/models").json()
    schemas.validate("ListModelsResponse", listing)
    assert "gpt-4o" in [m.id for m in client.models.list()]
    schemas.validate("Model", httpx.get(mock_url + "/v1/models/gpt-4o-mini").json())
    assert client.models.retrieve("gpt-4o").id == "gpt-4o"
    missing = httpx.get(mock_url + "/v1/models/no-such-model")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "model_not_found"
    schemas.validate("ErrorResponse", missing.json())


def test_responses_plain(mock_url: str, client: openai.OpenAI, schemas: OpenAPISchemas) -> None:
    """A Response validates and counts input plus instructions, and output, exactly."""
    body: dict[str, Any] = {
        "model": "gpt-4.1",
        "input": "Write one word.",
        "instructions": "Be brief.",
    }
    raw = post(mock_url, "/v1/responses", body).json()
    schemas.validate("Response", raw)
    response = client.responses.create(**body)
    assert response.status == "completed" and response.usage is not None
    assert response.usage.input_tokens == tokens.count_text(
        "Write one word.", "gpt-4.1"
    ) + tokens.count_text("Be brief.", "gpt-4.1")
    assert response.usage.output_tokens == tokens.count_text(response.output_text, "gpt-4.1")
    assert response.output_text == raw["output"][0]["content"][0]["text"]


def test_responses_stream_events(
    mock_url: str, client: openai.OpenAI, schemas: OpenAPISchemas
) -> None:
    """A streamed Response sends OpenAI's event sequence, each valid, ending in response.completed with usage."""
    body: dict[str, Any] = {
        "model": "gpt-4.1",
        "input": [{"role": "user", "content": "Write a line."}],
    }
    plain = post(mock_url, "/v1/responses", body).json()
    frames = sse_frames(post(mock_url, "/v1/responses", {**body, "stream": True}).text)
    events = [orjson.loads(data) for _, data in frames]
    for (name, _), event in zip(frames, events, strict=True):
        assert name == event["type"]
        schemas.validate("ResponseStreamEvent", event)
    kinds = [e["type"] for e in events]
    deltas = kinds.count("response.output_text.delta")
    assert kinds == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        *["response.output_text.delta"] * deltas,
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    text = "".join(e["delta"] for e in events if e["type"] == "response.output_text.delta")
    assert (
        text == plain["output"][0]["content"][0]["text"]
        and deltas == plain["usage"]["output_tokens"]
    )
    assert events[-1]["response"] == plain
    sdk_events = list(client.responses.create(**body, stream=True))
    assert sdk_events[-1].type == "response.completed"


# -- determinism ------------------------------------------------------------------------------


def test_same_request_same_bytes_and_ids(mock_url: str) -> None:
    """Identical requests get identical bodies; key order and spacing do not matter; other prompts differ."""
    first = post(mock_url, "/v1/chat/completions", CHAT)
    second = httpx.post(
        mock_url + "/v1/chat/completions",
        content=b'{ "messages": ' + orjson.dumps(MESSAGES) + b', "model": "gpt-4o" }',
    )
    assert first.content == second.content
    other = post(
        mock_url, "/v1/chat/completions", {**CHAT, "messages": [{"role": "user", "content": "Hi"}]}
    )
    assert (
        other.json()["choices"][0]["message"]["content"]
        != first.json()["choices"][0]["message"]["content"]
    )
    assert other.json()["id"] != first.json()["id"]


# -- controls -----------------------------------------------------------------------------------


def test_completion_tokens_control_and_caps(mock_url: str) -> None:
    """X-Mock-Completion-Tokens sets the length; max_tokens and friends cap it with finish_reason length."""
    exact = post(
        mock_url, "/v1/chat/completions", CHAT, **{"X-Mock-Completion-Tokens": "40"}
    ).json()
    assert (
        exact["usage"]["completion_tokens"] == 40 and exact["choices"][0]["finish_reason"] == "stop"
    )
    for field in ("max_tokens", "max_completion_tokens"):
        capped = post(
            mock_url,
            "/v1/chat/completions",
            {**CHAT, field: 5},
            **{"X-Mock-Completion-Tokens": "40"},
        )
        assert capped.json()["usage"]["completion_tokens"] == 5
        assert capped.json()["choices"][0]["finish_reason"] == "length"
    legacy = post(
        mock_url, "/v1/completions", {"model": "gpt-4o", "prompt": "x", "max_tokens": 3}
    ).json()
    assert (
        legacy["usage"]["completion_tokens"] == 3
        and legacy["choices"][0]["finish_reason"] == "length"
    )


def test_responses_cap_gives_incomplete(mock_url: str, schemas: OpenAPISchemas) -> None:
    """max_output_tokens below the length makes the Response incomplete, streamed as response.incomplete."""
    body: dict[str, Any] = {"model": "gpt-4o", "input": "Go on.", "max_output_tokens": 4}
    plain = post(mock_url, "/v1/responses", body, **{"X-Mock-Completion-Tokens": "30"}).json()
    schemas.validate("Response", plain)
    assert plain["status"] == "incomplete" and plain["incomplete_details"] == {
        "reason": "max_output_tokens"
    }
    assert plain["usage"]["output_tokens"] == 4
    events = [
        orjson.loads(d)
        for _, d in sse_frames(
            post(
                mock_url,
                "/v1/responses",
                {**body, "stream": True},
                **{"X-Mock-Completion-Tokens": "30"},
            ).text
        )
    ]
    assert events[-1]["type"] == "response.incomplete" and events[-1]["response"] == plain
    schemas.validate("ResponseStreamEvent", events[-1])


def test_usage_omit_removes_usage_everywhere(mock_url: str) -> None:
    """X-Mock-Usage: omit leaves usage out of bodies and streams, even when include_usage asks for it."""
    omit = {"X-Mock-Usage": "omit"}
    assert "usage" not in post(mock_url, "/v1/chat/completions", CHAT, **omit).json()
    stream = post(
        mock_url,
        "/v1/chat/completions",
        {**CHAT, "stream": True, "stream_options": {"include_usage": True}},
        **omit,
    )
    assert all("usage" not in c and c["choices"] for c in json_chunks(stream.text))
    assert (
        "usage"
        not in post(mock_url, "/v1/responses", {"model": "gpt-4o", "input": "x"}, **omit).json()
    )
    assert (
        "usage"
        not in post(mock_url, "/v1/embeddings", {"model": "gpt-4o", "input": "x"}, **omit).json()
    )


def test_usage_with_choices_rides_on_the_finish_chunk(
    mock_url: str, schemas: OpenAPISchemas
) -> None:
    """X-Mock-Usage: with-choices puts usage on the finish_reason chunk, with no choices-[] chunk."""
    body: dict[str, Any] = {**CHAT, "stream": True, "stream_options": {"include_usage": True}}
    chunks = json_chunks(
        post(mock_url, "/v1/chat/completions", body, **{"X-Mock-Usage": "with-choices"}).text
    )
    for chunk in chunks:
        schemas.validate("CreateChatCompletionStreamResponse", chunk)
    assert all(c["choices"] for c in chunks)
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
    assert chunks[-1]["usage"] == post(mock_url, "/v1/chat/completions", CHAT).json()["usage"]


def test_cached_and_reasoning_tokens(mock_url: str, schemas: OpenAPISchemas) -> None:
    """Cached and reasoning tokens land in the details objects; reasoning adds to completion and total."""
    controls = {
        "X-Mock-Cached-Tokens": "7",
        "X-Mock-Reasoning-Tokens": "50",
        "X-Mock-Completion-Tokens": "10",
    }
    usage = post(mock_url, "/v1/chat/completions", CHAT, **controls).json()["usage"]
    assert usage["prompt_tokens_details"]["cached_tokens"] == 7
    assert usage["completion_tokens_details"]["reasoning_tokens"] == 50
    assert usage["completion_tokens"] == 60 and usage["total_tokens"] == usage["prompt_tokens"] + 60
    response = post(
        mock_url, "/v1/responses", {"model": "o4-mini", "input": "x"}, **controls
    ).json()
    schemas.validate("Response", response)
    assert (
        response["usage"]["input_tokens_details"]["cached_tokens"] == 1
    )  # never more than the prompt
    assert response["usage"]["output_tokens_details"]["reasoning_tokens"] == 50
    assert response["usage"]["output_tokens"] == 60


@pytest.mark.parametrize(
    ("status", "exception"),
    [
        (400, openai.BadRequestError),
        (401, openai.AuthenticationError),
        (403, openai.PermissionDeniedError),
        (404, openai.NotFoundError),
        (429, openai.RateLimitError),
        (500, openai.InternalServerError),
        (503, openai.InternalServerError),
    ],
)
def test_status_control_gives_openai_errors(
    status: int,
    exception: type[openai.APIStatusError],
    mock_url: str,
    client: openai.OpenAI,
    schemas: OpenAPISchemas,
) -> None:
    """X-Mock-Status answers with that status and an ErrorResponse, so the SDK raises its usual class."""
    response = post(
        mock_url, "/v1/chat/completions", {**CHAT, "stream": True}, **{"X-Mock-Status": str(status)}
    )
    assert response.status_code == status
    schemas.validate("ErrorResponse", response.json())
    with pytest.raises(exception):
        client.chat.completions.create(**CHAT, extra_headers={"X-Mock-Status": str(status)})


def test_rate_limit_carries_retry_after(mock_url: str, schemas: OpenAPISchemas) -> None:
    """A 429 with X-Mock-Retry-After carries Retry-After and OpenAI's rate_limit_exceeded error."""
    response = post(
        mock_url,
        "/v1/chat/completions",
        CHAT,
        **{"X-Mock-Status": "429", "X-Mock-Retry-After": "7"},
    )
    assert response.status_code == 429 and response.headers["retry-after"] == "7"
    schemas.validate("ErrorResponse", response.json())
    assert response.json()["error"]["code"] == "rate_limit_exceeded"


def test_bad_requests_get_openai_errors(mock_url: str, schemas: OpenAPISchemas) -> None:
    """Malformed or non-object JSON, missing fields, bad control values and unknown URLs get OpenAI errors."""
    cases = [
        (
            httpx.post(
                mock_url + "/v1/chat/completions", content=b'{"model": "gpt-4o", "messages": ['
            ),
            400,
        ),
        (httpx.post(mock_url + "/v1/chat/completions", content=b"\xff\xfe\x00garbage\x80"), 400),
        (httpx.post(mock_url + "/v1/embeddings", content=b"[1, 2]"), 400),
        (post(mock_url, "/v1/chat/completions", {"messages": MESSAGES}), 400),
        (post(mock_url, "/v1/chat/completions", {"model": "gpt-4o"}), 400),
        (post(mock_url, "/v1/chat/completions", CHAT, **{"X-Mock-Latency-Ms": "soon"}), 400),
        (httpx.get(mock_url + "/v1/chat/completions"), 404),
        (post(mock_url, "/v1/no/such/thing", CHAT), 404),
    ]
    for response, status in cases:
        assert response.status_code == status, response.text
        schemas.validate("ErrorResponse", response.json())
    assert cases[3][0].json()["error"]["message"] == "you must provide a model parameter"
    assert cases[4][0].json()["error"]["param"] == "messages"
    assert cases[5][0].json()["error"] == {
        "message": "Invalid x-mock-latency-ms header 'soon': expected an integer from 0 to 600000.",
        "type": "invalid_request_error",
        "param": "x-mock-latency-ms",
        "code": "invalid_mock_control",
    }


def test_latency_delays_the_headers(mock_url: str) -> None:
    """X-Mock-Latency-Ms holds the response headers back at least that long, errors included."""
    for headers in (
        {"X-Mock-Latency-Ms": "250"},
        {"X-Mock-Latency-Ms": "250", "X-Mock-Status": "500"},
    ):
        started = time.monotonic()
        with httpx.stream("POST", mock_url + "/v1/chat/completions", json=CHAT, headers=headers):
            assert time.monotonic() - started >= 0.25


def test_ttft_sends_headers_first_then_waits(mock_url: str) -> None:
    """X-Mock-TTFT-Ms sends the headers before any event, then holds the first event that long."""
    request_id = new_id()
    headers = {"X-Mock-TTFT-Ms": "400", "X-Request-ID": request_id}
    started = time.monotonic()
    with httpx.stream(
        "POST", mock_url + "/v1/chat/completions", json={**CHAT, "stream": True}, headers=headers
    ) as response:
        # The headers are here; the mock has not sent a single event yet.
        record = recorded(mock_url, request_id)
        assert record["status"] == 200 and record["chunks_sent"] == 0
        first = next(response.iter_raw())
        assert first.startswith(b"data: ")
        assert time.monotonic() - started >= 0.4


def test_tokens_per_second_paces_the_stream(mock_url: str) -> None:
    """X-Mock-Tokens-Per-Second spaces content events: the first arrives while later ones are still unsent."""
    request_id = new_id()
    headers = {
        "X-Mock-Tokens-Per-Second": "20",
        "X-Mock-Completion-Tokens": "10",
        "X-Request-ID": request_id,
    }
    started = time.monotonic()
    contents = 0
    with httpx.stream(
        "POST", mock_url + "/v1/chat/completions", json={**CHAT, "stream": True}, headers=headers
    ) as r:
        for line in r.iter_lines():
            if '"content":"' in line and '"role"' not in line:
                contents += 1
                if contents == 1:  # role chunk + 10 contents + finish + [DONE] = 13 events
                    assert recorded(mock_url, request_id)["chunks_sent"] < 13
    assert contents == 10
    assert time.monotonic() - started >= 9 * 0.05


def test_drop_after_chunks_gives_an_incomplete_read(mock_url: str) -> None:
    """X-Mock-Drop-After-Chunks sends N events, then cuts the connection without the chunked terminator."""
    request_id = new_id()
    received = b""
    with (  # noqa: PT012 - the read loop is what raises
        pytest.raises(httpx.RemoteProtocolError),
        httpx.stream(
            "POST",
            mock_url + "/v1/chat/completions",
            json={**CHAT, "stream": True},
            headers={"X-Mock-Drop-After-Chunks": "3", "X-Request-ID": request_id},
        ) as response,
    ):
        for chunk in response.iter_raw():
            received += chunk
    assert received.count(b"data: ") == 3 and b"[DONE]" not in received
    record = recorded(mock_url, request_id)
    assert record["outcome"] == "dropped" and record["dropped"] and record["chunks_sent"] == 3


def test_gate_holds_the_rest_until_released(mock_url: str) -> None:
    """X-Mock-Gate lets the first event out, holds the rest until POST /_mock/gates/NAME, then finishes."""
    request_id, gate = new_id(), new_id()
    with httpx.stream(
        "POST",
        mock_url + "/v1/chat/completions",
        json={**CHAT, "stream": True},
        headers={"X-Mock-Gate": gate, "X-Request-ID": request_id},
        timeout=10,
    ) as response:
        lines = response.iter_lines()
        first = next(line for line in lines if line.startswith("data:"))
        assert '"role":"assistant"' in first
        time.sleep(0.1)
        held = recorded(mock_url, request_id)
        assert held["outcome"] == "in_progress" and held["chunks_sent"] == 1
        assert httpx.post(f"{mock_url}/_mock/gates/{gate}").json() == {
            "gate": gate,
            "released": True,
        }
        rest = [line for line in lines if line.startswith("data:")]
    assert rest[-1] == "data: [DONE]"
    wait_until(lambda: recorded(mock_url, request_id)["completed"] is True)


def test_client_disconnect_mid_stream_is_recorded(mock_url: str) -> None:
    """A client hanging up mid-stream is noticed and recorded as client_disconnected."""
    request_id = new_id()
    headers = {
        "X-Request-ID": request_id,
        "X-Mock-Tokens-Per-Second": "5",
        "X-Mock-Completion-Tokens": "200",
    }
    with httpx.stream(
        "POST", mock_url + "/v1/chat/completions", json={**CHAT, "stream": True}, headers=headers
    ) as r:
        next(line for line in r.iter_lines() if line.startswith("data:"))
    wait_until(lambda: recorded(mock_url, request_id)["client_disconnected"] is True)
    record = recorded(mock_url, request_id)
    assert record["outcome"] == "client_disconnected" and not record["completed"]


def test_client_giving_up_during_latency_is_recorded(mock_url: str) -> None:
    """A client that times out while the mock waits out its latency is recorded as disconnected."""
    request_id = new_id()
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(
            mock_url + "/v1/chat/completions",
            json=CHAT,
            timeout=0.2,
            headers={"X-Request-ID": request_id, "X-Mock-Latency-Ms": "5000"},
        )
    wait_until(lambda: recorded(mock_url, request_id)["client_disconnected"] is True)


def test_gzip_control_compresses_the_body(mock_url: str, schemas: OpenAPISchemas) -> None:
    """X-Mock-Content-Encoding: gzip sends a gzip body with Content-Encoding that decodes to the same answer."""
    headers = {"X-Mock-Content-Encoding": "gzip", "Accept-Encoding": "gzip"}
    with httpx.stream(
        "POST", mock_url + "/v1/chat/completions", json=CHAT, headers=headers
    ) as response:
        raw = b"".join(response.iter_raw())
    assert response.headers["content-encoding"] == "gzip"
    assert int(response.headers["content-length"]) == len(raw)
    body = orjson.loads(gzip.decompress(raw))
    schemas.validate("CreateChatCompletionResponse", body)
    assert body == post(mock_url, "/v1/chat/completions", CHAT).json()


# -- observation ----------------------------------------------------------------------------------


def test_requests_are_recorded_as_received(mock_url: str) -> None:
    """Method, path, raw query, headers, body length and hash are recorded and findable by X-Request-ID."""
    request_id = new_id()
    body = b'{"model": "gpt-4o",  "messages": [{"role": "user", "content": "hi"}]}'
    response = httpx.post(
        mock_url + "/v1/chat/completions?api-version=2024-10-21&x=%2Fa%20b",
        content=body,
        headers={
            "X-Request-ID": request_id,
            "OpenAI-Organization": "org-1",
            "Content-Type": "application/json",
        },
    )
    assert response.headers["x-request-id"] == request_id
    record = recorded(mock_url, request_id)
    assert (record["method"], record["path"], record["query"]) == (
        "POST",
        "/v1/chat/completions",
        "api-version=2024-10-21&x=%2Fa%20b",
    )
    assert ["openai-organization", "org-1"] in record["headers"]
    assert (
        record["body_length"] == len(body)
        and record["body_sha256"] == hashlib.sha256(body).hexdigest()
    )
    assert record["x_request_id"] == request_id and record["status"] == 200
    assert record["outcome"] == "completed" and record["completed"] and not record["stream"]
    listing = httpx.get(mock_url + "/_mock/requests").json()["data"]
    assert listing[-1]["x_request_id"] == request_id
    assert httpx.get(mock_url + "/_mock/requests/never-sent").status_code == 404


def test_request_id_is_echoed_or_generated(mock_url: str) -> None:
    """A client's X-Request-ID comes back; without one the mock makes a req_<hex> id and records it."""
    assert (
        httpx.get(mock_url + "/v1/models", headers={"X-Request-ID": "given-1"}).headers[
            "x-request-id"
        ]
        == "given-1"
    )
    generated = httpx.get(mock_url + "/v1/models").headers["x-request-id"]
    assert re.fullmatch(r"req_[0-9a-f]{32}", generated)
    assert recorded(mock_url, generated)["x_request_id"] is None


def test_reset_forgets_requests_and_opens_gates() -> None:
    """POST /_mock/reset empties the request log and releases held streams."""
    app = create_app()
    with run_server(app) as url:
        with httpx.stream(
            "POST",
            url + "/v1/chat/completions",
            json={**CHAT, "stream": True},
            headers={"X-Mock-Gate": "held"},
            timeout=10,
        ) as response:
            lines = response.iter_lines()
            next(line for line in lines if line.startswith("data:"))
            assert httpx.post(url + "/_mock/reset").json() == {"reset": True}
            rest = [line for line in lines if line.startswith("data:")]
        assert rest[-1] == "data: [DONE]"
        assert httpx.get(url + "/_mock/requests").json()["data"] == []


def test_python_dash_m_serves(tmp_path: Path) -> None:
    """``python -m mock_upstream --port N`` serves the API on 127.0.0.1:N."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = subprocess.Popen(
        [sys.executable, "-m", "mock_upstream", "--port", str(port), "--log-level", "warning"],
        cwd=tmp_path,
    )
    try:

        def answers() -> bool:
            try:
                return httpx.get(f"http://127.0.0.1:{port}/v1/models", timeout=1).status_code == 200
            except httpx.TransportError:
                return False

        wait_until(answers, timeout=20, interval=0.05)
    finally:
        process.terminate()
        process.wait(timeout=10)
