#!/usr/bin/env python3
"""Does a 100,000-token prompt add anything to time to first byte?  (issue #4)

Run from the repository root::

    .venv/bin/python bench/large_prompt_ttfb.py            # ~50 s
    .venv/bin/python bench/large_prompt_ttfb.py --quick    # ~30 s

One run, three processes under test plus two clients, all on 127.0.0.1:

* the fast fixed upstream of ``bench/overhead.py`` (``overhead.py --_upstream PORT``);
* ``pulse-proxy`` in front of it, default configuration (accounting in its child
  process: tiktoken counts and risk scans happen there, after the response);
* a *probe* (this process, raw blocking socket, one keep-alive connection) sending a
  small streamed chat request (~2 KB, ``"stream": true``) through the proxy every
  ``--probe-interval-ms`` and timing the first response byte (TTFB) and the first
  SSE ``data:`` event;
* a *large-prompt sender* (a child process of this script) that, during the load
  phase only, sends ``--large-rate`` requests per second, each carrying ~100,000
  tokens (~430 KB) of English text that differs per request (sentences of Python's
  documentation topics and of a small generated grammar, drawn in random order, plus a
  unique id, so no cache helps), an e-mail address near the
  start and a fake ``sk-proj-...`` key near the end (so the PII and secret detectors,
  which scan head and tail, have work).  Each large body goes both through the proxy
  and straight to the upstream, back to back (order alternating), so the proxy's added
  TTFB for the large request itself is measured under the same conditions.  Large
  requests alternate between streamed and plain.

Phases: warm-up (two large prompts through the proxy, so the accounting child has
loaded its tokenizer), *baseline* (probes only), *load* (probes while the large
prompts flow).  Afterwards the proxy's JSON events are checked: every request has
its ``llm.request`` event, large ones carry ~100k ``prompt_tokens_local`` and the
``long_prompt``/``pii``/``secret`` flags, and the accounting lag (event written −
response ended) is reported.  The Markdown result is printed and written to
``bench/large_prompt_ttfb.md``.  Every child is stopped on exit, error or Ctrl-C.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import datetime as dt
import json
import os
import platform
import queue
import random
import shutil
import signal
import socket
import statistics
import string
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
OUT_MD = BENCH_DIR / "large_prompt_ttfb.md"
sys.path.insert(0, str(BENCH_DIR))

import overhead as ov  # the upstream, process handling, canned bodies

TARGET_TOKENS = 100_000
AUTH = "Bearer sk-bench-not-a-real-key"

# --------------------------------------------------------------------------------------
# Varied English text
# --------------------------------------------------------------------------------------

_DET = ("the", "a", "every", "each", "this", "that", "one", "another", "no", "some")
_ADJ = (
    "quick",
    "quiet",
    "remote",
    "careful",
    "silent",
    "bright",
    "ancient",
    "modern",
    "narrow",
    "broad",
    "steady",
    "fragile",
    "hidden",
    "public",
    "private",
    "early",
    "late",
    "common",
    "rare",
    "simple",
    "complex",
    "heavy",
    "light",
    "local",
    "global",
    "warm",
    "cold",
    "busy",
    "idle",
    "patient",
    "urgent",
    "minor",
    "major",
    "formal",
    "casual",
    "distant",
    "nearby",
    "curious",
    "honest",
    "clever",
    "gentle",
    "rough",
    "smooth",
    "sharp",
    "dull",
    "fresh",
    "stale",
    "open",
    "closed",
    "secure",
    "noisy",
    "calm",
    "large",
    "small",
    "humble",
    "proud",
)
_NOUN = (
    "engineer",
    "river",
    "garden",
    "ledger",
    "station",
    "library",
    "harbour",
    "committee",
    "teacher",
    "village",
    "market",
    "bridge",
    "window",
    "report",
    "server",
    "customer",
    "season",
    "journey",
    "painter",
    "kitchen",
    "mountain",
    "contract",
    "neighbour",
    "museum",
    "theory",
    "budget",
    "sensor",
    "orchard",
    "factory",
    "council",
    "student",
    "lantern",
    "archive",
    "meadow",
    "pilot",
    "schedule",
    "invoice",
    "tunnel",
    "festival",
    "doctor",
    "forest",
    "manual",
    "warehouse",
    "pattern",
    "signal",
    "valley",
    "message",
    "surgeon",
    "notebook",
    "carpenter",
    "harvest",
    "pipeline",
    "tenant",
    "voyage",
    "harness",
    "clinic",
    "network",
    "auditor",
    "cathedral",
    "profile",
    "migration",
    "dataset",
    "protocol",
    "farmer",
)
_VERB = (
    "reviewed",
    "carried",
    "described",
    "measured",
    "ignored",
    "repaired",
    "visited",
    "opened",
    "questioned",
    "painted",
    "counted",
    "followed",
    "crossed",
    "approved",
    "rejected",
    "built",
    "studied",
    "moved",
    "watched",
    "signed",
    "delayed",
    "cleaned",
    "mapped",
    "tested",
    "recorded",
    "shared",
    "borrowed",
    "launched",
    "improved",
    "compared",
    "explained",
    "protected",
    "cancelled",
    "organised",
    "translated",
    "summarised",
    "inspected",
    "planned",
)
_ADV = (
    "slowly",
    "quietly",
    "suddenly",
    "carefully",
    "eventually",
    "rarely",
    "often",
    "barely",
    "gladly",
    "openly",
    "briefly",
    "twice",
    "yesterday",
    "again",
    "finally",
    "promptly",
)
_PREP = (
    "near",
    "behind",
    "beside",
    "under",
    "across",
    "after",
    "before",
    "inside",
    "around",
    "beyond",
    "without",
    "during",
    "against",
    "towards",
)
_CONJ = ("because", "although", "while", "so", "and", "but", "since", "until", "whereas")
_NAMES = (
    "Amara",
    "Bruno",
    "Chen",
    "Dalia",
    "Emeka",
    "Freya",
    "Gustavo",
    "Hana",
    "Ivan",
    "Jonas",
    "Keiko",
    "Lena",
    "Mateo",
    "Nadia",
    "Omar",
    "Priya",
    "Quentin",
    "Rosa",
)


def _phrase(rng: random.Random) -> str:
    noun = rng.choice(_NOUN)
    if rng.random() < 0.2:
        noun += "s"
    adj = rng.choice(_ADJ) + " " if rng.random() < 0.6 else ""
    return f"{rng.choice(_DET)} {adj}{noun}"


def _sentence(rng: random.Random) -> str:
    roll = rng.random()
    subject = rng.choice(_NAMES) if roll < 0.15 else _phrase(rng)
    parts = [subject, rng.choice(_VERB), _phrase(rng)]
    if rng.random() < 0.5:
        parts += [rng.choice(_PREP), _phrase(rng)]
    if rng.random() < 0.3:
        parts.insert(1, rng.choice(_ADV))
    if rng.random() < 0.35:
        parts += [rng.choice(_CONJ), _phrase(rng), rng.choice(_VERB), _phrase(rng)]
    if rng.random() < 0.1:
        parts += ["in", str(rng.randint(1900, 2030))]
    text = " ".join(parts)
    return text[0].upper() + text[1:] + rng.choice((".", ".", ".", ".", "!", "?", ";"))


def sentence_pool() -> list[str]:
    """Real English prose: the sentences of Python's own documentation topics
    (``pydoc_data.topics``, in the standard library), whitespace collapsed."""
    import re

    try:
        from pydoc_data.topics import topics
    except ImportError:  # a stripped-down Python: generated sentences only
        return []
    text = "\n".join(topics.values())
    pool = []
    for sentence in re.split(r"(?<=[.!?])\s+", text):
        sentence = " ".join(sentence.split())
        if 20 <= len(sentence) <= 600:
            pool.append(sentence)
    return pool


def make_text(rng: random.Random, pool: list[str], chars: int) -> str:
    """`chars` characters of paragraphs: sentences drawn at random from the documentation
    pool (90 %) and from a small generated grammar with names and years (10 %), so
    every call gives a different text that no cache keyed by content can reuse."""
    paragraphs: list[str] = []
    size = 0
    while size < chars:
        sentences = [
            rng.choice(pool) if pool and rng.random() < 0.9 else _sentence(rng)
            for _ in range(rng.randint(3, 8))
        ]
        paragraph = " ".join(sentences)
        paragraphs.append(paragraph)
        size += len(paragraph) + 2
    return "\n\n".join(paragraphs)[:chars]


def _fake_key(rng: random.Random) -> str:
    alphabet = string.ascii_letters + string.digits
    while True:
        token = "".join(rng.choice(alphabet) for _ in range(48))
        if (
            any(c.isupper() for c in token)
            and any(c.islower() for c in token)
            and any(c.isdigit() for c in token)
        ):
            return "sk-proj-" + token


def large_body(pool: list[str], rng: random.Random, seq: int, chars: int, stream: bool) -> bytes:
    """A ~`chars`-character chat prompt whose text is new on every call."""
    window = make_text(rng, pool, chars)
    head = (
        f"Request {seq}-{rng.getrandbits(64):016x}. I am {rng.choice(_NAMES)}, reach me at "
        f"{rng.choice(_NAMES).lower()}.{rng.randint(10, 9999)}@acme-mail.net. Please "
        "summarise the document below in five bullet points.\n\n"
    )
    tail = (
        f"\n\nFor the export job, use the key {_fake_key(rng)} with the staging "
        "account, and keep the summary short."
    )
    payload: dict[str, Any] = {
        "model": ov.MODEL,
        "messages": [
            {"role": "system", "content": "You are a careful analyst. Summarise documents."},
            {"role": "user", "content": head + window + tail},
        ],
        "max_tokens": 256,
        "temperature": 0.2,
        "user": "bench-large",
    }
    if stream:
        payload["stream"] = True
    return json.dumps(payload).encode()


# --------------------------------------------------------------------------------------
# A raw HTTP/1.1 client: precise first-byte times, keep-alive
# --------------------------------------------------------------------------------------


@dataclass
class Timing:
    status: int
    ttfb_ms: float  # request start (before sendall) → first response byte
    first_event_ms: float | None  # → first SSE `data:` event complete (streams)
    total_ms: float  # → last byte of the body
    complete: bool  # Content-Length satisfied, or the chunked body terminated
    body_bytes: int
    start: float = 0.0  # time.perf_counter() at the request's start (CLOCK_MONOTONIC: system-wide)


class _Stale(ConnectionError):
    """A reused keep-alive connection was closed before any response byte."""


class RawClient:
    def __init__(self, port: int, timeout: float = 15.0) -> None:
        self.port = port
        self.timeout = timeout
        self.sock: socket.socket | None = None
        self.stale_retries = 0

    def _connect(self) -> socket.socket:
        sock = socket.create_connection(("127.0.0.1", self.port), timeout=self.timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock = sock
        return sock

    def close(self) -> None:
        if self.sock is not None:
            with contextlib.suppress(OSError):
                self.sock.close()
            self.sock = None

    def post(self, body: bytes, request_id: str, path: str = "/v1/chat/completions") -> Timing:
        head = (
            f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{self.port}\r\n"
            f"Content-Type: application/json\r\nAuthorization: {AUTH}\r\n"
            f"X-Request-ID: {request_id}\r\nContent-Length: {len(body)}\r\n\r\n"
        ).encode()
        reused = self.sock is not None
        sock = self.sock or self._connect()
        perf = time.perf_counter
        try:
            return self._exchange(sock, head + body, perf)
        except (_Stale, BrokenPipeError, ConnectionResetError):
            # The server closed an idle keep-alive connection (uvicorn: after 5 s) just as
            # we reused it: resend once on a fresh one, as HTTP clients do.
            self.close()
            if not reused:
                raise
            self.stale_retries += 1
            try:
                return self._exchange(self._connect(), head + body, perf)
            except BaseException:
                self.close()
                raise
        except BaseException:
            self.close()
            raise

    def _exchange(self, sock: socket.socket, request: bytes, perf: Any) -> Timing:
        t0 = perf()
        sock.sendall(request)
        buf = bytearray()
        t_first: float | None = None
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                if not buf:
                    raise _Stale("closed before any response byte")
                raise ConnectionError("closed before the response head")
            if t_first is None:
                t_first = perf()
            buf += chunk
            end = buf.find(b"\r\n\r\n")
            if end >= 0:
                break
        lines = bytes(buf[:end]).decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        rest = bytearray(buf[end + 4 :])
        t_event: float | None = None
        close = "close" in headers.get("connection", "").lower()
        if "content-length" in headers:
            need = int(headers["content-length"])
            while len(rest) < need:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                rest += chunk
            complete = len(rest) >= need
            body_bytes = min(len(rest), need)
        elif "chunked" in headers.get("transfer-encoding", "").lower():
            pos = 0
            body_bytes = 0
            complete = False
            while True:
                line_end = rest.find(b"\r\n", pos)
                if line_end >= 0:
                    size = int(bytes(rest[pos:line_end]).split(b";")[0], 16)
                    data_start = line_end + 2
                    if size == 0:
                        trailer_end = rest.find(b"\r\n\r\n", line_end)
                        if trailer_end >= 0 or rest.endswith(b"\r\n", line_end + 2):
                            complete = True
                            break
                    elif len(rest) >= data_start + size + 2:
                        if t_event is None and b"data:" in rest[data_start : data_start + size]:
                            t_event = perf()
                        body_bytes += size
                        pos = data_start + size + 2
                        continue
                chunk = sock.recv(65536)
                if not chunk:
                    break
                rest += chunk
        else:  # read to close
            while True:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                rest += chunk
            complete, body_bytes, close = True, len(rest), True
        t_end = perf()
        if close or not complete:
            self.close()
        return Timing(
            status=status,
            ttfb_ms=(t_first - t0) * 1000,
            first_event_ms=None if t_event is None else (t_event - t0) * 1000,
            total_ms=(t_end - t0) * 1000,
            complete=complete,
            body_bytes=body_bytes,
            start=t0,
        )


# --------------------------------------------------------------------------------------
# The large-prompt sender (child process)
# --------------------------------------------------------------------------------------


def run_sender(proxy_port: int, upstream_port: int, rate: float, seconds: float, seed: int) -> None:
    """stdin commands: `warm`, `go`; stdout: one JSON line per step."""
    rng = random.Random(seed)
    t0 = time.perf_counter()
    pool = sentence_pool()
    # Calibrate characters per token on the proxy's own tokenizer (o200k for gpt-4o-mini).
    chars_per_token = 4.0
    with contextlib.suppress(Exception):
        from pulse_proxy.accounting import tokens

        sample = make_text(rng, pool, 400_000)
        chars_per_token = len(sample) / tokens.count_text(sample, ov.MODEL)
    chars = int(TARGET_TOKENS * chars_per_token)
    # What accounting spends on one such prompt (in its child process), for reference.
    scan_ms = count_ms = None
    with contextlib.suppress(Exception):
        from pulse_proxy import risk
        from pulse_proxy.accounting import tokens

        text = json.loads(large_body(pool, rng, 0, chars, False))["messages"][1]["content"]
        t = time.perf_counter()
        risk.scan(text)
        scan_ms = (time.perf_counter() - t) * 1000
        t = time.perf_counter()
        tokens.count_text(text, ov.MODEL)
        count_ms = (time.perf_counter() - t) * 1000
    # Which source sentences the jailbreak detector flags on their own (false positives
    # on documentation text, if any), so a `jailbreak` flag in the events is explained.
    jailbreak: list[str] = []
    with contextlib.suppress(Exception):
        from pulse_proxy import risk

        for sentence in pool:
            if "jailbreak" not in risk.scan(sentence, detectors={"jailbreak"}):
                continue
            snippet = sentence[:160]
            with contextlib.suppress(Exception):  # private: the words around the match
                found = risk._JAILBREAK._words.search(" " + sentence.lower())
                at = max(found.start() - 60, 0)
                snippet = sentence[at : found.end() + 40]
            jailbreak.append(snippet)
    emit(
        {
            "ready": True,
            "pool_sentences": len(pool),
            "chars_per_token": chars_per_token,
            "prompt_chars": chars,
            "setup_s": time.perf_counter() - t0,
            "scan_ms": scan_ms,
            "count_ms": count_ms,
            "jailbreak_sentences": jailbreak[:5],
            "jailbreak_count": len(jailbreak),
        }
    )

    proxy = RawClient(proxy_port)
    direct = RawClient(upstream_port)
    seq = 0

    def one(client: RawClient, body: bytes, rid: str) -> dict[str, Any]:
        try:
            t = client.post(body, rid)
            return {
                "status": t.status,
                "ttfb_ms": t.ttfb_ms,
                "first_event_ms": t.first_event_ms,
                "total_ms": t.total_ms,
                "complete": t.complete,
                "t0": t.start,
                "t1": t.start + t.total_ms / 1000,
            }
        except (OSError, ValueError) as exc:
            return {"status": None, "error": f"{type(exc).__name__}: {exc}"}

    for line in sys.stdin:
        command = line.strip()
        if command == "warm":
            results = []
            for stream in (True, False):
                seq += 1
                body = large_body(pool, rng, seq, chars, stream)
                results.append(one(proxy, body, f"warm-{seq}"))
            emit({"warm": results, "body_bytes": len(body)})
        elif command == "go":
            proxy.close()  # idle since the warm-up: start on fresh connections
            direct.close()
            results = []
            start = time.perf_counter()
            deadline = start + seconds
            i = 0
            while time.perf_counter() < deadline:
                slot = start + i / rate if rate > 0 else time.perf_counter()
                delay = slot - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
                    if time.perf_counter() >= deadline:
                        break
                seq += 1
                stream = i % 2 == 0
                body = large_body(pool, rng, seq, chars, stream)
                order = ("pulse", "direct") if i % 4 < 2 else ("direct", "pulse")
                record: dict[str, Any] = {
                    "seq": seq,
                    "stream": stream,
                    "bytes": len(body),
                    "at_s": time.perf_counter() - start,
                }
                for where in order:
                    client = proxy if where == "pulse" else direct
                    record[where] = one(client, body, f"large-{seq}-{where}")
                results.append(record)
                i += 1
            emit(
                {
                    "done": results,
                    "elapsed_s": time.perf_counter() - start,
                    "stale_retries": proxy.stale_retries + direct.stale_retries,
                }
            )
        elif command == "quit":
            break
    proxy.close()
    direct.close()


def emit(obj: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


# --------------------------------------------------------------------------------------
# The proxy's event log, followed live (for the accounting lag)
# --------------------------------------------------------------------------------------


class EventFollower:
    """Tails the proxy's stdout file every 100 ms; notes when each line appeared."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.events: list[tuple[float, dict[str, Any]]] = []  # (seen at, epoch s; event)
        self.bad = 0
        self._offset = 0
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="event-follower", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.1):
            self.poll()

    def poll(self) -> None:
        with self._lock:
            if not self.path.exists():
                return
            with self.path.open("rb") as handle:
                handle.seek(self._offset)
                data = handle.read()
            cut = data.rfind(b"\n")
            if cut < 0:
                return
            self._offset += cut + 1
            now = time.time()
            for line in data[: cut + 1].splitlines():
                if not line.strip():
                    continue
                try:
                    self.events.append((now, json.loads(line)))
                except ValueError:
                    self.bad += 1

    def requests(self, prefix: str) -> list[tuple[float, dict[str, Any]]]:
        with self._lock:
            return [
                (seen, e)
                for seen, e in self.events
                if e.get("event") == "llm.request"
                and str(e.get("request_id", "")).startswith(prefix)
            ]

    def wait_for(self, prefix: str, count: int, timeout: float) -> float | None:
        """Seconds until `count` events with the prefix were seen (None: timed out)."""
        start = time.monotonic()
        while time.monotonic() - start < timeout:
            self.poll()
            if len(self.requests(prefix)) >= count:
                return time.monotonic() - start
            time.sleep(0.05)
        return None

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(2.0)
        self.poll()


