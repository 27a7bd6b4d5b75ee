"""Sliding-window counters: the arithmetic, apart from where the counts are kept.

A window of ``W`` seconds is counted in fixed slots of ``W``: the current slot's
count and the previous one's.  What a key has used "in the last ``W`` seconds" is
the current count plus the previous one weighted by how much of the previous slot
still lies inside the sliding window, ``prev × (1 − f) + cur`` with ``f`` the
fraction of the current slot gone by.  Two numbers per key, whatever the traffic
(a log of timestamps would grow with it), the same two numbers in memory and in
Redis, and an error against a true sliding log that only ever errs towards
letting a request through when traffic was uneven within the previous slot.
"""

from __future__ import annotations

import math


def slot(now: float, window_s: float) -> tuple[int, float]:
    """The slot ``now`` falls in and the fraction of it gone by."""
    position = now / window_s
    index = math.floor(position)
    return index, position - index


def used(current: float, previous: float, fraction: float) -> float:
    return previous * (1.0 - fraction) + current


def used_now(index: float, current: float, previous: float, now: float, window_s: float) -> float:
    """What counts last written in slot ``index`` still weigh at ``now``: all of them in
    the same slot, the decaying share of ``current`` one slot on, nothing after that."""
    slot_now, fraction = slot(now, window_s)
    if index == slot_now:
        return used(current, previous, fraction)
    if index == slot_now - 1:
        return used(0.0, current, fraction)
    return 0.0


def wait_s(
    current: float, previous: float, fraction: float, window_s: float, limit: float, cost: float
) -> float:
    """Seconds until ``cost`` more fits under ``limit``, nothing else being charged."""
    if cost > limit:
        return window_s  # never fits; a window is as honest an answer as any
    room = limit - cost
    if current <= room:
        if previous <= 0:
            return 0.0
        needed = 1.0 - (room - current) / previous
        return max(needed - fraction, 0.0) * window_s
    # The current slot alone is over: wait for it to become the previous one and decay.
    return (1.0 - fraction) * window_s + (1.0 - room / current) * window_s


def go_duration(seconds: float) -> str:
    """``6m0s``, ``1.5s``, ``20ms``: how OpenAI writes its ``x-ratelimit-reset-*``."""
    if seconds < 1:
        return f"{max(math.ceil(seconds * 1000), 0)}ms"
    minutes, rest = divmod(seconds, 60)
    text = f"{rest:.3f}".rstrip("0").rstrip(".") + "s"
    if minutes >= 60:
        hours, minutes = divmod(int(minutes), 60)
        return f"{hours}h{minutes}m{text}"
    return f"{int(minutes)}m{text}" if minutes else text
