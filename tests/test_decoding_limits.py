"""Compressed answers that expand without bound: decoded for accounting only so far.

The proxy runs as a real process with its real accounting child, in front of an
upstream that sends a 1 GiB-expanding body as bytes with ``Content-Encoding`` set.
"""

from __future__ import annotations

import importlib.util
import struct
import zlib
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from conftest import accounting_child, proxy_process, run_server, wait_until
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

MIB = 1 << 20
EXPANDED_MIB = 1024  # each bomb expands to 1 GiB
# What decoding one bomb may add to the accounting process's peak memory.  The default
# accounting.max_decoded_bytes is 64 MiB; decoding whole would add more than 1 GiB.
GROWTH_BOUND = 200 * MIB


def gzip_bomb(mib: int) -> bytes:
    """``mib`` MiB of zeros as gzip (~1 KB a MiB): one fully flushed deflate segment
    repeated, since a full flush leaves no history for the next segment to depend on."""
    zeros = bytes(MIB)
    deflate = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    segment = deflate.compress(zeros) + deflate.flush(zlib.Z_FULL_FLUSH)
    final = deflate.flush()
    crc = 0
    for _ in range(mib):
        crc = zlib.crc32(zeros, crc)
    header = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"
    return header + segment * mib + final + struct.pack("<II", crc, (mib * MIB) & 0xFFFFFFFF)


