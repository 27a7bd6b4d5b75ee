"""Local token counting with tiktoken, fully offline.

tiktoken normally downloads its vocabularies on first use; a sidecar in a locked-down
cluster cannot, so both vocabularies ship inside the package (``_vocab/``) and are
loaded with tiktoken's own loader, which verifies the same sha256 tiktoken pins.
The regex patterns and special-token ids are tiktoken's definitions for these two
encodings (``tiktoken_ext/openai_public.py``); ``tests/test_tokens.py`` checks they
still match the installed tiktoken.

Counting follows OpenAI's Cookbook ("How to count tokens with tiktoken"): 3 tokens per
chat message, +1 per ``name``, +3 to prime the reply.  That reproduces the API's own
``usage.prompt_tokens`` for plain messages; tool definitions and content parts are
counted as their text, which is close but not exact (the API's internal rendering of
tools is unpublished), which is why the upstream's ``usage`` always wins when present.
"""

from __future__ import annotations

import functools
from importlib import resources
from typing import Any

import tiktoken
from tiktoken.load import load_tiktoken_bpe

_ENDOFTEXT = "<|endoftext|>"
_FIM_PREFIX = "<|fim_prefix|>"
_FIM_MIDDLE = "<|fim_middle|>"
_FIM_SUFFIX = "<|fim_suffix|>"
_ENDOFPROMPT = "<|endofprompt|>"

