"""The flag names a scan can raise, and the default limits every entry point shares."""

from __future__ import annotations

FLAGS: tuple[str, ...] = ("jailbreak", "long_prompt", "pii", "secret")
_FLAG_SET = frozenset(FLAGS)

DEFAULT_MAX_CHARS = 200_000
DEFAULT_LONG_PROMPT_TOKENS = 8000
