"""Read what an upstream answered: usage, model, finish reason, error, generated text.

Usage hides in several places and other proxies have under-reported cost by missing
them: the plain JSON body; the last SSE chunk of a chat or completions stream (which
may also carry ``choices``); the Responses API's ``response.completed`` event, with
its own field names (``input_tokens``/``output_tokens``).  Cached prompt tokens and
reasoning tokens sit in ``*_details`` objects and are kept separately.

This runs off the request path, on a copy of the bytes the client received.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson

from pulse_proxy.proxy.sse import SSEEvent, parse_frame, split_frames


@dataclass(slots=True)
class Usage:
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    total_tokens: int | None = None
    cached_tokens: int | None = None
    reasoning_tokens: int | None = None


@dataclass(slots=True)
class ResponseFacts:
    usage: Usage | None = None
    response_model: str | None = None
    finish_reason: str | None = None
    completion_text: list[str] = field(default_factory=list)
    # The error the body names, if any; it describes the request only when ``failed``
    # is set or the status code already says the request failed.
    error_type: str | None = None
    error_message: str | None = None
    # The upstream says the generation itself failed although the status may be 2xx.
    failed: bool = False
    # A stream that delivered its final marker ([DONE], response.completed, finish_reason).
    completed: bool = False


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def parse_usage(raw: Any) -> Usage | None:
    """Normalise Chat/Completions/Embeddings usage and the Responses API's variant."""
    if not isinstance(raw, dict):
        return None
    prompt = _int(raw.get("prompt_tokens"))
    if prompt is None:
        prompt = _int(raw.get("input_tokens"))
    completion = _int(raw.get("completion_tokens"))
    if completion is None:
        completion = _int(raw.get("output_tokens"))
    total = _int(raw.get("total_tokens"))
    if prompt is None and completion is None and total is None:
        return None
    if completion is None and prompt is not None and total is not None:
        completion = total - prompt  # embeddings report prompt and total only
    if total is None and prompt is not None and completion is not None:
        total = prompt + completion
    prompt_details = raw.get("prompt_tokens_details") or raw.get("input_tokens_details")
    completion_details = raw.get("completion_tokens_details") or raw.get("output_tokens_details")
    cached = _int(prompt_details.get("cached_tokens")) if isinstance(prompt_details, dict) else None
    reasoning = (
        _int(completion_details.get("reasoning_tokens"))
        if isinstance(completion_details, dict)
        else None
    )
    return Usage(prompt, completion, total, cached, reasoning)


# Objects whose ``error`` field reports the generation the request asked for.  Every other
# ``object`` (``fine_tuning.job``, ``eval.run``, ``video``, ``batch``, …) is a resource with
# a lifecycle, whose ``error`` describes that resource's state: fetching a failed job is a
# successful request.
_GENERATION_OBJECTS = frozenset({"chat.completion", "text_completion"})


def _error_facts(facts: ResponseFacts, error: Any) -> None:
    if isinstance(error, dict):
        facts.error_type = str(error.get("code") or error.get("type") or "error")
        message = error.get("message")
        facts.error_message = str(message) if message is not None else None
    elif isinstance(error, str):
        facts.error_type = "error"
        facts.error_message = error


def _apply_choices(facts: ResponseFacts, choices: Any, *, streamed: bool) -> None:
    if not isinstance(choices, list):
        return
    for choice in choices:
        if not isinstance(choice, dict):
            continue
        if choice.get("finish_reason"):
            facts.finish_reason = str(choice["finish_reason"])
        if streamed:
            delta = choice.get("delta")
            if isinstance(delta, dict):
                for key in ("content", "reasoning_content", "refusal"):
                    if isinstance(delta.get(key), str):
                        facts.completion_text.append(delta[key])
                for call in delta.get("tool_calls") or ():
                    fn = call.get("function") if isinstance(call, dict) else None
                    if isinstance(fn, dict):
                        facts.completion_text.append(str(fn.get("name") or ""))
                        facts.completion_text.append(str(fn.get("arguments") or ""))
        else:
            message = choice.get("message")
            if isinstance(message, dict):
                if isinstance(message.get("content"), str):
                    facts.completion_text.append(message["content"])
                for call in message.get("tool_calls") or ():
                    fn = call.get("function") if isinstance(call, dict) else None
                    if isinstance(fn, dict):
                        facts.completion_text.append(str(fn.get("name") or ""))
                        facts.completion_text.append(str(fn.get("arguments") or ""))
        if isinstance(choice.get("text"), str):
            facts.completion_text.append(choice["text"])