_CL100K_PATTERN = (
    r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+"""
    r"""|\s++$|\s*[\r\n]|\s+(?!\S)|\s"""
)
_O200K_PATTERN = "|".join(  # noqa: FLY002 - one alternative a line, as tiktoken writes it
    [
        r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
        r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
        r"""\p{N}{1,3}""",
        r""" ?[^\s\p{L}\p{N}]+[\r\n/]*""",
        r"""\s*[\r\n]+""",
        r"""\s+(?!\S)""",
        r"""\s+""",
    ]
)

_ENCODINGS: dict[str, tuple[str, str, dict[str, int]]] = {
    "cl100k_base": (
        "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7",
        _CL100K_PATTERN,
        {
            _ENDOFTEXT: 100257,
            _FIM_PREFIX: 100258,
            _FIM_MIDDLE: 100259,
            _FIM_SUFFIX: 100260,
            _ENDOFPROMPT: 100276,
        },
    ),
    "o200k_base": (
        "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d",
        _O200K_PATTERN,
        {_ENDOFTEXT: 199999, _ENDOFPROMPT: 200018},
    ),
}

ENCODING_NAMES = tuple(_ENCODINGS)

# Longest prefix wins; anything unmatched (new or unknown models) gets o200k_base,
# the encoding of every current OpenAI model family.
_CL100K_PREFIXES = (
    "gpt-4-",
    "gpt-3.5",
    "gpt-35",
    "text-embedding-3",
    "text-embedding-ada",
    "davinci-002",
    "babbage-002",
)

TOKENS_PER_MESSAGE = 3
TOKENS_PER_NAME = 1
REPLY_PRIMING = 3


@functools.cache
def get_encoding(name: str) -> tiktoken.Encoding:
    """Load one bundled encoding (cached: the first load costs ~0.5 s).

    tiktoken copies the ranks into its Rust core, which does all the encoding, and
    keeps the Python dict it was given only to pickle the encoding, which nothing here
    does.  That dict is 200,000 bytes keys and int values: emptying it returns ~28 MB
    (o200k_base; ~14 MB for cl100k_base) to every process that counts tokens.
    """
    expected_hash, pattern, special = _ENCODINGS[name]
    path = resources.files("pulse_proxy") / "_vocab" / f"{name}.tiktoken"
    ranks = load_tiktoken_bpe(str(path), expected_hash=expected_hash)
    encoding = tiktoken.Encoding(
        name, pat_str=pattern, mergeable_ranks=ranks, special_tokens=special
    )
    ranks.clear()
    return encoding


def encoding_name_for_model(model: str | None) -> str:
    """Map a model id (any provider prefix such as ``openai/`` stripped) to an encoding."""
    if not model:
        return "o200k_base"
    base = model.rsplit("/", 1)[-1].lower()
    if base == "gpt-4" or base.startswith(_CL100K_PREFIXES):
        # gpt-4-turbo, gpt-4-0613, gpt-4-32k ... but not gpt-4o / gpt-4.1 (no dash after 4).
        return "cl100k_base"
    return "o200k_base"


def encoding_for_model(model: str | None) -> tiktoken.Encoding:
    return get_encoding(encoding_name_for_model(model))


# Chat clients resend the whole conversation every turn, and most requests share a
# system prompt, so the same message texts are counted again and again.  Counting is
# the costliest step of accounting (~0.3 µs per character); a bounded cache keyed by
# (encoding, text) makes a turn cost only its new text.  Huge texts skip the cache to
# keep its memory bounded (~8192 entries of at most 32 KiB).
_CACHE_MAX_CHARS = 32 * 1024


@functools.lru_cache(maxsize=8192)
def _cached_count(encoding_name: str, text: str) -> int:
    return len(get_encoding(encoding_name).encode_ordinary(text))


def _count(encoding_name: str, text: str) -> int:
    if not text:
        return 0
    if len(text) > _CACHE_MAX_CHARS:
        return len(get_encoding(encoding_name).encode_ordinary(text))
    return _cached_count(encoding_name, text)


def count_text(text: str, model: str | None = None) -> int:
    """Tokens in plain text; special-token strings are counted as ordinary text."""
    return _count(encoding_name_for_model(model), text)


def _text_of(value: Any) -> str:
    """Flatten message content (string, content parts, tool calls) into countable text."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return "".join(_text_of(v) for v in value)
    if isinstance(value, dict):
        kind = value.get("type")
        if kind in ("text", "input_text", "output_text") and isinstance(value.get("text"), str):
            return str(value["text"])
        if "function" in value and isinstance(value["function"], dict):
            fn = value["function"]
            return _text_of(fn.get("name")) + _text_of(fn.get("arguments"))
        parts = []
        for key, item in value.items():
            if key in ("type", "id", "image_url", "input_audio", "detail"):
                continue
            parts.append(_text_of(item))
        return "".join(parts)
    return str(value)


def count_chat_messages(
    messages: list[Any], model: str | None = None, tools: list[Any] | None = None
) -> int:
    """Prompt tokens for a chat request, the Cookbook way (see module docstring)."""
    enc = encoding_name_for_model(model)
    total = 0
    for message in messages:
        total += TOKENS_PER_MESSAGE
        if not isinstance(message, dict):
            total += _count(enc, _text_of(message))
            continue
        for key, value in message.items():
            if key == "name":
                total += TOKENS_PER_NAME
            total += _count(enc, _text_of(value))
    if tools:
        total += _count(enc, _text_of(tools))
    return total + REPLY_PRIMING


def count_input(value: Any, model: str | None = None) -> int:
    """Tokens of a completions ``prompt``, an embeddings or Responses API ``input``.

    Lists of strings (batched prompts or inputs) are summed; pre-tokenised integer
    arrays count one token per integer, as the API does.
    """
    if value is None:
        return 0
    if isinstance(value, str):
        return count_text(value, model)
    if isinstance(value, list):
        if value and all(isinstance(v, int) for v in value):
            return len(value)
        if value and all(isinstance(v, dict) and "role" in v for v in value):
            return count_chat_messages(value, model)
        return sum(count_input(v, model) for v in value)
    return count_text(_text_of(value), model)


def count_prompt(body: dict[str, Any], endpoint: str, model: str | None) -> int | None:
    """The local tiktoken count of what the request asks the model to read."""
    if endpoint == "chat" and isinstance(body.get("messages"), list):
        tools = body.get("tools") if isinstance(body.get("tools"), list) else None
        return count_chat_messages(body["messages"], model, tools)
    if endpoint == "completions":
        return count_input(body.get("prompt"), model)
    if endpoint == "embeddings":
        return count_input(body.get("input"), model)
    if endpoint == "responses":
        count = count_input(body.get("input"), model)
        if isinstance(body.get("instructions"), str):
            count += count_text(body["instructions"], model)
        return count
    return None
