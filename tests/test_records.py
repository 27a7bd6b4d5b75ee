"""The records' one declaration: a field added to it crosses the process boundary and
reaches the event line with no other change."""

from __future__ import annotations

import orjson

from pulse_proxy.accounting.process import CODEC, Assembler, build_accountant, finish_all
from pulse_proxy.records import Batch, Capture, Codec, Exchange
from pulse_proxy.settings import build_settings
from pulse_proxy.stats.tally import Tally
from tests.factories import make_exchange


class RegionExchange(Exchange):
    """An exchange with one field more, declared in this one place only."""

    region: str | None = None


class RegionCapture(Capture):
    exchange: RegionExchange


class RegionBatch(Batch[Tally]):
    unrendered: list[RegionExchange]
    exchanges: list[RegionExchange]


def _capture(exchange: Exchange) -> Capture:
    body = orjson.dumps({"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]})
    answer = orjson.dumps(
        {
            "model": "gpt-4o",
            "usage": {"prompt_tokens": 8, "completion_tokens": 2, "total_tokens": 10},
        }
    )
    kind = RegionCapture if isinstance(exchange, RegionExchange) else Capture
    return kind(
        exchange,
        body,
        [answer[:20], answer[20:]],
        captured_bytes=len(answer),
        response_content_type="application/json",
        api_key="sk-records-test",
        tags_header="team=a",
    )


def test_a_new_field_crosses_both_ways_and_reaches_the_line() -> None:
    """The field is set on the request side, survives the encoding to the accounting
    side, the accounting itself and the way back, and is in the rendered line, last."""
    codec = Codec(RegionCapture, RegionBatch)
    exchange = RegionExchange(
        request_id="r-1",
        method="POST",
        path="/v1/chat/completions",
        endpoint="chat",
        status_code=200,
        region="eu-west",
    )
    fields, _, bodies = codec.encode_captures((7, 0), [_capture(exchange)])
    seq, (capture,) = codec.decode_captures(fields, b"".join(bodies))
    assert seq == (7, 0) and isinstance(capture.exchange, RegionExchange)
    assert capture.exchange.region == "eu-west" and capture.api_key == "sk-records-test"

    settings = build_settings({"upstream": {"url": "mock"}, "accounting": {"key_hash_salt": "s"}})
    batch = Assembler(settings, exchanges=True).assemble(
        finish_all(build_accountant(settings), [capture])
    )
    seq, back = codec.decode_batch(codec.encode_batch(seq, batch))
    (returned,) = back.exchanges
    assert isinstance(returned, RegionExchange) and returned.region == "eu-west"
    assert returned.total_tokens == 10 and returned.tags == {"team": "a"}
    (line,) = back.lines
    event = orjson.loads(line)
    assert event["region"] == "eu-west" and list(event)[-1] == "region"
    assert back.figures.count == 1 and back.figures.failed == 0


def test_the_codec_keeps_every_field_by_name_not_by_position() -> None:
    """Every field of a capture and its exchange, each set to a value of its own,
    comes back under its own name; bodies (empty ones included) come back whole."""
    exchange = make_exchange(
        request_id="all",
        user="u",
        tags={"k": "v"},
        risk_flags=["pii"],
        usage_unread="backlog",
        prompt_text="p",
        completion_text="c",
        ended_at=12.5,
    )
    captures = [
        Capture(
            exchange,
            b"body",
            [b"", b"x"],
            captured_bytes=1,
            truncated=True,
            response_content_type="t",
            response_content_encoding="gzip",
            usage_injected=True,
            response_started=True,
            api_key="k",
            credentials="c",
            query=b"q=1",
            user_header="uh",
            tags_header="th",
        ),
        Capture(make_exchange(request_id="empty")),
    ]
    fields, _, bodies = CODEC.encode_captures((1, 2), captures)
    assert CODEC.decode_captures(fields, b"".join(bodies)) == ((1, 2), captures)
    for name in Capture.__struct_fields__:
        assert getattr(captures[0], name) != getattr(Capture(make_exchange()), name), name


def test_strings_without_a_utf8_form_still_cross() -> None:
    """A header byte that is not UTF-8 is kept as a lone surrogate, which MessagePack
    cannot carry, nor an integer past 64 bits: such a capture and its batch still cross, the string unchanged."""
    odd = "req-\udcff\udcfe"
    capture = Capture(
        make_exchange(upstream_request_id=odd, prompt_tokens=10**30), b"{}", [b"x"], user_header=odd
    )
    fields, _, bodies = CODEC.encode_captures((3, 0), [capture])
    assert CODEC.decode_captures(fields, b"".join(bodies)) == ((3, 0), [capture])
    batch = Batch(
        [b"line"], [capture.exchange], [capture.exchange], Tally.of([capture.exchange]), None
    )
    assert CODEC.decode_batch(CODEC.encode_batch((3, 0), batch)) == ((3, 0), batch)
