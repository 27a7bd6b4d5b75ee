"""Local token counts reproduce the API's own usage, offline."""

from __future__ import annotations

import subprocess
import sys

import pytest
from tiktoken_ext import openai_public

from pulse_proxy.accounting import tokens

# OpenAI Cookbook, "How to count tokens with tiktoken": the API reported 129 prompt
# tokens for gpt-4 / gpt-3.5-turbo and 124 for gpt-4o / gpt-4o-mini.
COOKBOOK_MESSAGES = [
    {
        "role": "system",
        "content": "You are a helpful, pattern-following assistant that translates corporate jargon into plain English.",
    },
    {
        "role": "system",
        "name": "example_user",
        "content": "New synergies will help drive top-line growth.",
    },
    {
        "role": "system",
        "name": "example_assistant",
        "content": "Things working well together will increase revenue.",
    },
    {
        "role": "system",
        "name": "example_user",
        "content": "Let's circle back when we have more bandwidth to touch base on opportunities for increased leverage.",
    },
    {
        "role": "system",
        "name": "example_assistant",
        "content": "Let's talk later when we're less busy about how to do better.",
    },
    {
        "role": "user",
        "content": "This late pivot means we don't have time to boil the ocean for the client deliverable.",
    },
]


@pytest.mark.parametrize(
    ("model", "expected"),
    [
        ("gpt-4", 129),
        ("gpt-3.5-turbo", 129),
        ("gpt-4-0613", 129),
        ("gpt-4o", 124),
        ("gpt-4o-mini", 124),
    ],
)
def test_cookbook_counts(model: str, expected: int) -> None:
    """The Cookbook's example messages count exactly as the API billed them."""
    assert tokens.count_chat_messages(COOKBOOK_MESSAGES, model) == expected


@pytest.mark.parametrize(
    ("model", "encoding"),
    [
        ("gpt-4o", "o200k_base"),
        ("gpt-4o-2024-08-06", "o200k_base"),
        ("gpt-4.1-mini", "o200k_base"),
        ("o3-mini", "o200k_base"),
        ("gpt-5", "o200k_base"),
        ("some-local-llama", "o200k_base"),
        (None, "o200k_base"),
        ("gpt-4", "cl100k_base"),
        ("gpt-4-turbo", "cl100k_base"),
        ("gpt-3.5-turbo-0125", "cl100k_base"),
        ("text-embedding-3-small", "cl100k_base"),
        ("text-embedding-ada-002", "cl100k_base"),
        ("openai/gpt-4", "cl100k_base"),
    ],
)
def test_model_to_encoding(model: str | None, encoding: str) -> None:
    """Models map to their encoding; unknown ones get o200k_base."""
    assert tokens.encoding_name_for_model(model) == encoding


@pytest.mark.parametrize("name", ["cl100k_base", "o200k_base"])
def test_bundled_encodings_match_tiktoken_definitions(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Our pattern and special tokens equal tiktoken's own, loaded from bundled files."""
    ours = tokens.get_encoding(name)
    # Only the pattern and the special tokens are compared: no need to load ranks again.
    monkeypatch.setattr(openai_public, "load_tiktoken_bpe", lambda *a, **k: {})
    theirs = openai_public.ENCODING_CONSTRUCTORS[name]()
    assert ours._pat_str == theirs["pat_str"]
    assert ours._special_tokens == theirs["special_tokens"]
    assert ours.encode("hello world") == ours.encode_ordinary("hello world")


def test_inputs_of_every_shape() -> None:
    """Strings, batches, token arrays and content parts are all counted."""
    one = tokens.count_input("hello world", "gpt-4o")
    assert one == 2
    assert tokens.count_input(["hello world", "hello world"], "gpt-4o") == 4
    assert tokens.count_input([1, 2, 3], "gpt-4o") == 3
    parts = [{"role": "user", "content": [{"type": "input_text", "text": "hello world"}]}]
    assert tokens.count_input(parts, "gpt-4o") == 3 + 2 + 1 + 3  # message + text + role + priming


def test_names_and_tool_calls_are_counted() -> None:
    """A name adds one token; tool calls and tool definitions add their text."""
    base = [{"role": "user", "content": "hi"}]
    named = [{"role": "user", "name": "bob", "content": "hi"}]
    assert tokens.count_chat_messages(named, "gpt-4o") == tokens.count_chat_messages(
        base, "gpt-4o"
    ) + 1 + tokens.count_text("bob")
    tools = [
        {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}
    ]
    assert tokens.count_chat_messages(base, "gpt-4o", tools) > tokens.count_chat_messages(
        base, "gpt-4o"
    )
    call = [
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {"id": "c1", "type": "function", "function": {"name": "f", "arguments": '{"x": 1}'}}
            ],
        }
    ]
    assert tokens.count_chat_messages(call, "gpt-4o") > 3 + 3


def test_a_loaded_vocabulary_keeps_no_python_copy_of_its_ranks() -> None:
    """Counting works from tiktoken's Rust core alone: once loaded, an encoding holds
    no Python dict of its 200,000 ranks (some 28 MB per process for o200k_base)."""
    code = (
        "import gc, tracemalloc\n"
        "from pulse_proxy.accounting import tokens\n"
        "tracemalloc.start()\n"
        "assert tokens.count_text('hello world', 'gpt-4o') == 2\n"
        "gc.collect()\n"
        "print(tracemalloc.get_traced_memory()[0])\n"
    )
    held = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, check=True, timeout=120
    )
    assert int(held.stdout) < 4 * 1024 * 1024, held.stdout
