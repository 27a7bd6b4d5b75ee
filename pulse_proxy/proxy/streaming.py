"""Usage in chat streams: asked for on the client's behalf, then hidden from it.

A streamed chat completion reports its token usage only if the request says
``stream_options.include_usage``; most clients do not, and without it the event
would have to count tokens locally.  So the proxy adds the option to the request
(:func:`inject_stream_usage`) and takes out of the answer what the option adds
(:class:`UsageChunkFilter`): the client gets the stream it asked for, and the
capture keeps the upstream's own usage.  Both sit on the hot path of chat requests,
so they look for the few bytes that matter rather than parse every body and chunk.
"""

from __future__ import annotations

import re

import orjson

from pulse_proxy.proxy.sse import SSEFramer, parse_frame

_STREAM_KEY = b'"stream"'
_TRUE_AFTER_KEY = re.compile(rb"\s*:\s*true")


def _last_key(data: bytes, key: bytes, after_key: re.Pattern[bytes], end: int | None = None) -> int:
    """Where the last ``key`` before ``end`` starts in ``data`` followed by what
    ``after_key`` matches; -1 if none.

    From the end, because what the proxy looks for sits there: clients (the OpenAI
    SDKs among them) put ``stream`` after the messages, and OpenAI sends the usage
    chunk last.  ``bytes.rfind`` does the scanning and the pattern only checks what
    follows each hit: a pattern searching the whole body costs several times more."""
    position = data.rfind(key, 0, len(data) if end is None else end)
    while position >= 0 and not after_key.match(data, position + len(key)):
        position = data.rfind(key, 0, position)
    return position


def inject_stream_usage(body: bytes) -> bytes | None:
    """The body with ``stream_options.include_usage`` added when a stream lacks it.

    Only chat streams are touched, and only bodies that parse: anything else goes to
    the upstream byte for byte, so the upstream answers malformed JSON itself.
    """
    if _last_key(body, _STREAM_KEY, _TRUE_AFTER_KEY) < 0:
        return None  # most bodies are not streams: no need to parse them here
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(parsed, dict) or parsed.get("stream") is not True:
        return None
    options = parsed.get("stream_options")
    if isinstance(options, dict) and options.get("include_usage"):
        return None
    if options is not None and not isinstance(options, dict):
        return None
    if options is None:
        # Append the key to the client's own bytes rather than re-encoding them: the
        # rest of the body stays byte for byte as sent, and a large prompt is not
        # serialised again on the event loop.  No duplicate key can arise: the parsed
        # object has no stream_options at all.
        end = body.rstrip()
        if end.endswith(b"}"):
            return b"".join((memoryview(end)[:-1], b',"stream_options":{"include_usage":true}}'))
    parsed["stream_options"] = {**(options or {}), "include_usage": True}
    return orjson.dumps(parsed)


# Every chunk of a usage-enabled stream says ``"usage": null``; only a usage object
# can mark the chunk to hide.
_USAGE_KEY = b'"usage"'
_OBJECT_AFTER_KEY = re.compile(rb"\s*:\s*\{")


def is_hidden_usage_frame(frame: bytes) -> bool:
    """The usage-only chunk we asked for on the client's behalf (``choices: []``)."""
    return _last_key(frame, _USAGE_KEY, _OBJECT_AFTER_KEY) >= 0 and _is_usage_only(frame)


def _is_usage_only(frame: bytes) -> bool:
    """Whether a frame known to hold a usage object is the usage-only chunk."""
    payload: bytes | memoryview
    if frame.startswith(b"data:") and frame.find(b"\n") >= len(frame) - 2 and b"\r" not in frame:
        # The event's only line, a data line, as OpenAI sends it: parsed in place (the
        # trailing newlines are JSON whitespace).
        payload = memoryview(frame)[5:]
    else:
        event = parse_frame(frame)
        if event is None:
            return False
        payload = event.data.encode()
    try:
        data = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return False
    return isinstance(data, dict) and data.get("choices") == [] and bool(data.get("usage"))


def _drop_usage_frame(data: bytes) -> tuple[bytes, bool]:
    """``data`` (whole LF-framed events) without the hidden usage frame, and whether
    it held one.

    The search runs from the end: OpenAI sends the usage chunk last, just before
    ``[DONE]``, and every chunk before it says ``"usage": null``, so a forward search
    would stop at each of those first.  A frame holding a usage object is judged once;
    the frames kept are never split or copied apart.
    """
    found = _last_key(data, _USAGE_KEY, _OBJECT_AFTER_KEY)
    while found >= 0:
        before = data.rfind(b"\n\n", 0, found)
        start = 0 if before < 0 else before + 2
        after = data.find(b"\n\n", found)
        end = len(data) if after < 0 else after + 2
        if _is_usage_only(data[start:end]):
            view = memoryview(data)
            return b"".join((view[:start], view[end:])), True
        found = _last_key(data, _USAGE_KEY, _OBJECT_AFTER_KEY, start)  # on in the frame before
    return data, False


# The most bytes of an unfinished frame the filter holds back.  The frames it exists
# for are small: the usage-only chunk is a few hundred bytes and a chat chunk carries
# one delta (a whole answer, for an upstream that sends it in one piece, is still far
# below this).  A longer run without a blank line is not a stream of chat chunks (an
# upstream that never separates its events, or one huge event): holding it whole
# would withhold the stream from the client and grow memory with its size, so past
# this the held bytes go out and the rest of that stream is relayed untouched.
MAX_HELD_FRAME_BYTES = 1 << 20