def _epoch(timestamp: str) -> float | None:
    with contextlib.suppress(ValueError, TypeError, AttributeError):
        return dt.datetime.fromisoformat(timestamp).timestamp()  # 3.11 reads the trailing Z
    return None


# --------------------------------------------------------------------------------------
# Measurement helpers
# --------------------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float | None:
    with contextlib.suppress(OSError, ValueError, IndexError):
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return None


def children(pid: int) -> list[int]:
    out: list[int] = []
    with contextlib.suppress(OSError):
        for task in Path(f"/proc/{pid}/task").iterdir():
            with contextlib.suppress(OSError, ValueError):
                out += [int(x) for x in (task / "children").read_text().split()]
    return out


def pct(values: list[float], q: int) -> float | None:
    if not values:
        return None
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


def fmt(value: float | None, digits: int = 2) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


@dataclass
class Series:
    name: str
    ttfb: list[float] = field(default_factory=list)
    first_event: list[float] = field(default_factory=list)
    total: list[float] = field(default_factory=list)
    errors: collections.Counter[str] = field(default_factory=collections.Counter)
    samples: list[tuple[float, float, float]] = field(default_factory=list)  # start, ttfb, total

    def add(self, t: Timing) -> None:
        self.samples.append((t.start, t.ttfb_ms, t.total_ms))
        if t.status != 200:
            self.errors[f"status {t.status}"] += 1
        if not t.complete:
            self.errors["incomplete body"] += 1
        self.ttfb.append(t.ttfb_ms)
        self.total.append(t.total_ms)
        if t.first_event_ms is not None:
            self.first_event.append(t.first_event_ms)

    def add_dict(self, d: dict[str, Any]) -> None:
        if d.get("status") is None:
            self.errors[d.get("error", "error")[:80]] += 1
            return
        self.add(
            Timing(
                status=d["status"],
                ttfb_ms=d["ttfb_ms"],
                first_event_ms=d.get("first_event_ms"),
                total_ms=d["total_ms"],
                complete=d.get("complete", True),
                body_bytes=0,
            )
        )

    def row(self) -> str:
        errors = sum(self.errors.values())
        return (
            f"| {self.name} | {len(self.ttfb)} | {fmt(pct(self.ttfb, 50))} | {fmt(pct(self.ttfb, 95))} "
            f"| {fmt(pct(self.ttfb, 99))} | {fmt(pct(self.first_event, 50))} "
            f"| {fmt(pct(self.first_event, 99))} | {fmt(pct(self.total, 50))} | {errors} |"
        )


