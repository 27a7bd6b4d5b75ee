"""The official openai SDK, pointed at the proxy, works unchanged; each call is one exact event."""

from __future__ import annotations

import openai
import pytest
from conftest import RunningProxy


@pytest.fixture
def client(proxy: RunningProxy) -> openai.OpenAI:
    return openai.OpenAI(base_url=proxy.base_url, api_key="sk-test-not-a-real-key", max_retries=0)


MESSAGES = [
    {"role": "system", "content": "You are terse."},
    {"role": "user", "content": "Name three colours."},
]


def test_chat_plain(client: openai.OpenAI, proxy: RunningProxy) -> None:
    """A plain chat completion yields one event whose tokens equal the response usage."""
    completion = client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    (event,) = proxy.wait_for(1)
    assert completion.usage is not None
    assert (event.prompt_tokens, event.completion_tokens, event.total_tokens) == (
        completion.usage.prompt_tokens,
        completion.usage.completion_tokens,
        completion.usage.total_tokens,
    )
    assert event.token_source == "upstream"
    assert event.prompt_tokens_local == completion.usage.prompt_tokens
    assert event.endpoint == "chat" and event.model == "gpt-4o-mini" and not event.stream
    assert event.finish_reason == completion.choices[0].finish_reason
    assert event.request_id == completion._request_id


def test_chat_streamed_without_usage(client: openai.OpenAI, proxy: RunningProxy) -> None:
    """A stream without include_usage still gets exact tokens, and the client sees no usage chunk."""
    chunks = list(client.chat.completions.create(model="gpt-4o", messages=MESSAGES, stream=True))
    assert all(chunk.choices for chunk in chunks)
    text = "".join(c.choices[0].delta.content or "" for c in chunks)
    (event,) = proxy.wait_for(1)
    assert event.stream and event.token_source == "upstream"
    from pulse_proxy.accounting.tokens import count_text

    assert event.completion_tokens == count_text(text, "gpt-4o")
    assert event.ttft_ms is not None and event.ttft_ms <= event.latency_ms


def test_chat_streamed_with_usage(client: openai.OpenAI, proxy: RunningProxy) -> None:
    """A stream that asked for usage gets it, and the event matches it."""
    chunks = list(
        client.chat.completions.create(
            model="gpt-4o", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
        )
    )
    usage = chunks[-1].usage
    assert usage is not None
    (event,) = proxy.wait_for(1)
    assert (event.prompt_tokens, event.completion_tokens) == (
        usage.prompt_tokens,
        usage.completion_tokens,
    )


def test_completions(client: openai.OpenAI, proxy: RunningProxy) -> None:
    """Legacy completions are forwarded and counted."""
    completion = client.completions.create(
        model="gpt-3.5-turbo-instruct", prompt="Once upon a time", max_tokens=5
    )
    (event,) = proxy.wait_for(1)
    assert completion.usage is not None
    assert event.endpoint == "completions"
    assert event.prompt_tokens == completion.usage.prompt_tokens == event.prompt_tokens_local
    assert event.completion_tokens == completion.usage.completion_tokens <= 5
    assert event.max_tokens == 5


def test_embeddings(client: openai.OpenAI, proxy: RunningProxy) -> None:
    """Embeddings are forwarded and their prompt tokens counted."""
    result = client.embeddings.create(
        model="text-embedding-3-small", input=["hello world", "good night"]
    )
    (event,) = proxy.wait_for(1)
    assert len(result.data) == 2
    assert event.endpoint == "embeddings"
    assert event.prompt_tokens == result.usage.prompt_tokens == event.prompt_tokens_local
    assert event.completion_tokens == 0


def test_models_list(client: openai.OpenAI, proxy: RunningProxy) -> None:
    """Listing models works and yields an event without tokens."""
    models = client.models.list()
    assert any(m.id for m in models.data)
    (event,) = proxy.wait_for(1)
    assert event.endpoint == "models" and event.method == "GET"
    assert event.prompt_tokens is None and event.token_source is None


def test_responses_create(client: openai.OpenAI, proxy: RunningProxy) -> None:
    """The Responses API is forwarded and its usage read."""
    response = client.responses.create(model="gpt-4.1", input="Write one word.")
    (event,) = proxy.wait_for(1)
    assert response.usage is not None
    assert event.endpoint == "responses"
    assert event.prompt_tokens == response.usage.input_tokens
    assert event.completion_tokens == response.usage.output_tokens


def test_responses_streamed(client: openai.OpenAI, proxy: RunningProxy) -> None:
    """A streamed Responses API call takes usage from response.completed."""
    events = list(client.responses.create(model="gpt-4.1", input="Write one word.", stream=True))
    completed = [e for e in events if e.type == "response.completed"]
    assert completed and completed[0].response.usage is not None
    (event,) = proxy.wait_for(1)
    assert event.stream and event.prompt_tokens == completed[0].response.usage.input_tokens
    assert event.completion_tokens == completed[0].response.usage.output_tokens


def test_sdk_raises_its_usual_errors(client: openai.OpenAI, proxy: RunningProxy) -> None:
    """Upstream errors pass through, so the SDK raises its usual exception classes."""
    with pytest.raises(openai.RateLimitError):
        client.chat.completions.create(
            model="gpt-4o", messages=MESSAGES, extra_headers={"X-Mock-Status": "429"}
        )
    with pytest.raises(openai.InternalServerError):
        client.chat.completions.create(
            model="gpt-4o", messages=MESSAGES, extra_headers={"X-Mock-Status": "500"}
        )
    outcomes = [e.outcome for e in proxy.wait_for(2)]
    assert outcomes == ["upstream_error", "upstream_error"]