# How the key the client did not ask for ends a chunk, byte for byte, in what OpenAI
# and the bundled mock send: the last key of a compact JSON object on the event's only
# line, ``data: {...,"usage":null}``.
_NULL_USAGE_END = b',"usage":null}\n\n'
_NULL_USAGE_KEEP = b"}\n\n"
_NULL_USAGE_LEN = len(_NULL_USAGE_END)


def _strip_null_usage(data: bytes) -> bytes:
    """``data`` (whole LF-framed events) without the ``"usage":null`` member that
    ``include_usage`` adds to every chunk.

    Removed only where it is exact without parsing: an event that is one line,
    ``data: {`` or ``data:{`` through ``,"usage":null}``.  In valid JSON that member
    is then the top-level object's last one (a ``"`` inside a string is escaped, and
    the line's last ``}`` closes the object), so dropping those bytes leaves the
    same object minus that key.  Any other shape is left as sent.
    """
    hit = data.find(_NULL_USAGE_END)
    if hit < 0:
        return data
    parts: list[bytes] = []
    kept_from = 0
    while hit >= 0:
        line = data.rfind(b"\n", 0, hit) + 1
        if (line == 0 or (line >= 2 and data[line - 2] == 0x0A)) and (
            data.startswith(b"data: {", line) or data.startswith(b"data:{", line)
        ):
            parts.append(data[kept_from:hit])
            kept_from = hit + _NULL_USAGE_LEN
        hit = data.find(_NULL_USAGE_END, hit + _NULL_USAGE_LEN)
    if not parts:
        return data
    parts.append(data[kept_from:])
    return _NULL_USAGE_KEEP.join(parts)


class UsageChunkFilter:
    """Hides what ``include_usage``, asked for on the client's behalf, adds to a stream:
    the usage-only chunk, and the ``"usage":null`` key on every other chunk (where its
    shape is exact, see :func:`_strip_null_usage`).

    Whole frames are relayed as soon as they are complete (a client cannot use half an
    event anyway); only a trailing partial frame waits for its next chunk, and at most
    :data:`MAX_HELD_FRAME_BYTES` of it.  A stream carries one usage chunk (OpenAI: "an
    additional chunk ... before the data: [DONE] message"), so once it is gone the
    rest of the stream passes untouched.
    """

    __slots__ = ("_done", "_framer", "_held", "_held_bytes")

    def __init__(self) -> None:
        # The unfinished frame's pieces, joined only once its end arrives: joining on
        # every chunk would copy a long frame over and over.
        self._held: list[bytes] = []
        self._held_bytes = 0
        self._framer: SSEFramer | None = None
        self._done = False

    def feed(self, chunk: bytes) -> bytes:
        if self._done:
            return chunk
        if self._framer is None and b"\r" in chunk:
            self._framer = SSEFramer()  # CRLF line endings: use the general framer
            chunk = self._release(chunk)
        if self._framer is not None:
            kept = self._keep(self._framer.feed(chunk))
            if not self._done and self._framer.pending > MAX_HELD_FRAME_BYTES:
                self._done = True
                kept += self._framer.flush()
            return kept
        last = chunk.rfind(b"\n\n")
        if last >= 0:
            cut = last + 2
        elif chunk[:1] == b"\n" and self._held and self._held[-1][-1:] == b"\n":
            cut = 1  # the blank line straddles two chunks
        else:
            self._held.append(chunk)
            self._held_bytes += len(chunk)
            if self._held_bytes > MAX_HELD_FRAME_BYTES:
                self._done = True
                return self._release(b"")
            return b""
        complete = self._release(chunk[:cut] if cut < len(chunk) else chunk)
        rest = chunk[cut:] if cut < len(chunk) else b""
        kept, self._done = _drop_usage_frame(complete)
        kept = _strip_null_usage(kept)
        if rest:
            if self._done or len(rest) > MAX_HELD_FRAME_BYTES:
                self._done = True
                return kept + rest  # nothing left to hold back for, or too long to hold
            self._held.append(rest)
            self._held_bytes = len(rest)
        return kept

    def flush(self) -> bytes:
        rest = self._framer.flush() if self._framer is not None else self._release(b"")
        return b"" if rest and not self._done and is_hidden_usage_frame(rest) else rest

    def _release(self, chunk: bytes) -> bytes:
        """The held pieces followed by ``chunk``, and nothing held any more."""
        if not self._held:
            return chunk
        self._held.append(chunk)
        joined = b"".join(self._held)
        self._held, self._held_bytes = [], 0
        return joined

    def _keep(self, frames: list[bytes]) -> bytes:
        kept = []
        for frame in frames:
            if not self._done and is_hidden_usage_frame(frame):
                self._done = True
            elif self._done or not frame.endswith(b"\n\n") or b"\r" in frame:
                kept.append(frame)
            else:
                kept.append(_strip_null_usage(frame))
        if self._done and self._framer is not None:
            kept.append(self._framer.flush())  # nothing left to hold back for
        return b"".join(kept)


__all__ = [
    "MAX_HELD_FRAME_BYTES",
    "UsageChunkFilter",
    "inject_stream_usage",
    "is_hidden_usage_frame",
]
