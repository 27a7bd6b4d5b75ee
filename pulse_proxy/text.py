"""Making untrusted text safe to put in a log line.

Model names, user ids, tag values and upstream error messages are client- or
provider-controlled.  JSON output escapes them anyway, but console output and the
tools people pipe logs into do not; escaping control characters (and the Unicode line
separators) at the source means a prompt can never forge a log line in any format.
"""

from __future__ import annotations

import re

# C0 and C1 controls (C1 includes CSI, U+009B, which some terminals obey like ESC [)
# and the Unicode line separators.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    return {"\n": "\\n", "\r": "\\r", "\t": "\\t"}.get(char) or f"\\u{ord(char):04x}"


def escape_control(text: str) -> str:
    if _CONTROL.search(text) is None:
        return text
    return _CONTROL.sub(_escape, text)


def truncate(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
