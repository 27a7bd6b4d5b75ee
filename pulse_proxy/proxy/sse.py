"""Incremental Server-Sent Events framing.

Network chunks split SSE frames anywhere: mid-line, mid-``\\r\\n``, mid-UTF-8
character.  :class:`SSEFramer` turns a byte stream into whole raw frames (terminator
included, bytes untouched, so a relayed frame is exactly what the upstream sent), and
:func:`parse_frame` reads one frame's ``event:`` and ``data:`` fields per the WHATWG
rules that matter here.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

# A frame ends at the first blank line; lines end in \n, \r\n or a lone \r.
_FRAME_END = re.compile(rb"(?:\r\n|\r(?!\n)|\n)(?:\r\n|\r(?!\n)|\n)")


class SSEFramer:
    """Feed bytes, get back complete frames as the raw bytes that carried them."""

    __slots__ = ("_buffer",)

    def __init__(self) -> None:
        self._buffer = b""

    @property
    def pending(self) -> int:
        """How many bytes of an unfinished frame are held."""
        return len(self._buffer)

    def feed(self, chunk: bytes) -> list[bytes]:
        data = self._buffer + chunk if self._buffer else chunk
        frames: list[bytes] = []
        start = 0
        # The held bytes end no frame (but in their last 3 bytes, which may begin a
        # terminator of up to 4): search only from there, not the whole frame again.
        search_from = max(len(self._buffer) - 3, 0)
        while True:
            match = _FRAME_END.search(data, search_from)
            if match is None:
                break
            # A lone \r at the very end may be the first half of \r\n: wait for more.
            if match.end() == len(data) and data.endswith(b"\r"):
                break
            frames.append(data[start : match.end()])
            start = search_from = match.end()
        self._buffer = data[start:]
        return frames

    def flush(self) -> bytes:
        """What is left when the stream ends: an unterminated last frame, if any."""
        rest, self._buffer = self._buffer, b""
        return rest


@dataclass(slots=True)
class SSEEvent:
    event: str
    data: str


def parse_frame(frame: bytes) -> SSEEvent | None:
    """The frame's event name and joined data lines; None for comments-only frames."""
    text = frame.decode("utf-8", errors="replace")
    event = "message"
    data: list[str] = []
    seen_data = False
    for line in text.splitlines():
        if not line or line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "data":
            data.append(value)
            seen_data = True
        elif name == "event":
            event = value
    if not seen_data:
        return None
    return SSEEvent(event, "\n".join(data))


def split_frames(data: bytes) -> list[bytes]:
    """A whole captured stream cut into raw frames (the last may be unterminated)."""
    if b"\r" not in data:
        frames = [frame + b"\n\n" for frame in data.split(b"\n\n")]
        frames[-1] = frames[-1][:-2]
        if not frames[-1]:
            frames.pop()
        return frames
    framer = SSEFramer()
    frames = framer.feed(data)
    tail = framer.flush()
    if tail:
        frames.append(tail)
    return frames


def iter_events(chunks: Iterable[bytes]) -> Iterator[SSEEvent]:
    """Decode a whole captured stream, an unterminated last frame included."""
    for frame in split_frames(b"".join(chunks)):
        parsed = parse_frame(frame)
        if parsed is not None:
            yield parsed
