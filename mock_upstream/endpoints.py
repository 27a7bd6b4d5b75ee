"""What each OpenAI endpoint answers: a request body and its controls in, a Reply out.

Pure functions with no I/O: the timing controls (latency, TTFT, pacing, gates,
drops) belong to ``sending``, so every answer here can be checked without a socket.
Usage is tiktoken-exact, counted with ``pulse_proxy.accounting.tokens`` exactly as the proxy
counts locally, and completion tokens are the count of exactly the text generated,
so the proxy's cross-check always has a known right answer.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

from mock_upstream import payloads as p
from mock_upstream.scenarios import Controls
from pulse_proxy.accounting import tokens


@dataclass(slots=True, frozen=True)
class Frame:
    """One SSE event; ``paced`` marks a content event, the unit of tokens-per-second."""

    data: bytes
    paced: bool = False


@dataclass(slots=True)
class Reply:
    """A JSON body, or (when ``frames`` is set) an SSE stream."""

    status: int = 200
    body: dict[str, Any] | None = None
    frames: list[Frame] = field(default_factory=list)

    @property
    def stream(self) -> bool:
        return bool(self.frames)


class RequestError(Exception):
    """A request OpenAI would refuse; answered in its error shape."""

    def __init__(
        self, message: str, *, param: str | None = None, code: str | None = None, status: int = 400
    ):
        super().__init__(message)
        self.status, self.message, self.param, self.code = status, message, param, code

    def reply(self) -> Reply:
        kind = "server_error" if self.status >= 500 else "invalid_request_error"
        return Reply(self.status, p.error(self.message, kind, param=self.param, code=self.code))


def _model(body: dict[str, Any]) -> str:
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise RequestError("you must provide a model parameter")
    return model


def _required(body: dict[str, Any], name: str) -> Any:
    if body.get(name) is None:
        raise RequestError(
            f"Missing required parameter: '{name}'.", param=name, code="missing_required_parameter"
        )
    return body[name]


def _generation(
    body: dict[str, Any], controls: Controls, seed: int, *cap_fields: str
) -> p.Generation:
    """Decide how many tokens to write: asked-for or 8–24, within the request's cap.

    Reasoning tokens count against the cap first, as they do for OpenAI's reasoning models.
    """
    wanted = controls.completion_tokens if controls.completion_tokens is not None else 8 + seed % 17
    for name in cap_fields:
        cap = body.get(name)
        if cap is None:
            continue
        if not isinstance(cap, int) or isinstance(cap, bool) or cap < 0:
            raise RequestError(f"Invalid '{name}': expected a non-negative integer.", param=name)
        room = max(cap - controls.reasoning_tokens, 0)
        if wanted > room:
            return p.generate(seed, room, "length")
        break
    return p.generate(seed, wanted)


def _counts(
    prompt: int, gen: p.Generation, model: str, controls: Controls
) -> tuple[int, int, int] | None:
    """(prompt, completion, cached) as reported, or None when usage is to be omitted."""
    if controls.usage == "omit":
        return None
    completion = tokens.count_text(gen.text, model) + controls.reasoning_tokens
    return prompt, completion, min(controls.cached_tokens, prompt)


def _include_usage(body: dict[str, Any]) -> bool:
    options = body.get("stream_options")
    return isinstance(options, dict) and options.get("include_usage") is True


def chat(body: dict[str, Any], controls: Controls) -> Reply:
    model = _model(body)
    messages = _required(body, "messages")
    if not isinstance(messages, list) or not messages:
        raise RequestError("Invalid 'messages': expected a non-empty array.", param="messages")
    seed = p.request_seed(body)
    gen = _generation(body, controls, seed, "max_completion_tokens", "max_tokens")
    tools = body.get("tools") if isinstance(body.get("tools"), list) else None
    counts = _counts(tokens.count_chat_messages(messages, model, tools), gen, model, controls)
    usage = None
    if counts is not None:
        usage = p.completion_usage(
            counts[0], counts[1], cached=counts[2], reasoning=controls.reasoning_tokens
        )
    cid = p.ident("chatcmpl-", seed)
    if body.get("stream") is not True:
        return Reply(body=p.chat_completion(cid, model, gen, usage))

    include = usage is not None and _include_usage(body)
    on_last_choice = include and controls.usage == "with-choices"

    def chunk(delta: dict[str, Any] | None, finish: str | None = None, last: Any = None) -> bytes:
        return p.sse(p.chat_chunk(cid, model, delta, finish, usage_field=include, usage=last))

    frames = [Frame(chunk({"role": "assistant", "content": "", "refusal": None}))]
    frames += [Frame(chunk({"content": piece}), paced=True) for piece in gen.pieces]
    frames.append(Frame(chunk({}, gen.finish_reason, usage if on_last_choice else None)))
    if include and not on_last_choice:
        frames.append(Frame(chunk(None, last=usage)))
    frames.append(Frame(p.DONE))
    return Reply(frames=frames)


def completions(body: dict[str, Any], controls: Controls) -> Reply:
    model = _model(body)
    prompt = _required(body, "prompt")
    seed = p.request_seed(body)
    gen = _generation(body, controls, seed, "max_tokens")
    counts = _counts(tokens.count_input(prompt, model), gen, model, controls)
    usage = None
    if counts is not None:
        usage = p.completion_usage(
            counts[0], counts[1], cached=counts[2], reasoning=controls.reasoning_tokens
        )
    cid = p.ident("cmpl-", seed)
    if body.get("stream") is not True:
        return Reply(body=p.text_completion(cid, model, gen.text, gen.finish_reason, usage))

    include = usage is not None and _include_usage(body)
    on_last_choice = include and controls.usage == "with-choices"
    frames = [
        Frame(p.sse(p.text_completion(cid, model, piece, None)), paced=True) for piece in gen.pieces
    ]
    last = usage if on_last_choice else None
    frames.append(Frame(p.sse(p.text_completion(cid, model, "", gen.finish_reason, last))))
    if include and not on_last_choice:
        frames.append(Frame(p.sse(p.text_completion(cid, model, None, None, usage))))
    frames.append(Frame(p.DONE))
    return Reply(frames=frames)


_NATIVE_DIMENSIONS = {"text-embedding-3-large": 3072}


def embeddings(body: dict[str, Any], controls: Controls) -> Reply:
    model = _model(body)
    given = _required(body, "input")
    if given in ("", []):
        raise RequestError("'input' must not be empty.", param="input")
    # One string, one token array, a list of strings, or a list of token arrays.
    single = isinstance(given, str) or (
        isinstance(given, list) and all(isinstance(v, int) for v in given)
    )
    items = [given] if single else list(given) if isinstance(given, list) else [given]
    dimensions = body.get("dimensions", _NATIVE_DIMENSIONS.get(model, 1536))
    if (
        not isinstance(dimensions, int)
        or isinstance(dimensions, bool)
        or not 1 <= dimensions <= 8192
    ):
        raise RequestError(
            "Invalid 'dimensions': expected an integer from 1 to 8192.", param="dimensions"
        )
    encoding = body.get("encoding_format") or "float"
    if encoding not in ("float", "base64"):
        raise RequestError(
            "Invalid 'encoding_format': expected 'float' or 'base64'.", param="encoding_format"
        )
    vectors: list[list[float] | str] = []
    for item in items:
        # Seeded per input, so a text has the same vector alone or in any batch.
        digest = hashlib.sha256(orjson.dumps([model, item])).digest()
        vector = p.embedding_vector(int.from_bytes(digest[:8], "big"), dimensions)
        vectors.append(p.encode_base64(vector) if encoding == "base64" else vector)
    prompt = tokens.count_input(given, model)
    usage = None if controls.usage == "omit" else {"prompt_tokens": prompt, "total_tokens": prompt}
    return Reply(body=p.embeddings_body(model, vectors, usage))


def responses(body: dict[str, Any], controls: Controls) -> Reply:
    model = _model(body)
    seed = p.request_seed(body)
    gen = _generation(body, controls, seed, "max_output_tokens")
    prompt = tokens.count_input(body.get("input"), model)
    if isinstance(body.get("instructions"), str):
        prompt += tokens.count_text(body["instructions"], model)
    counts = _counts(prompt, gen, model, controls)
    usage = None
    if counts is not None:
        usage = p.responses_usage(
            counts[0], counts[1], cached=counts[2], reasoning=controls.reasoning_tokens
        )
    rid, mid = p.ident("resp_", seed), p.ident("msg_", seed)
    status = "incomplete" if gen.finish_reason == "length" else "completed"
    part = p.output_text_part(gen.text)
    final = p.response_object(
        rid, model, body, status=status, output=[p.output_message(mid, status, [part])], usage=usage
    )
    if body.get("stream") is not True:
        return Reply(body=final)

    frames: list[Frame] = []

    def emit(kind: str, *, paced: bool = False, **fields: Any) -> None:
        event = {"type": kind, **fields, "sequence_number": len(frames)}
        frames.append(Frame(p.sse(event, kind), paced))

    started = p.response_object(rid, model, body, status="in_progress", output=[])
    place: dict[str, Any] = {"item_id": mid, "output_index": 0, "content_index": 0}
    emit("response.created", response=started)
    emit("response.in_progress", response=started)
    emit(
        "response.output_item.added", output_index=0, item=p.output_message(mid, "in_progress", [])
    )
    emit("response.content_part.added", **place, part=p.output_text_part(""))
    for piece in gen.pieces:
        emit("response.output_text.delta", paced=True, **place, delta=piece, logprobs=[])
    emit("response.output_text.done", **place, text=gen.text, logprobs=[])
    emit("response.content_part.done", **place, part=part)
    emit("response.output_item.done", output_index=0, item=final["output"][0])
    emit(f"response.{status}", response=final)
    return Reply(frames=frames)


def models(_: dict[str, Any], __: Controls) -> Reply:
    return Reply(body=p.model_list())


def model(model_id: str) -> Reply:
    if model_id not in p.MODELS:
        message = f"The model `{model_id}` does not exist or you do not have access to it."
        return Reply(404, p.error(message, code="model_not_found"))
    return Reply(body=p.model_object(model_id))


# POST endpoints that take a JSON body.
JSON_ENDPOINTS: dict[str, Callable[[dict[str, Any], Controls], Reply]] = {
    "/v1/chat/completions": chat,
    "/v1/completions": completions,
    "/v1/embeddings": embeddings,
    "/v1/responses": responses,
}
