"""Jailbreak matching: every :data:`JAILBREAK_PATTERNS` row compiled into one fast search.

The patterns are grouped into a trie by their first letters behind a word-start
character class (see the package docstring, "Fast on large prompts"), so a 400 KB prompt
costs a few milliseconds rather than one regex attempt per pattern per position.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

from pulse_proxy.risk.jailbreak_phrases import JAILBREAK_PATTERNS, JailbreakPattern

_APOSTROPHE = "['\u2019]"


def _words(fragment: str) -> str:
    """A space means any run of whitespace; an apostrophe matches the curly one too."""
    return fragment.replace(" ", r"\s+").replace("'", _APOSTROPHE)


def _lead_regex(lead: str) -> str:
    return r"\s+".join(re.escape(word) for word in lead.split(" ")).replace("'", _APOSTROPHE)


def _spaceless(char: str) -> bool:
    """Scripts written without spaces between words (CJK) have no word start to wait for."""
    return ord(char) >= 0x2E80


def _trie(leads: Mapping[str, list[str]], depth: int = 3) -> str:
    """``{lead: [rest regex, …]}`` → one alternation, shared prefixes factored out.

    ``re`` rejects a branch by its first literal without entering it, so factoring the
    first few letters of the leads into a trie makes a failed attempt cost a handful of
    comparisons instead of one attempt per lead.  Factoring stops at a space or
    apostrophe, which the leaf regex spells out (any whitespace, either apostrophe).
    """
    groups: dict[str, dict[str, list[str]]] = {}
    leaves: list[str] = []
    for lead, rests in leads.items():
        if depth and lead and lead[0].isalnum():
            groups.setdefault(lead[0], {})[lead[1:]] = rests
        else:
            leaves.append(f"{_lead_regex(lead)}(?:{'|'.join(dict.fromkeys(rests))})")
    branches = [f"{re.escape(char)}(?:{_trie(sub, depth - 1)})" for char, sub in groups.items()]
    return "|".join(branches + leaves)


# Where a word can start in (lower-cased) prose: whitespace, quotes, emphasis, brackets.
# ``re`` finds these in C; trying the patterns at every character instead costs ~5x.
_WORD_STARTS = " \t\n\"'*>\\[(«¿¡“‘"  # not '_': snake_case would make every '_' a stop


class JailbreakMatcher:
    """Runs a set of :class:`JailbreakPattern` over text at the speed of a single regex.

    Latin, Cyrillic, etc. leads are tried only after a word-start character, behind a
    one-character look-ahead on the leads' first letters; leads in scripts without spaces
    (CJK) get their own regex, run only when the text is not pure ASCII (an O(1) check).
    """

    def __init__(self, patterns: Iterable[JailbreakPattern]) -> None:
        words: dict[str, list[str]] = {}
        spaceless: dict[str, list[str]] = {}
        for pattern in patterns:
            for lead in pattern.leads:
                group = spaceless if _spaceless(lead[0]) else words
                group.setdefault(lead, []).append(_words(pattern.rest))
        firsts = "".join(sorted({re.escape(lead[0]) for lead in words}))
        self._words = (
            re.compile(f"[{_WORD_STARTS}](?=[{firsts}])(?:{_trie(words)})") if words else None
        )
        self._spaceless = re.compile(_trie(spaceless)) if spaceless else None

    def search(self, text: str) -> bool:
        """Whether any pattern matches ``text`` (any case)."""
        # Lower-casing once (in C) is far cheaper than re.IGNORECASE, which would also
        # stop ``re`` from skipping ahead to candidate positions.
        lowered = text.lower()
        if self._words is not None and self._words.search(" " + lowered):
            return True
        if self._spaceless is not None and not lowered.isascii():
            return self._spaceless.search(lowered) is not None
        return False


_JAILBREAK = JailbreakMatcher(JAILBREAK_PATTERNS)
