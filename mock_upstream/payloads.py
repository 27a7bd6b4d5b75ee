"""OpenAI-shaped bodies and SSE frames, deterministic for a given request.

Every shape here validates against OpenAI's published OpenAPI description (the
tests check each one), so a client or proxy tested against the mock meets the same
fields it meets in production.  Nothing depends on the clock: ids derive from a hash
of the request and ``created`` is fixed, so the same request gives the same bytes.
Tests import these builders to construct expected answers and foreign upstreams.
"""

from __future__ import annotations

import base64
import hashlib
import math
import random
import struct
from dataclasses import dataclass
from typing import Any

import orjson

# Each word is exactly one token, with a leading space and capitalised, in both
# cl100k_base and o200k_base (the tests check this), so a text of N words is N tokens.
WORDS = (
    "the",
    "quick",
    "brown",
    "fox",
    "over",
    "lazy",
    "dog",
    "and",
    "then",
    "runs",
    "into",
    "forest",
    "where",
    "light",
    "on",
    "green",
    "while",
    "sing",
    "songs",
    "of",
    "morning",
    "time",
    "people",
    "walk",
    "along",
    "river",
    "bank",
    "to",
    "see",
    "water",
    "move",
    "past",
    "old",
    "stone",
    "bridge",
    "near",
    "small",
    "town",
    "with",
    "red",
    "a",
    "bright",
    "day",
    "sea",
    "blue",
    "sky",
    "warm",
    "wind",
    "soft",
    "rain",
    "clear",
    "night",
    "moon",
    "stars",
    "between",
    "trees",
    "path",
    "house",
    "door",
    "window",
    "table",
    "chair",
    "book",
    "paper",
    "letter",
    "word",
    "story",
    "song",
    "music",
    "heart",
    "mind",
    "hope",
    "dream",
    "voice",
    "world",
    "city",
    "road",
    "train",
    "ship",
    "little",
    "quiet",
    "long",
    "short",
    "open",
    "field",
    "cloud",
    "snow",
    "fire",
    "gold",
    "silver",
    "glass",
    "bird",
    "tree",
    "street",
    "market",
    "friend",
    "family",
    "home",
    "summer",
    "winter",
    "spring",
    "north",
    "south",
    "east",
    "west",
)

CREATED = 1_732_000_000
OWNER = "llm-pulse-mock"
FINGERPRINT = "fp_mock0001"
MODELS = (
    "gpt-4o",
    "gpt-4o-mini",
    "gpt-4.1",
    "gpt-4.1-mini",
    "gpt-4.1-nano",
    "gpt-5",
    "gpt-5-mini",
    "o3-mini",
    "o4-mini",
    "gpt-4",
    "gpt-4-turbo",
    "gpt-3.5-turbo",
    "gpt-3.5-turbo-instruct",
    "text-embedding-3-small",
    "text-embedding-3-large",
    "text-embedding-ada-002",
)
DONE = b"data: [DONE]\n\n"


def request_seed(body: dict[str, Any]) -> int:
    """A stable seed for a request body.

    The body is re-serialised with sorted keys and without ``stream``/``stream_options``,
    so whitespace, key order, and a proxy injecting ``include_usage`` do not change the
    answer, and a streamed call yields the same text as the plain one.
    """
    canonical = {k: v for k, v in body.items() if k not in ("stream", "stream_options")}
    digest = hashlib.sha256(orjson.dumps(canonical, option=orjson.OPT_SORT_KEYS)).digest()
    return int.from_bytes(digest[:8], "big")


def ident(prefix: str, seed: int) -> str:
    """``chatcmpl-…``, ``resp_…``: an OpenAI-looking id derived from the seed."""
    return f"{prefix}{seed:016x}"


@dataclass(slots=True, frozen=True)
class Generation:
    """The generated text as the pieces a stream sends, one token each."""

    pieces: tuple[str, ...]
    finish_reason: str  # "stop" | "length"

    @property
    def text(self) -> str:
        return "".join(self.pieces)


