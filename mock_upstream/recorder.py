"""What the mock received, and how each answer ended, for tests to inspect.

A proxy test can only prove "the bytes reached the upstream unchanged" or "the
upstream saw the client hang up" by asking the upstream.  Each request gets one
record when it arrives (so a held stream is visible while it is held), and the
record is updated once, when the answer ends: completed, dropped by the mock on
purpose, or cut short by the client disconnecting.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Literal

Outcome = Literal["in_progress", "completed", "dropped", "client_disconnected"]

MAX_RECORDS = 200


@dataclass(slots=True)
class RequestRecord:
    method: str
    path: str
    query: str
    headers: list[tuple[str, str]]
    body_length: int
    body_sha256: str
    x_request_id: str | None  # as the client sent it
    request_id: str  # echoed, or generated when the client sent none
    received_at: float = field(default_factory=time.time)
    status: int | None = None
    stream: bool = False
    chunks_sent: int = 0
    outcome: Outcome = "in_progress"
    finished_at: float | None = None

    def finish(self, outcome: Outcome) -> None:
        """Settle the outcome once; the first verdict wins (a drop is not also a disconnect)."""
        if self.outcome == "in_progress":
            self.outcome = outcome
            self.finished_at = time.time()

    def to_json(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "path": self.path,
            "query": self.query,
            "headers": [list(pair) for pair in self.headers],
            "body_length": self.body_length,
            "body_sha256": self.body_sha256,
            "x_request_id": self.x_request_id,
            "request_id": self.request_id,
            "received_at": self.received_at,
            "finished_at": self.finished_at,
            "status": self.status,
            "stream": self.stream,
            "chunks_sent": self.chunks_sent,
            "outcome": self.outcome,
            "completed": self.outcome == "completed",
            "dropped": self.outcome == "dropped",
            "client_disconnected": self.outcome == "client_disconnected",
        }


class Recorder:
    """The last ``MAX_RECORDS`` requests, oldest first."""

    def __init__(self, size: int = MAX_RECORDS) -> None:
        self._records: deque[RequestRecord] = deque(maxlen=size)

    def add(self, record: RequestRecord) -> None:
        self._records.append(record)

    def all(self) -> list[RequestRecord]:
        return list(self._records)

    def find(self, request_id: str) -> RequestRecord | None:
        """The newest record whose received or echoed X-Request-ID matches."""
        for record in reversed(self._records):
            if request_id in (record.x_request_id, record.request_id):
                return record
        return None

    def clear(self) -> None:
        self._records.clear()
