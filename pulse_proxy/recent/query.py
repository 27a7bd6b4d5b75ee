"""Which records a query asks for, and one page of them, newest first.

A record is an event line; it is parsed only once a cheap look at its bytes has not
already ruled it out.  Time bounds compare the line's ``timestamp`` text, which every
line carries at the same place, with the bounds written the same way (RFC 3339 UTC
with milliseconds sorts as time does); a wanted value (a model, a user…) must appear
in the line as its JSON text before the line is worth parsing.  Both only skip work:
the parsed record decides.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

# How every llm.request line starts (the log's envelope puts these first), and where
# its timestamp then sits.
_HEAD = b'{"event":"llm.request","timestamp":"'
_STAMP = slice(len(_HEAD), len(_HEAD) + len("2026-01-01T00:00:00.000Z"))


def stamp_at_or_after(epoch_s: float) -> bytes:
    """The earliest event timestamp at or after ``epoch_s``, as the line writes it.

    Event timestamps are whole milliseconds, so a bound between two of them rounds
    up: ``stamp >= this`` holds exactly when the record's millisecond is at or after
    the bound."""
    ms = math.ceil(epoch_s * 1000)
    seconds, millis = divmod(ms, 1000)
    text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))
    return f"{text}.{millis:03d}Z".encode()


def _stamp(epoch_s: float | None) -> bytes | None:
    return None if epoch_s is None else stamp_at_or_after(epoch_s)


@dataclass(frozen=True, kw_only=True)
class RequestFilter:
    """What a record must be to be shown.  Different filters must all hold; the values
    given for one of them are alternatives (``model=a&model=b``: either), except tags,
    which must all be on the record."""

    models: tuple[str, ...] = ()
    users: tuple[str, ...] = ()
    api_key_hashes: tuple[str, ...] = ()
    outcomes: tuple[str, ...] = ()
    flags: tuple[str, ...] = ()
    tags: tuple[tuple[str, str], ...] = ()
    min_latency_ms: float | None = None
    since: float | None = None  # epoch seconds, inclusive
    until: float | None = None  # epoch seconds, exclusive
    # Derived: each wanted value as the JSON text it would be in a line, and the time
    # bounds as timestamps.
    _needles: tuple[tuple[bytes, ...], ...] = field(init=False, repr=False, compare=False)
    _since: bytes | None = field(init=False, repr=False, compare=False)
    _until: bytes | None = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        needles = tuple(
            tuple(orjson.dumps(value) for value in values)
            for values in (self.models, self.users, self.api_key_hashes, self.outcomes, self.flags)
            if values
        ) + tuple((orjson.dumps(value),) for _, value in self.tags)
        # Frozen: the derived fields are set once, here.
        object.__setattr__(self, "_needles", needles)
        object.__setattr__(self, "_since", _stamp(self.since))
        object.__setattr__(self, "_until", _stamp(self.until))

    def may_match(self, line: bytes) -> bool:
        """False when ``line`` surely fails the filter, judged from its bytes alone."""
        since, until = self._since, self._until
        if (since is not None or until is not None) and line.startswith(_HEAD):
            stamp = line[_STAMP]
            if (since is not None and stamp < since) or (until is not None and stamp >= until):
                return False
        for options in self._needles:  # loops, not all(any(...)): this runs per record
            for needle in options:
                if needle in line:
                    break
            else:
                return False
        return True

    @property
    def everything(self) -> bool:
        """Whether every record passes (no filter given): nothing needs parsing then."""
        return self == _EVERYTHING

    def matches(self, record: dict[str, Any]) -> bool:
        """Whether the parsed record passes every filter."""
        if self.models and record.get("model") not in self.models:
            return False
        if self.users and record.get("user") not in self.users:
            return False
        if self.api_key_hashes and record.get("api_key_hash") not in self.api_key_hashes:
            return False
        if self.outcomes and record.get("outcome") not in self.outcomes:
            return False
        if self.flags:
            flags = record.get("risk_flags") or ()
            if not any(flag in flags for flag in self.flags):
                return False
        if self.tags:
            tags = record.get("tags") or {}
            if not all(tags.get(key) == value for key, value in self.tags):
                return False
        if self.min_latency_ms is not None:
            latency = record.get("latency_ms")
            if not isinstance(latency, int | float) or latency < self.min_latency_ms:
                return False
        if self._since is not None or self._until is not None:
            stamp = record.get("timestamp")
            if not isinstance(stamp, str):
                return False
            raw = stamp.encode()
            if self._since is not None and raw < self._since:
                return False
            if self._until is not None and raw >= self._until:
                return False
        return True


_EVERYTHING = RequestFilter()


@dataclass(frozen=True)
class Page:
    """One page of records (their event lines, newest first), where the next begins
    (``None``: this is the last), and how many records in the ring match in all."""

    lines: list[bytes]
    next: int | None
    total: int


def select(
    first: int,
    lines: Sequence[bytes],
    query: RequestFilter,
    *,
    limit: int | None,
    before: int | None = None,
) -> Page:
    """The newest ``limit`` (``None``: all) matching records numbered below ``before``.

    ``lines`` are the ring's records oldest first, the first numbered ``first`` (see
    :meth:`~pulse_proxy.recent.ring.RequestRing.snapshot`).  ``total`` counts every
    match in the ring, whatever the cursor; ``next`` is the cursor of the page after
    this one, the number of its last record, when an older match remains."""
    end = len(lines) if before is None else max(0, min(len(lines), before - first))
    if query.everything:
        # Every record is an llm.request line: the page is a slice, parsed by no one.
        start = 0 if limit is None else max(0, end - limit)
        return Page(
            list(reversed(lines[start:end])), first + start if start > 0 else None, len(lines)
        )
    page: list[bytes] = []
    total = 0
    last = None
    more = False
    for index in range(len(lines) - 1, -1, -1):
        line = lines[index]
        if not query.may_match(line):
            continue
        try:
            record = orjson.loads(line)
        except orjson.JSONDecodeError:
            continue
        if not query.matches(record):
            continue
        total += 1
        if index >= end:
            continue
        if limit is None or len(page) < limit:
            page.append(line)
            last = first + index
        else:
            more = True
    return Page(page, last if more else None, total)