def generate(seed: int, count: int, finish_reason: str = "stop") -> Generation:
    """``count`` words chosen by a PRNG seeded from the request: a sentence-like text."""
    rng = random.Random(seed)
    pieces = [rng.choice(WORDS) for _ in range(count)]
    if pieces:
        pieces = [pieces[0].capitalize()] + [" " + word for word in pieces[1:]]
    return Generation(tuple(pieces), finish_reason)


# -- usage ----------------------------------------------------------------------------


def completion_usage(
    prompt: int, completion: int, *, cached: int = 0, reasoning: int = 0
) -> dict[str, Any]:
    """Chat/Completions usage; ``completion`` already includes ``reasoning``."""
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": cached, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": reasoning,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


def responses_usage(
    prompt: int, completion: int, *, cached: int = 0, reasoning: int = 0
) -> dict[str, Any]:
    """The Responses API's usage, with its own field names."""
    return {
        "input_tokens": prompt,
        "input_tokens_details": {"cached_tokens": cached, "cache_write_tokens": 0},
        "output_tokens": completion,
        "output_tokens_details": {"reasoning_tokens": reasoning},
        "total_tokens": prompt + completion,
    }


# -- chat completions -----------------------------------------------------------------


def chat_completion(
    cid: str, model: str, gen: Generation, usage: dict[str, Any] | None
) -> dict[str, Any]:
    message: dict[str, Any] = {
        "role": "assistant",
        "content": gen.text,
        "refusal": None,
        "annotations": [],
    }
    body: dict[str, Any] = {
        "id": cid,
        "object": "chat.completion",
        "created": CREATED,
        "model": model,
        "choices": [
            {"index": 0, "message": message, "logprobs": None, "finish_reason": gen.finish_reason}
        ],
        "service_tier": "default",
        "system_fingerprint": FINGERPRINT,
    }
    if usage is not None:
        body["usage"] = usage
    return body


def chat_chunk(
    cid: str,
    model: str,
    delta: dict[str, Any] | None,
    finish_reason: str | None = None,
    *,
    usage_field: bool = False,
    usage: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """One ``chat.completion.chunk``; ``delta=None`` makes the usage-only ``choices: []`` chunk.

    With ``usage_field`` (the request set ``include_usage``) every chunk carries a
    ``usage`` key, null except where the usage is, as OpenAI sends it.
    """
    choices = (
        []
        if delta is None
        else [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}]
    )
    chunk: dict[str, Any] = {
        "id": cid,
        "object": "chat.completion.chunk",
        "created": CREATED,
        "model": model,
        "service_tier": "default",
        "system_fingerprint": FINGERPRINT,
        "choices": choices,
    }
    if usage_field or usage is not None:
        chunk["usage"] = usage
    return chunk


# -- legacy completions -----------------------------------------------------------------