def _apply_response_object(facts: ResponseFacts, response: Any) -> None:
    """A Responses API ``response`` object (plain body or inside a stream event)."""
    if not isinstance(response, dict):
        return
    if isinstance(response.get("model"), str):
        facts.response_model = response["model"]
    usage = parse_usage(response.get("usage"))
    if usage is not None:
        facts.usage = usage
    status = response.get("status")
    incomplete = response.get("incomplete_details")
    if isinstance(incomplete, dict) and incomplete.get("reason"):
        facts.finish_reason = str(incomplete["reason"])
    elif isinstance(status, str) and status != "in_progress":
        facts.finish_reason = status
    if response.get("error"):
        _error_facts(facts, response["error"])
    # Only ``failed`` is a failed generation; ``incomplete`` is a normal end (a cap).
    facts.failed = facts.failed or status == "failed"


def facts_from_json(body: bytes | bytearray) -> ResponseFacts:
    facts = ResponseFacts()
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return facts
    if not isinstance(data, dict):
        return facts
    kind = data.get("object")
    if kind == "response":
        _apply_response_object(facts, data)
        for item in data.get("output") or ():
            for part in (item.get("content") or ()) if isinstance(item, dict) else ():
                if isinstance(part, dict) and isinstance(part.get("text"), str):
                    facts.completion_text.append(part["text"])
        facts.completed = True
        return facts
    if data.get("error"):
        _error_facts(facts, data["error"])
        # A bare error body (no ``object``) or a completion reporting its own failure.
        facts.failed = kind is None or kind in _GENERATION_OBJECTS
    if isinstance(data.get("model"), str):
        facts.response_model = data["model"]
    facts.usage = parse_usage(data.get("usage"))
    _apply_choices(facts, data.get("choices"), streamed=False)
    facts.completed = True
    return facts


def _apply_sse_payload(facts: ResponseFacts, event: SSEEvent, *, text: bool) -> None:
    payload = event.data
    if payload == "[DONE]":
        facts.completed = True
        return
    if not payload.startswith("{"):
        return
    try:
        data = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return
    if not isinstance(data, dict):
        return
    kind = data.get("type") if isinstance(data.get("type"), str) else event.event
    if isinstance(kind, str) and kind.startswith("response."):
        if kind == "response.output_text.delta" and isinstance(data.get("delta"), str):
            if text:
                facts.completion_text.append(data["delta"])
        elif kind in ("response.completed", "response.incomplete", "response.failed"):
            _apply_response_object(facts, data.get("response"))
            facts.completed = True
        elif kind in ("response.created", "response.in_progress") and facts.response_model is None:
            _apply_response_object(facts, data.get("response"))
        return
    if kind == "error" or data.get("error"):
        # Mid-stream, after a 200: the only way left for the upstream to say it failed.
        _error_facts(facts, data.get("error", data))
        facts.failed = True
        return
    if isinstance(data.get("model"), str) and facts.response_model is None:
        facts.response_model = data["model"]
    usage = parse_usage(data.get("usage"))
    if usage is not None and facts.usage is None:
        facts.usage = usage
    if text:
        _apply_choices(facts, data.get("choices"), streamed=True)
    elif facts.finish_reason is None:
        for choice in data.get("choices") or ():
            if isinstance(choice, dict) and choice.get("finish_reason"):
                facts.finish_reason = str(choice["finish_reason"])


# Frames read from the end before giving up on finding usage there.
_TAIL_FRAMES = 6
_TAIL_BYTES = 16 * 1024


def facts_from_sse(chunks: Iterable[bytes], *, collect_text: bool = False) -> ResponseFacts:
    """Facts from a captured stream, reading as little of it as possible.

    Usage, the finish reason and the final model sit in the last few frames, so those
    are read first, backwards.  Only when they hold no usage (or the text itself is
    wanted) is the whole stream decoded, to count the generated text locally.
    """
    data = b"".join(chunks)
    tail = data[-_TAIL_BYTES:]
    tail_frames = split_frames(tail)
    if len(tail) < len(data):
        tail_frames = tail_frames[1:]  # the first may be cut mid-frame
    facts = ResponseFacts()
    for frame in reversed(tail_frames[-_TAIL_FRAMES:]):
        event = parse_frame(frame)
        if event is not None:
            _apply_sse_payload(facts, event, text=False)
        if facts.usage is not None and facts.finish_reason and facts.response_model:
            break
    if facts.usage is not None and not collect_text:
        return facts
    facts = ResponseFacts()
    for frame in split_frames(data):
        event = parse_frame(frame)
        if event is not None:
            _apply_sse_payload(facts, event, text=True)
    return facts
