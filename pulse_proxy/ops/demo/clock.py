"""Demo time: the run's clock and how its seconds are written."""

from __future__ import annotations

import asyncio
import time
from datetime import datetime


class DemoClock:
    """Demo seconds since the start: real seconds × speed, on the monotonic clock."""

    def __init__(self, speed: float) -> None:
        self.speed = speed
        self._start = time.monotonic()

    def now(self) -> float:
        return (time.monotonic() - self._start) * self.speed

    async def until(self, at: float) -> None:
        delay = (at - self.now()) / self.speed
        if delay > 0:
            await asyncio.sleep(delay)

    def real(self, seconds: float) -> float:
        return seconds / self.speed


def clock_text(seconds: float) -> str:
    """``m:ss`` of demo time."""
    whole = max(0, int(seconds))
    return f"{whole // 60}:{whole % 60:02d}"


def duration_text(seconds: float) -> str:
    whole = max(0, round(seconds))
    return f"{whole // 60}m{whole % 60:02d}s" if whole >= 60 else f"{whole}s"


def epoch(rfc3339: str) -> float:
    return datetime.fromisoformat(rfc3339).timestamp()