def text_completion(
    cid: str,
    model: str,
    text: str | None,
    finish_reason: str | None,
    usage: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A ``text_completion`` body; streamed chunks share the shape, and ``text=None`` gives
    the usage-only ``choices: []`` chunk."""
    choices = (
        []
        if text is None
        else [{"text": text, "index": 0, "logprobs": None, "finish_reason": finish_reason}]
    )
    body: dict[str, Any] = {
        "id": cid,
        "object": "text_completion",
        "created": CREATED,
        "model": model,
        "system_fingerprint": FINGERPRINT,
        "choices": choices,
    }
    if usage is not None:
        body["usage"] = usage
    return body


# -- embeddings -----------------------------------------------------------------------


def embedding_vector(seed: int, dimensions: int) -> list[float]:
    """A unit vector from the seed's random bytes, quick even at 3072 dimensions.

    The values are a prefix of one random stream, so a shorter ``dimensions`` is the
    longer vector truncated and renormalised, as OpenAI's text-embedding-3 models do.
    """
    fmt = f"<{dimensions}i"
    ints = struct.unpack(fmt, random.Random(seed).randbytes(4 * dimensions))
    norm = math.hypot(*ints) or 1.0
    # Round-trip through float32, the precision OpenAI serves, so base64 and float agree.
    packed = struct.pack(f"<{dimensions}f", *[v / norm for v in ints])
    return list(struct.unpack(f"<{dimensions}f", packed))


def encode_base64(vector: list[float]) -> str:
    """``encoding_format: base64``: little-endian float32 bytes, base64-encoded."""
    return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode("ascii")


def embeddings_body(
    model: str, embeddings: list[list[float] | str], usage: dict[str, Any] | None
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "object": "list",
        "data": [
            {"object": "embedding", "index": i, "embedding": e} for i, e in enumerate(embeddings)
        ],
        "model": model,
    }
    if usage is not None:
        body["usage"] = usage
    return body


# -- models ---------------------------------------------------------------------------


def model_object(model_id: str) -> dict[str, Any]:
    return {"id": model_id, "object": "model", "created": CREATED, "owned_by": OWNER}


def model_list() -> dict[str, Any]:
    return {"object": "list", "data": [model_object(m) for m in MODELS]}


# -- Responses API ----------------------------------------------------------------------


def output_text_part(text: str) -> dict[str, Any]:
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}


def output_message(item_id: str, status: str, parts: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "id": item_id,
        "type": "message",
        "role": "assistant",
        "status": status,
        "content": parts,
    }


def response_object(
    rid: str,
    model: str,
    request: dict[str, Any],
    *,
    status: str,
    output: list[dict[str, Any]],
    usage: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A ``response`` object; request settings are echoed as the API echoes them."""
    body: dict[str, Any] = {
        "id": rid,
        "object": "response",
        "created_at": CREATED,
        "status": status,
        "completed_at": CREATED + 1 if status == "completed" else None,
        "error": None,
        "incomplete_details": {"reason": "max_output_tokens"} if status == "incomplete" else None,
        "instructions": request.get("instructions"),
        "max_output_tokens": request.get("max_output_tokens"),
        "model": model,
        "output": output,
        "parallel_tool_calls": True,
        "previous_response_id": None,
        "reasoning": {"effort": None, "summary": None},
        "service_tier": "default",
        "store": request.get("store", True) is not False,
        "temperature": 1.0,
        "text": {"format": {"type": "text"}},
        "tool_choice": "auto",
        "tools": [],
        "top_p": 1.0,
        "truncation": "disabled",
        "metadata": {},
    }
    if usage is not None:
        body["usage"] = usage
    return body


# -- errors -----------------------------------------------------------------------------

# status -> (type, code, message), as OpenAI answers them.
ERRORS: dict[int, tuple[str, str | None, str]] = {
    400: ("invalid_request_error", None, "The request is invalid (mock)."),
    401: ("invalid_request_error", "invalid_api_key", "Incorrect API key provided (mock)."),
    403: (
        "request_forbidden",
        "unsupported_country_region_territory",
        "Country, region, or territory not supported (mock).",
    ),
    404: (
        "invalid_request_error",
        "model_not_found",
        "The model does not exist or you do not have access to it (mock).",
    ),
    409: ("invalid_request_error", None, "The request conflicts with another request (mock)."),
    422: ("invalid_request_error", None, "The request could not be processed (mock)."),
    429: ("requests", "rate_limit_exceeded", "Rate limit reached for requests (mock)."),
    500: ("server_error", None, "The server had an error while processing your request (mock)."),
    502: ("server_error", None, "Bad gateway (mock)."),
    503: (
        "server_error",
        None,
        "The engine is currently overloaded, please try again later (mock).",
    ),
    504: ("server_error", None, "The server timed out while processing your request (mock)."),
}


def error(
    message: str,
    kind: str = "invalid_request_error",
    *,
    param: str | None = None,
    code: str | None = None,
) -> dict[str, Any]:
    """OpenAI's error shape, which SDKs turn into their usual exceptions."""
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


def error_for_status(status: int) -> dict[str, Any]:
    """The canned error OpenAI would send with ``status`` (``X-Mock-Status``)."""
    default = (
        "server_error" if status >= 500 else "invalid_request_error",
        None,
        f"Mock error {status}.",
    )
    kind, code, message = ERRORS.get(status, default)
    return error(message, kind, code=code)


# -- SSE --------------------------------------------------------------------------------


def sse(data: dict[str, Any], event: str | None = None) -> bytes:
    """One SSE frame; the Responses API names each event, Chat Completions does not."""
    prefix = b"event: " + event.encode() + b"\n" if event else b""
    return prefix + b"data: " + orjson.dumps(data) + b"\n\n"