def overlap_table(loaded: Series, large: list[dict[str, Any]]) -> list[str]:
    """The load phase's probes split by what else was happening when they ran.

    perf_counter is CLOCK_MONOTONIC, shared by the probe and the sender processes, so
    each probe's [start, end] can be compared with each large exchange's."""
    pulse_iv = sorted((r["pulse"]["t0"], r["pulse"]["t1"]) for r in large if "t0" in r["pulse"])
    direct_iv = sorted((r["direct"]["t0"], r["direct"]["t1"]) for r in large if "t0" in r["direct"])

    def overlaps(a: float, b: float, ivs: list[tuple[float, float]]) -> bool:
        return any(s <= b and a <= e for s, e in ivs)

    def after(a: float, ivs: list[tuple[float, float]], window: float) -> bool:
        return any(e < a <= e + window for _, e in ivs)

    groups: dict[str, list[float]] = collections.OrderedDict(
        (name, [])
        for name in (
            "overlapping a large request through pulse",
            "overlapping a large request sent direct (not through pulse)",
            "within 100 ms after a large request through pulse ended (its accounting running in the child)",
            "none of these",
        )
    )
    names = list(groups)
    for start, ttfb, total in loaded.samples:
        end = start + total / 1000
        if overlaps(start, end, pulse_iv):
            groups[names[0]].append(ttfb)
        elif overlaps(start, end, direct_iv):
            groups[names[1]].append(ttfb)
        elif after(start, pulse_iv, 0.1):
            groups[names[2]].append(ttfb)
        else:
            groups[names[3]].append(ttfb)
    out = [
        "",
        "## Small requests under load, by what overlapped them",
        "",
        "| small request | n | TTFB p50 ms | TTFB p95 ms | TTFB p99 ms | max ms |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, values in groups.items():
        out.append(
            f"| {name} | {len(values)} | {fmt(pct(values, 50))} | {fmt(pct(values, 95))} "
            f"| {fmt(pct(values, 99))} | {fmt(max(values) if values else None)} |"
        )
    return out


def probe_loop(
    client: RawClient,
    body: bytes,
    series: Series,
    seconds: float,
    interval: float,
    prefix: str,
    stop: threading.Event | None = None,
) -> None:
    start = time.perf_counter()
    deadline = start + seconds
    i = 0
    while time.perf_counter() < deadline and not (stop and stop.is_set()):
        slot = start + i * interval
        delay = slot - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        i += 1
        try:
            series.add(client.post(body, f"{prefix}-{i}"))
        except (OSError, ValueError) as exc:
            series.errors[f"{type(exc).__name__}"] += 1


# --------------------------------------------------------------------------------------
# Orchestration
# --------------------------------------------------------------------------------------


def run(args: argparse.Namespace) -> int:
    procs = ov.Processes()
    workdir = Path(tempfile.mkdtemp(prefix="pulse-ttfb-"))
    here = str(Path(__file__).resolve())
    follower: EventFollower | None = None
    sender: subprocess.Popen[str] | None = None
    notes: list[str] = []
    try:
        pulse_cli = REPO / ".venv" / "bin" / "pulse-proxy"
        if not pulse_cli.exists():
            found = shutil.which("pulse-proxy")
            if not found:
                raise ov.BenchError("pulse-proxy not found (pip install -e .)")
            pulse_cli = Path(found)

        uport = ov.free_port()
        up_err = workdir / "upstream.stderr"
        upstream = procs.start(
            [sys.executable, str(BENCH_DIR / "overhead.py"), "--_upstream", str(uport)],
            stderr=up_err,
        )
        ov.wait_ready(uport, "/healthz", upstream, "upstream", stderr_file=up_err)

        pport = ov.free_port()
        events_path = workdir / "pulse.stdout.jsonl"
        p_err = workdir / "pulse.stderr"
        proxy = procs.start(
            [
                str(pulse_cli),
                "--host",
                "127.0.0.1",
                "--port",
                str(pport),
                "--upstream",
                f"http://127.0.0.1:{uport}/v1",
            ],
            stdout=events_path,
            stderr=p_err,
        )
        ov.wait_ready(pport, "/healthz", proxy, "pulse-proxy", stderr_file=p_err)

        # The sender (started before this process has threads: preexec_fn after fork):
        # builds its text pool before anything is measured.
        sender = subprocess.Popen(
            [
                sys.executable,
                here,
                "--_sender",
                str(pport),
                str(uport),
                str(args.large_rate),
                str(args.load),
                str(args.seed),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=(workdir / "sender.stderr").open("wb"),
            text=True,
            start_new_session=True,
            cwd=REPO,
            preexec_fn=ov._die_with_parent if sys.platform.startswith("linux") else None,  # noqa: PLW1509 - prctl only
        )
        procs.children.append(sender)  # type: ignore[arg-type]
        follower = EventFollower(events_path)
        lines: queue.Queue[str] = queue.Queue()

        def pump() -> None:
            assert sender is not None and sender.stdout is not None
            for line in sender.stdout:
                lines.put(line)

        threading.Thread(target=pump, name="sender-stdout", daemon=True).start()

        def sender_says(key: str, timeout: float) -> dict[str, Any]:
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                try:
                    msg = json.loads(lines.get(timeout=0.5))
                except queue.Empty:
                    if sender is not None and sender.poll() is not None:
                        raise ov.BenchError(
                            f"the sender exited ({sender.returncode})"
                            f"{ov._tail(workdir / 'sender.stderr')}"
                        ) from None
                    continue
                if key in msg:
                    return msg
            raise ov.BenchError(f"the sender did not report {key!r} within {timeout:.0f} s")

        def tell(command: str) -> None:
            assert sender is not None and sender.stdin is not None
            sender.stdin.write(command + "\n")
            sender.stdin.flush()

        ready = sender_says("ready", 60)
        print(
            f"* large prompts: {ready['prompt_chars']:,} characters of generated English "
            f"({ready['chars_per_token']:.2f} chars/token on o200k) per request, drawn from "
            f"{ready['pool_sentences']:,} documentation sentences + generated ones; "
            f"set up in {ready['setup_s']:.1f} s",
            flush=True,
        )

        # Warm-up: the proxy's first requests, and the accounting child's tokenizer.
        small = ov.make_request_body(True)
        probe = RawClient(pport)
        for i in range(50):
            probe.post(small, f"warm-small-{i}")
        tell("warm")
        warm = sender_says("warm", 60)
        large_bytes = int(warm["body_bytes"])
        bad_warm = [w for w in warm["warm"] if w.get("status") != 200]
        if bad_warm:
            notes.append(f"warm-up large requests failed: {bad_warm}")
        took = follower.wait_for("warm-", 52, 30)
        print(
            f"* warm-up: 50 small + 2 large requests; their events "
            f"{'arrived after ' + format(took, '.1f') + ' s' if took is not None else 'did NOT all arrive in 30 s'}",
            flush=True,
        )

        interval = args.probe_interval_ms / 1000
        # Baseline: probes only.
        base = Series("small stream, baseline (no large prompts)")
        print(f"* baseline: probing for {args.baseline} s ...", flush=True)
        probe_loop(probe, small, base, args.baseline, interval, "probe-base")

        # Load: the sender and the probes together.
        loaded = Series(f"small stream, while ~{args.large_rate:g}/s large prompts flow")
        worker_pids = children(proxy.pid)
        cpu_before = {pid: cpu_seconds(pid) for pid in [proxy.pid, upstream.pid, *worker_pids]}
        wall0 = time.monotonic()
        print(
            f"* load: probing for {args.load} s while the sender sends large prompts ...",
            flush=True,
        )
        tell("go")
        probe_loop(probe, small, loaded, args.load, interval, "probe-load")
        done = sender_says("done", args.load + 60)
        load_wall = time.monotonic() - wall0
        cpu_after = {pid: cpu_seconds(pid) for pid in cpu_before}
        load_ended = time.time()
        tell("quit")
        probe.close()

        large = done["done"]
        n_large = len(large)
        answered = sum(1 for rec in large if rec["pulse"].get("status") is not None)
        lag_wait = follower.wait_for("large-", answered, 30)  # only the pulse half has events
        drained_after = time.time() - load_ended
        follower.stop()

        # ---- results ----------------------------------------------------------------
        series_large = {
            (stream, where): Series(
                f"large {'stream' if stream else 'plain'} ({large_bytes // 1000} KB), "
                f"{'through pulse' if where == 'pulse' else 'direct to upstream'}"
            )
            for stream in (True, False)
            for where in ("pulse", "direct")
        }
        added: dict[bool, list[float]] = {True: [], False: []}
        for rec in large:
            for where in ("pulse", "direct"):
                series_large[(rec["stream"], where)].add_dict(rec[where])
            p, d = rec["pulse"], rec["direct"]
            if p.get("status") == 200 and d.get("status") == 200:
                added[rec["stream"]].append(p["ttfb_ms"] - d["ttfb_ms"])

        probe_events = follower.requests("probe-")
        large_events = [e for _, e in follower.requests("large-")]
        outcomes = collections.Counter(
            (e.get("outcome"), e.get("status_code")) for _, e in probe_events
        )
        l_outcomes = collections.Counter(
            (e.get("outcome"), e.get("status_code")) for e in large_events
        )
        flags = collections.Counter(f for e in large_events for f in (e.get("risk_flags") or []))
        local_tokens = [
            e["prompt_tokens_local"]
            for e in large_events
            if isinstance(e.get("prompt_tokens_local"), int)
        ]
        lags = []
        for seen, e in follower.requests("large-"):
            ended = _epoch(e.get("timestamp"))
            if ended is not None:
                lags.append((seen - ended) * 1000)
        proxy_ttft_base = [
            e["ttft_ms"]
            for _, e in probe_events
            if str(e.get("request_id")).startswith("probe-base")
            and isinstance(e.get("ttft_ms"), (int, float))
        ]
        proxy_ttft_load = [
            e["ttft_ms"]
            for _, e in probe_events
            if str(e.get("request_id")).startswith("probe-load")
            and isinstance(e.get("ttft_ms"), (int, float))
        ]
        large_ttft = {
            s: [
                e["ttft_ms"]
                for e in large_events
                if e.get("stream") is s and isinstance(e.get("ttft_ms"), (int, float))
            ]
            for s in (True, False)
        }
        large_overhead = [
            e["overhead_ms"] for e in large_events if isinstance(e.get("overhead_ms"), (int, float))
        ]

        cpu_lines = []
        for pid, b in cpu_before.items():
            a = cpu_after.get(pid)
            if b is None or a is None:
                continue
            who = (
                "pulse-proxy (event loop)"
                if pid == proxy.pid
                else "upstream"
                if pid == upstream.pid
                else "accounting child"
            )
            cpu_lines.append(f"{who} {a - b:.1f} s ({100 * (a - b) / load_wall:.0f} % of a core)")
        worker_per_prompt = None
        for pid in worker_pids:
            b, a = cpu_before.get(pid), cpu_after.get(pid)
            if b is not None and a is not None and n_large:
                worker_per_prompt = (a - b) * 1000 / n_large

        facts = [
            (
                "machine",
                f"{os.cpu_count()} cores ({len(os.sched_getaffinity(0))} usable), "
                f"{platform.system()} {platform.release()}, Python {platform.python_version()}",
            ),
            (
                "processes",
                "fast fixed upstream, pulse-proxy (+ its accounting child), the probe "
                "(this process), the large-prompt sender: all on the same cores",
            ),
            (
                "probe",
                f"one keep-alive raw-socket connection, a {len(small):,} B streamed chat "
                f"request every {args.probe_interval_ms:g} ms; TTFB = request start → first "
                "response byte; first event = → first SSE `data:` chunk",
            ),
            (
                "large prompts",
                f"{ready['prompt_chars']:,} chars (≈{TARGET_TOKENS:,} tokens at "
                f"{ready['chars_per_token']:.2f} chars/token), {large_bytes:,} B bodies, "
                f"new text each (sentences of Python's documentation topics and a generated "
                f"grammar in random order + a unique id), an e-mail near the start "
                f"and an `sk-proj-` key near the end; {args.large_rate:g}/s, alternating "
                "stream/plain; each sent through pulse and direct, back to back",
            ),
            (
                "phases",
                f"baseline {args.baseline} s (probes only), then load {args.load} s (probes + large prompts)",
            ),
        ]
        out = [
            "## Setup",
            "",
            *[f"- **{k}**: {v}" for k, v in facts],
            "",
            "## Time to first byte",
            "",
            "| condition | n | TTFB p50 ms | TTFB p95 ms | TTFB p99 ms | first event p50 ms "
            "| first event p99 ms | total p50 ms | errors |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
            base.row(),
            loaded.row(),
        ]
        out += [
            series_large[k].row()
            for k in ((True, "pulse"), (True, "direct"), (False, "pulse"), (False, "direct"))
        ]
        out += [
            "",
            "## What the proxy adds to the large request's TTFB",
            "",
            "Per large body: TTFB through pulse − TTFB of the same body sent direct to the "
            "upstream, back to back.",
            "",
            "| large request | pairs | added p50 ms | added p95 ms | added max ms | "
            "proxy's own ttft_ms p50 (event) |",
            "| --- | ---: | ---: | ---: | ---: | ---: |",
        ]
        for stream in (True, False):
            values = added[stream]
            out.append(
                f"| {'stream' if stream else 'plain'} | {len(values)} | {fmt(pct(values, 50))} "
                f"| {fmt(pct(values, 95))} | {fmt(max(values) if values else None)} "
                f"| {fmt(pct(large_ttft[stream], 50)) if stream else '–'} |"
            )

        out += overlap_table(loaded, large)
        d50 = (pct(loaded.ttfb, 50) or 0) - (pct(base.ttfb, 50) or 0)
        d99 = (pct(loaded.ttfb, 99) or 0) - (pct(base.ttfb, 99) or 0)
        ref = ""
        if ready.get("scan_ms") is not None and ready.get("count_ms") is not None:
            ref = (
                f" (for scale: one such prompt costs {ready['scan_ms']:.0f} ms of risk scan + "
                f"{ready['count_ms']:.0f} ms of tiktoken count, measured in the sender)"
            )
        checks = [
            f"{'PASS' if abs(d50) <= 0.5 else 'FAIL'} — the small requests' median TTFB moved "
            f"{d50:+.2f} ms while 100k-token prompts flowed (target: within ±0.5 ms of the baseline); "
            f"the tail is probes that collided with a large request in flight (table above)",
            f"small requests' TTFB while large prompts flow vs baseline: p50 {d50:+.2f} ms, "
            f"p99 {d99:+.2f} ms (proxy-side ttft_ms p50 {fmt(pct(proxy_ttft_base, 50), 3)} → "
            f"{fmt(pct(proxy_ttft_load, 50), 3)} ms, p99 {fmt(pct(proxy_ttft_base, 99), 3)} → "
            f"{fmt(pct(proxy_ttft_load, 99), 3)} ms)",
            f"large requests: {n_large} bodies in {done['elapsed_s']:.1f} s; pulse's median "
            f"added TTFB {fmt(pct(added[True], 50))} ms (stream, incl. re-encoding the body to add "
            f"`stream_options.include_usage`) and {fmt(pct(added[False], 50))} ms (plain); the "
            f"events' median overhead_ms {fmt(pct(large_overhead, 50), 3)}{ref}",
            f"accounting of the large prompts ran in the child: "
            f"{fmt(worker_per_prompt, 0)} ms of its CPU per large prompt; events appeared "
            f"{fmt(pct(lags, 50), 0)} ms (p50) / {fmt(max(lags) if lags else None, 0)} ms (max) after "
            f"each response ended (100 ms polling); all {len(large_events)} large events were in "
            f"{drained_after:.1f} s after the load stopped"
            + ("" if lag_wait is not None else f" (NOT all {answered} arrived within 30 s)"),
            "CPU during the load phase: " + "; ".join(cpu_lines),
        ]
        expected_probe = len(base.ttfb) + len(loaded.ttfb)
        checks.append(
            f"events: {len(probe_events)} llm.request for {expected_probe} probes "
            f"(outcome, status: {dict(outcomes)}); {len(large_events)} for {n_large} large requests through "
            f"pulse ({dict(l_outcomes)}); large prompts' prompt_tokens_local p50 "
            f"{fmt(pct([float(x) for x in local_tokens], 50), 0)} (min {min(local_tokens) if local_tokens else '–'}, "
            f"max {max(local_tokens) if local_tokens else '–'}); risk flags on large prompts {dict(flags)}"
            + (f"; {follower.bad} non-JSON stdout lines" if follower.bad else "")
        )
        for s in (base, loaded, *series_large.values()):
            if s.errors:
                notes.append(f"{s.name}: errors {dict(s.errors)}")
        if len(probe_events) != expected_probe:
            notes.append(f"probe events: {len(probe_events)} ≠ {expected_probe} probes sent")
        if len(large_events) != n_large:
            notes.append(
                f"large events: {len(large_events)} ≠ {n_large} large requests through pulse "
                f"({answered} of them answered)"
            )
        retries = probe.stale_retries + int(done.get("stale_retries", 0))
        if retries:
            notes.append(
                f"{retries} request(s) found their idle keep-alive connection closed by "
                "the server and were resent once on a fresh one (as HTTP clients do)"
            )
        missing = {"pii", "secret"} - set(flags)
        if large_events and missing:
            notes.append(f"risk flags never raised on the large prompts: {sorted(missing)}")
        if "long_prompt" not in flags:
            notes.append(
                "`long_prompt` is judged on the upstream's `usage.prompt_tokens` when "
                "present, and the fast fixed upstream always answers 431: so it does not "
                "fire here although prompt_tokens_local is ~100k (the tokenizer still "
                "ran on every large prompt: see prompt_tokens_local)"
            )
        if flags.get("jailbreak"):
            examples = "; ".join(f"“…{x}…”" for x in ready.get("jailbreak_sentences", [])[:2])
            notes.append(
                f"`jailbreak` was raised on {flags['jailbreak']} of {len(large_events)} large "
                f"prompts although no jailbreak text was put in: "
                f"{ready.get('jailbreak_count', '?')} of the {ready['pool_sentences']:,} source "
                f"sentences (Python's own documentation) trip the detector on their own"
                + (f", e.g. {examples}" if examples else "")
                + ": a false positive of the lexical detector, worth a look"
            )
        for flag in ("pii", "secret"):
            if large_events and flags.get(flag, 0) not in (0, len(large_events)):
                notes.append(f"`{flag}` on {flags.get(flag)} of {len(large_events)} large prompts")
        stderr_text = p_err.read_text(errors="replace").strip() if p_err.exists() else ""
        _, killed = procs.stop(proxy, grace=15)
        if killed:
            notes.append("pulse-proxy did not exit within 15 s of SIGTERM (killed)")
        stderr_text = p_err.read_text(errors="replace").strip() if p_err.exists() else stderr_text
        if stderr_text:
            notes.append(
                f"pulse-proxy stderr ({len(stderr_text)} chars), last lines: "
                + " | ".join(stderr_text.splitlines()[-5:])[:600]
            )
        notes.append(
            "2 cores shared by every process here: the accounting child's CPU for "
            "each 100k-token prompt competes with the proxy, upstream and clients "
            "for the same cores, so any slowdown of the small requests under load "
            "mixes CPU contention with what the request path itself does"
        )

        out += ["", "## Checks", "", *[f"- {c}" for c in checks]]
        if notes:
            out += ["", "## Notes", "", *[f"- {n}" for n in notes]]
        text = "\n".join(out) + "\n"
        print()
        print(text)
        stamp = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
        cmd = "bench/large_prompt_ttfb.py" + (" --quick" if args.quick else "")
        OUT_MD.write_text(
            f"# LLM Pulse: time to first byte with 100,000-token prompts\n\n"
            f"Run {stamp} with `.venv/bin/python {cmd}`.\n\n{text}"
        )
        print(f"(written to {OUT_MD.relative_to(REPO)})")
        return 0
    except ov.BenchError as exc:
        print(f"\nbench failed: {exc}", file=sys.stderr)
        return 1
    finally:
        if follower is not None:
            follower.stop()
        if sender is not None and sender.poll() is None:
            with contextlib.suppress(Exception):
                assert sender.stdin is not None
                sender.stdin.close()
        procs.stop_all()
        shutil.rmtree(workdir, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--baseline", type=float, default=10, help="seconds of probes alone (10)")
    parser.add_argument(
        "--load", type=float, default=20, help="seconds of probes + large prompts (20)"
    )
    parser.add_argument("--quick", action="store_true", help="baseline 5 s, load 10 s")
    parser.add_argument(
        "--large-rate",
        type=float,
        default=5.0,
        help="large prompts per second through the proxy (5; 0: back to back)",
    )
    parser.add_argument(
        "--probe-interval-ms", type=float, default=10.0, help="one small probe every N ms (10)"
    )
    parser.add_argument("--seed", type=int, default=1234)
    parser.add_argument("--_sender", nargs=5, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args._sender:
        pport, uport, rate, seconds, seed = args._sender
        run_sender(int(pport), int(uport), float(rate), float(seconds), int(seed))
        return 0
    if args.quick:
        args.baseline, args.load = 5, 10
    if args.baseline <= 0 or args.load <= 0 or args.load > 120 or args.baseline > 120:
        parser.error("--baseline and --load must be in (0, 120] seconds")

    def _terminate(signum: int, _frame: Any) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _terminate)
    try:
        return run(args)
    except KeyboardInterrupt:
        print("\ninterrupted: all child processes stopped", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
