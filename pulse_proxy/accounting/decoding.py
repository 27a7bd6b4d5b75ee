"""Decoding a compressed response body for accounting, never past a size limit.

The client gets the upstream's bytes as sent; only accounting reads a decoded copy,
to find ``usage``.  Compression makes that copy's size the upstream's choice: a 1 MB
gzip body of zeros expands to 1 GB, and an 800-byte brotli body to as much.  Decoded
whole, one such response took the accounting process from 54 MB to 2 GB, and a
process killed for memory has its batch resent, so the same body kills the next one.

So every codec here is driven incrementally, at most :data:`_STEP` bytes of output a
call, and decoding stops for good as soon as the output passes the limit
(``accounting.max_decoded_bytes``).  A codec whose library is missing, or whose
library cannot bound its output, is not decoded at all.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from types import ModuleType
from typing import Literal

# Output asked of a decompressor per call: big enough that the loop costs nothing next
# to the decoding, small enough that stopping overshoots the limit by at most this.
_STEP = 1 << 20

Problem = Literal["max_decoded_bytes", "unsupported_encoding", "corrupt_encoding"]


@dataclass(slots=True, frozen=True)
class Decoded:
    """The decoded body, or why there is none (``problem``)."""

    body: bytes | bytearray | None
    problem: Problem | None = None


class _TooLarge(Exception):
    pass


class _Unsupported(Exception):
    pass


def decode_body(chunks: Iterable[bytes], content_encoding: str, limit: int) -> Decoded:
    """The body as the upstream meant it, decoded through every listed coding (the
    last applied is undone first), each stage stopped past ``limit`` bytes."""
    data: bytes | bytearray = b"".join(chunks)
    codings = [c.strip().lower() for c in content_encoding.split(",")]
    codings = [c for c in codings if c and c != "identity"]
    try:
        for coding in reversed(codings):
            data = _collect(_pieces(coding, bytes(data)), limit)
    except _TooLarge:
        return Decoded(None, "max_decoded_bytes")
    except _Unsupported:
        return Decoded(None, "unsupported_encoding")
    except Exception:  # noqa: BLE001  # zlib.error, brotli.error, zstd errors: not what it says
        return Decoded(None, "corrupt_encoding")
    return Decoded(data)


def _collect(pieces: Iterator[bytes], limit: int) -> bytearray:
    """Join decoded pieces, giving up (and never asking for the next) past ``limit``."""
    out = bytearray()
    for piece in pieces:
        out += piece
        if len(out) > limit:
            raise _TooLarge
    return out


def _pieces(coding: str, data: bytes) -> Iterator[bytes]:
    if coding in ("gzip", "x-gzip"):
        return _zlib_pieces(data, 16 + zlib.MAX_WBITS)
    if coding == "deflate":
        # HTTP's "deflate" is zlib-wrapped, but some servers send raw deflate.
        wrapped = len(data) >= 2 and data[0] & 0x0F == 8 and ((data[0] << 8) | data[1]) % 31 == 0
        return _zlib_pieces(data, zlib.MAX_WBITS if wrapped else -zlib.MAX_WBITS)
    if coding == "br":
        return _brotli_pieces(data, _brotli_module())
    if coding == "zstd":
        return _zstd_pieces(data)
    raise _Unsupported


def _zlib_pieces(data: bytes, wbits: int) -> Iterator[bytes]:
    decompressor = zlib.decompressobj(wbits)
    rest = data
    while True:
        piece = decompressor.decompress(rest, _STEP)
        yield piece
        rest = decompressor.unconsumed_tail
        # A full piece with no input left may still have output pending (a long match).
        if decompressor.eof or (not rest and len(piece) < _STEP):
            return


def _brotli_module() -> ModuleType:
    """``brotli`` or ``brotlicffi``, provided it can bound its output (both since 1.2,
    ``output_buffer_limit``); an older one would expand a bomb whole in one call."""
    for name in ("brotli", "brotlicffi"):
        try:
            module = __import__(name)
        except ImportError:
            continue
        if hasattr(module.Decompressor, "can_accept_more_data"):
            return module
    raise _Unsupported


def _brotli_pieces(data: bytes, brotli: ModuleType) -> Iterator[bytes]:
    decompressor = brotli.Decompressor()
    yield decompressor.process(data, output_buffer_limit=_STEP)
    while not decompressor.can_accept_more_data():  # output still pending
        yield decompressor.process(b"", output_buffer_limit=_STEP)


def _zstd_pieces(data: bytes) -> Iterator[bytes]:
    try:
        from compression import zstd  # type: ignore[import-not-found]  # Python 3.14+
    except ImportError:
        return _zstandard_pieces(data)
    return _stdlib_zstd_pieces(data, zstd)


def _stdlib_zstd_pieces(data: bytes, zstd: ModuleType) -> Iterator[bytes]:
    rest = data
    while rest:  # one decompressor per frame; a body may hold several
        decompressor = zstd.ZstdDecompressor()
        yield decompressor.decompress(rest, _STEP)
        while not decompressor.eof and not decompressor.needs_input:
            yield decompressor.decompress(b"", _STEP)
        if not decompressor.eof:
            return
        rest = decompressor.unused_data


def _zstandard_pieces(data: bytes) -> Iterator[bytes]:
    try:
        import zstandard  # type: ignore[import-not-found]
    except ImportError:
        raise _Unsupported from None
    reader = zstandard.ZstdDecompressor().stream_reader(data, read_across_frames=True)
    while piece := reader.read(_STEP):
        yield piece
