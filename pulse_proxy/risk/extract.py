"""The text a request body asks the model to read, across the OpenAI-shaped APIs."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

_TEXT_PART_TYPES = frozenset({"text", "input_text", "output_text"})


def _content_text(content: Any, out: list[str]) -> None:
    """Text of a message ``content``: a string, or parts of which only text counts."""
    if isinstance(content, str):
        out.append(content)
    elif isinstance(content, list):
        for part in content:
            if isinstance(part, str):
                out.append(part)
            elif isinstance(part, dict) and part.get("type", "text") in _TEXT_PART_TYPES:
                text = part.get("text")
                if isinstance(text, str):
                    out.append(text)


def _input_text(value: Any, out: list[str]) -> None:
    """``prompt`` / ``input``: a string, strings, token arrays (skipped) or Responses items."""
    if isinstance(value, str):
        out.append(value)
        return
    if not isinstance(value, list):
        return
    for item in value:
        if isinstance(item, str):
            out.append(item)
        elif isinstance(item, dict):
            item_type = item.get("type")
            if item_type in _TEXT_PART_TYPES:
                _content_text([item], out)
            elif item_type == "function_call_output" and isinstance(item.get("output"), str):
                out.append(item["output"])
            elif "content" in item:
                _content_text(item["content"], out)


def extract_text(body: Mapping[str, Any]) -> str:
    """The text a request asks the model to read, joined by newlines; images/audio skipped.

    Covers chat ``messages`` (string or content-part arrays), completions ``prompt``,
    embeddings and Responses ``input`` (strings, lists, items with ``input_text`` parts,
    tool outputs) and Responses ``instructions``.
    """
    return "\n".join(extract_texts(body))


def extract_texts(body: Mapping[str, Any]) -> list[str]:
    """The same texts as :func:`extract_text`, one per message or part."""
    out: list[str] = []
    instructions = body.get("instructions")
    if isinstance(instructions, str):
        out.append(instructions)
    messages = body.get("messages")
    if isinstance(messages, list):
        for message in messages:
            if isinstance(message, dict):
                _content_text(message.get("content"), out)
    _input_text(body.get("prompt"), out)
    _input_text(body.get("input"), out)
    return out
