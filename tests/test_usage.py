"""Usage extraction finds tokens wherever the upstream put them."""

from __future__ import annotations

import gzip

import orjson

from pulse_proxy.accounting.decoding import decode_body
from pulse_proxy.accounting.usage import facts_from_json, facts_from_sse, parse_usage


def _sse(*payloads: object) -> list[bytes]:
    out = []
    for payload in payloads:
        data = payload if isinstance(payload, str) else orjson.dumps(payload).decode()
        out.append(f"data: {data}\n\n".encode())
    return out


def test_chat_usage_keeps_cached_and_reasoning_tokens() -> None:
    """Cached and reasoning token details are kept, not dropped."""
    usage = parse_usage(
        {
            "prompt_tokens": 100,
            "completion_tokens": 50,
            "total_tokens": 150,
            "prompt_tokens_details": {"cached_tokens": 64},
            "completion_tokens_details": {"reasoning_tokens": 30},
        }
    )
    assert usage is not None
    assert (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens) == (100, 50, 150)
    assert (usage.cached_tokens, usage.reasoning_tokens) == (64, 30)


def test_responses_api_usage_names_are_normalised() -> None:
    """input/output tokens of the Responses API map onto prompt/completion."""
    usage = parse_usage(
        {
            "input_tokens": 10,
            "output_tokens": 5,
            "total_tokens": 15,
            "input_tokens_details": {"cached_tokens": 2},
            "output_tokens_details": {"reasoning_tokens": 1},
        }
    )
    assert usage is not None
    assert (
        usage.prompt_tokens,
        usage.completion_tokens,
        usage.cached_tokens,
        usage.reasoning_tokens,
    ) == (10, 5, 2, 1)


def test_embeddings_usage_without_completion_tokens() -> None:
    """Embeddings report prompt and total only; completion is derived as zero."""
    usage = parse_usage({"prompt_tokens": 8, "total_tokens": 8})
    assert usage is not None and usage.completion_tokens == 0


def test_final_usage_chunk_that_also_carries_choices() -> None:
    """Usage on a chunk that also has the last choice is still found."""
    chunks = _sse(
        {"model": "gpt-4o", "choices": [{"index": 0, "delta": {"content": "Hi"}}]},
        {
            "model": "gpt-4o",
            "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 7, "completion_tokens": 1, "total_tokens": 8},
        },
        "[DONE]",
    )
    facts = facts_from_sse(chunks)
    assert facts.usage is not None and facts.usage.total_tokens == 8
    assert facts.finish_reason == "stop"
    assert facts.completed


def test_responses_stream_usage_comes_from_response_completed() -> None:
    """The Responses API's usage arrives in the response.completed event."""
    chunks = [
        b'event: response.output_text.delta\ndata: {"type":"response.output_text.delta","delta":"Hel"}\n\n',
        b'event: response.output_text.delta\ndata: {"type":"response.output_text.delta","delta":"lo"}\n\n',
        (
            b'event: response.completed\ndata: {"type":"response.completed","response":{"object":"response",'
            b'"model":"gpt-4o-2024-08-06","status":"completed","usage":{"input_tokens":3,"output_tokens":2,'
            b'"total_tokens":5}}}\n\n'
        ),
    ]
    facts = facts_from_sse(chunks)
    assert facts.usage is not None and facts.usage.prompt_tokens == 3
    assert facts.response_model == "gpt-4o-2024-08-06"
    assert facts.finish_reason == "completed"


def test_stream_without_usage_collects_the_generated_text() -> None:
    """Only when no usage came back is the whole stream decoded for local counting."""
    chunks = _sse(
        *(
            {"model": "m", "choices": [{"index": 0, "delta": {"content": w}}]}
            for w in ["a", " b", " c"] * 5
        ),
        {"model": "m", "choices": [{"index": 0, "delta": {}, "finish_reason": "length"}]},
        "[DONE]",
    )
    facts = facts_from_sse(chunks)
    assert facts.usage is None
    assert "".join(facts.completion_text) == "a b c" * 5
    assert facts.finish_reason == "length"
    responses = [
        b'data: {"type":"response.output_text.delta","delta":"Hel"}\n\n',
        b'data: {"type":"response.output_text.delta","delta":"lo"}\n\n',
    ]
    assert "".join(facts_from_sse(responses).completion_text) == "Hello"


def test_error_body_gives_type_and_message() -> None:
    """An OpenAI error body yields its code and message."""
    facts = facts_from_json(
        b'{"error":{"message":"Rate limit reached","type":"requests","code":"rate_limit_exceeded"}}'
    )
    assert facts.error_type == "rate_limit_exceeded"
    assert facts.error_message == "Rate limit reached"


def test_only_a_failed_generation_sets_failed() -> None:
    """A bare error body, a completion's error and a failed Response fail; a job's error
    and an incomplete Response do not (the code and message are read either way)."""
    assert facts_from_json(b'{"error":{"message":"m","code":"c"}}').failed
    assert facts_from_json(b'{"object":"chat.completion","choices":[],"error":{"code":"c"}}').failed
    assert facts_from_json(b'{"object":"response","status":"failed","error":{"code":"c"}}').failed
    job = facts_from_json(
        b'{"object":"fine_tuning.job","status":"failed","error":{"code":"c","message":"m"}}'
    )
    assert not job.failed and job.error_type == "c"
    assert not facts_from_json(b'{"object":"response","status":"incomplete","error":null}').failed
    assert facts_from_sse([b'data: {"error":{"message":"m"}}\n\n']).failed


def test_gzip_body_decodes_for_accounting() -> None:
    """A gzip-compressed body is decoded from its copy."""
    raw = b'{"usage":{"prompt_tokens":1,"completion_tokens":1,"total_tokens":2}}'
    assert decode_body([gzip.compress(raw)[:10], gzip.compress(raw)[10:]], "gzip", 1000).body == raw
    assert decode_body([b"not gzip"], "gzip", 1000).problem == "corrupt_encoding"
    assert decode_body([b"abc"], "", 1000).body == b"abc"
