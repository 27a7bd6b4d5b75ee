"""How figures appear in the JSON bodies: window labels and rounding."""

from __future__ import annotations


def window_label(window_s: float) -> str:
    """``60`` -> ``"1m"``, ``3600`` -> ``"1h"``: the keys of the /pulse/stats body."""
    seconds = int(window_s)
    if seconds % 3600 == 0:
        return f"{seconds // 3600}h"
    if seconds % 60 == 0:
        return f"{seconds // 60}m"
    return f"{seconds}s"


def _r(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(value, digits)
