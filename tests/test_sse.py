"""The SSE framer must find the same frames wherever the network splits the bytes."""

from __future__ import annotations

from pulse_proxy.proxy.sse import SSEFramer, iter_events, parse_frame

STREAM = (
    b'data: {"a": 1}\n\n'
    b'event: response.created\r\ndata: {"b":\r\ndata: 2}\r\n\r\n'
    b": keepalive comment\n\n" + "data: caf\u00e9 \u2603\n\n".encode() + b"data: [DONE]\n\n"
)


def _frames(chunks: list[bytes]) -> list[bytes]:
    framer = SSEFramer()
    out: list[bytes] = []
    for chunk in chunks:
        out.extend(framer.feed(chunk))
    tail = framer.flush()
    if tail:
        out.append(tail)
    return out


def test_every_two_way_split_gives_the_same_frames() -> None:
    """Splitting the stream at any byte offset yields identical raw frames."""
    whole = _frames([STREAM])
    assert b"".join(whole) == STREAM
    assert len(whole) == 5
    for cut in range(1, len(STREAM)):
        assert _frames([STREAM[:cut], STREAM[cut:]]) == whole, cut


def test_byte_at_a_time_gives_the_same_frames() -> None:
    """Feeding one byte at a time (mid-CRLF, mid-UTF-8) changes nothing."""
    assert _frames([bytes([b]) for b in STREAM]) == _frames([STREAM])


def test_parse_frame_joins_data_lines_and_reads_event_name() -> None:
    """Multi-line data is joined with newlines and the event name kept."""
    event = parse_frame(b'event: response.created\r\ndata: {"b":\r\ndata: 2}\r\n\r\n')
    assert event is not None
    assert event.event == "response.created"
    assert event.data == '{"b":\n2}'


def test_comment_only_frames_are_not_events() -> None:
    """Keepalive comments carry no data and produce no event."""
    assert parse_frame(b": ping\n\n") is None
    events = list(iter_events([STREAM]))
    assert [e.data for e in events] == ['{"a": 1}', '{"b":\n2}', "caf\u00e9 \u2603", "[DONE]"]


def test_unterminated_last_frame_is_still_decoded() -> None:
    """A stream cut before its blank line still yields its last event off-path."""
    events = list(iter_events([b"data: one\n\ndata: two"]))
    assert [e.data for e in events] == ["one", "two"]
