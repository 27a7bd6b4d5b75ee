"""A bounded ring of rendered ``llm.request`` lines, newest last.

Records are kept as the event's own bytes: filing a batch is one ``deque.extend`` on
the event loop (no parsing, no copying), and a query parses only what it looks at, off
the loop.  The deque's ``maxlen`` drops the oldest as new ones arrive, so memory is
the bound times a line's size (about 1 KB), whatever the traffic.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Collection


class RequestRing:
    """The last ``bound`` records, each numbered in the order it was filed.

    A record's number (its *sequence*) never changes, unlike its position, which
    shifts as records arrive and go: a page cursor is a sequence, so paging stays
    put while new requests are filed."""

    def __init__(self, bound: int) -> None:
        if bound <= 0:
            raise ValueError("a ring holds at least one record")
        self.bound = bound
        self._lines: deque[bytes] = deque(maxlen=bound)
        self._filed = 0

    def __len__(self) -> int:
        return len(self._lines)

    @property
    def filed(self) -> int:
        """Records filed since start: the sequence the next record will get."""
        return self._filed

    def file(self, lines: Collection[bytes]) -> None:
        """Keep ``lines`` (one batch, oldest first), forgetting the oldest past the bound."""
        self._lines.extend(lines)
        self._filed += len(lines)

    def snapshot(self) -> tuple[int, list[bytes]]:
        """The records oldest first and the sequence of the first of them.

        Taken on the event loop, where records are filed (a deque must not change
        while it is copied); the copy is then free to be read in a thread."""
        lines = list(self._lines)
        return self._filed - len(lines), lines