class _Bits:
    """A brotli bit writer: values go in least significant bit first (RFC 7932 §2)."""

    def __init__(self) -> None:
        self.value = 0
        self.count = 0

    def put(self, value: int, width: int) -> None:
        self.value |= value << self.count
        self.count += width

    def bytes(self) -> bytes:
        return self.value.to_bytes((self.count + 7) // 8, "little")


def brotli_bomb(blocks: int) -> bytes:
    """``blocks`` × 16 MiB of zeros as brotli, 13 bytes a block, written by hand so the
    test needs no brotli library: each meta-block is one command, a literal 0 then a
    copy of 16 MiB - 1 bytes at distance 1 (RFC 7932 §9.2, simple prefix codes)."""
    bits = _Bits()
    bits.put(0, 1)  # WBITS = 16
    for _ in range(blocks):
        bits.put(0, 1)  # ISLAST
        bits.put(2, 2)  # MNIBBLES: 6 nibbles
        bits.put((1 << 24) - 1, 24)  # MLEN - 1
        bits.put(0, 1)  # ISUNCOMPRESSED
        bits.put(0, 3)  # one block type each for literals, commands, distances
        bits.put(0, 6)  # NPOSTFIX = 0, NDIRECT = 0
        bits.put(0, 2)  # the literal context mode
        bits.put(0, 2)  # one prefix code for literals, one for distances
        # One-symbol codes: literal 0; command 399 (insert 1, copy code 23); distance 16.
        for symbol, width in ((0, 8), (399, 10), (16, 6)):
            bits.put(1, 2)  # simple prefix code
            bits.put(0, 2)  # one symbol
            bits.put(symbol, width)
        bits.put((1 << 24) - 1 - 2118, 24)  # copy length: 2118 + extra
        bits.put(0, 1)  # distance extra bit: distance 1
    bits.put(1, 1)  # ISLAST
    bits.put(1, 1)  # ISLASTEMPTY
    return bits.bytes()


def _brotli_decodes() -> bool:
    """Whether this environment has a brotli able to bound its output (the proxy's
    child shares it): then the bomb is decoded up to the limit, else not at all."""
    for name in ("brotli", "brotlicffi"):
        if importlib.util.find_spec(name) is not None:
            module = __import__(name)
            if hasattr(module.Decompressor, "can_accept_more_data"):
                return True
    return False


@pytest.fixture(scope="module")
def bombs() -> dict[str, bytes]:
    return {"gzip": gzip_bomb(EXPANDED_MIB), "br": brotli_bomb(EXPANDED_MIB // 16)}


@pytest.fixture(scope="module")
def upstream(bombs: dict[str, bytes]) -> Iterator[str]:
    async def chat(request: Request) -> Response:
        coding = request.query_params.get("bomb")
        if coding is None:
            body = b'{"object":"chat.completion","model":"gpt-4o","choices":[],"usage":{"prompt_tokens":3,"completion_tokens":1,"total_tokens":4}}'
            return Response(body, media_type="application/json")
        return Response(
            bombs[coding], media_type="application/json", headers={"content-encoding": coding}
        )

    app = Starlette(routes=[Route("/v1/chat/completions", chat, methods=["POST"])])
    with run_server(app) as url:
        yield url


def _peak_rss(pid: int) -> int:
    """The process's peak resident memory (VmHWM), in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM")


@pytest.mark.parametrize("coding", ["gzip", "br"])
def test_a_decompression_bomb_is_decoded_no_further_than_the_limit(
    upstream: str, bombs: dict[str, bytes], coding: str
) -> None:
    """A 1 GiB-expanding gzip or brotli answer reaches the client byte for byte, costs the accounting process less than 200 MiB, and yields one event saying its usage was unreadable."""
    with proxy_process("--upstream", upstream + "/v1") as proc:
        child = accounting_child(proc.process.pid)
        request = {"model": "gpt-4o", "messages": [{"role": "user", "content": "Say hi."}]}
        with httpx.Client(base_url=proc.url + "/v1", timeout=30) as client:
            # A first, ordinary request loads what accounting loads lazily (tiktoken).
            assert client.post("/chat/completions", json=request).status_code == 200
            wait_until(lambda: len(proc.events("llm.request")) == 1, timeout=30)
            before = _peak_rss(child)
            with client.stream(
                "POST", "/chat/completions", params={"bomb": coding}, json=request
            ) as response:
                raw = b"".join(response.iter_raw())
                assert response.headers["content-encoding"] == coding
        assert raw == bombs[coding]
        wait_until(lambda: len(proc.events("llm.request")) == 2, timeout=60)
        after = _peak_rss(child)
        assert accounting_child(proc.process.pid) == child  # not killed and restarted
        code, stderr = proc.stop()
        assert code == 0, stderr
    assert after - before < GROWTH_BOUND, f"accounting grew by {(after - before) / MIB:.0f} MiB"
    events = [e for e in proc.events("llm.request") if e["path"] == "/v1/chat/completions"]
    assert len(events) == 2
    event = events[1]
    assert event["status_code"] == 200 and event["outcome"] == "success"
    expected = (
        "max_decoded_bytes" if coding == "gzip" or _brotli_decodes() else "unsupported_encoding"
    )
    assert event["usage_unread"] == expected
    assert (
        event["token_source"] == "tiktoken"
        and event["prompt_tokens"] == event["prompt_tokens_local"]
    )
    assert event["bytes_out"] == len(bombs[coding])
    assert events[0]["usage_unread"] is None and events[0]["token_source"] == "upstream"


def test_every_codec_stops_past_the_limit(bombs: dict[str, bytes]) -> None:
    """Each codec stops just past the limit instead of expanding the whole body, and a small body decodes in full."""
    from pulse_proxy.accounting.decoding import decode_body

    result = decode_body([bombs["gzip"]], "gzip", 8 * MIB)
    assert result.body is None and result.problem == "max_decoded_bytes"
    deflate = zlib.compress(bytes(32 * MIB))
    assert decode_body([deflate], "deflate", 8 * MIB).problem == "max_decoded_bytes"
    assert decode_body([deflate], "deflate", 32 * MIB).body == bytes(32 * MIB)
    raw = zlib.compressobj(6, zlib.DEFLATED, -zlib.MAX_WBITS)
    assert decode_body([raw.compress(b'{"a":1}') + raw.flush()], "deflate", MIB).body == b'{"a":1}'
    expected = "max_decoded_bytes" if _brotli_decodes() else "unsupported_encoding"
    assert decode_body([bombs["br"]], "br", 8 * MIB).problem == expected
    assert decode_body([b"x"], "compress", MIB).problem == "unsupported_encoding"
    assert decode_body([bombs["gzip"]], "identity, gzip", 8 * MIB).problem == "max_decoded_bytes"


def test_zstd_stops_past_the_limit_when_a_zstd_library_is_present() -> None:
    """With zstandard installed, a zstd bomb stops at the limit and several frames decode as one body."""
    zstandard = pytest.importorskip("zstandard")
    from pulse_proxy.accounting.decoding import decode_body

    compressor = zstandard.ZstdCompressor()
    frames = compressor.compress(b'{"a":') + compressor.compress(b"1}")
    assert decode_body([frames], "zstd", MIB).body == b'{"a":1}'
    bomb = compressor.compress(bytes(256 * MIB))
    assert decode_body([bomb], "zstd", 8 * MIB).problem == "max_decoded_bytes"
