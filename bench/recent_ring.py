"""What the recent-requests ring costs: filing a batch on the event loop, its memory, a query.

The ring (``pulse_proxy/recent``) is fed every accounted batch on the event loop, so
filing must stay far below what relaying costs; its memory must be the bound times a
record; and a query, which parses records in a thread but holds the GIL while it
does, must stay short at the largest bound.  This prints, for realistic event lines
(rendered by the log's own renderer, with a user, a key hash and a tag):

- microseconds to file a batch of 1,000: by default (the batch's lines kept as they
  are), with ``accounting.log_content`` on (each line looked at, text taken out), and
  with ``server.log_format: console`` (each exchange rendered to JSON here);
- bytes per record and in all at the bound, as tracemalloc counts them;
- milliseconds for a first page over a full ring, unfiltered and filtered, at the
  default bound and at the largest.

    .venv/bin/python bench/recent_ring.py

The machine is shared: the figures are best of several rounds, and only their order
of magnitude is worth comparing.
"""

from __future__ import annotations

import functools
import time
import timeit
import tracemalloc
from collections.abc import Callable
from typing import Any

from pulse_proxy.recent import RecentRequests, RequestRing
from pulse_proxy.recent.query import RequestFilter, select
from pulse_proxy.records import Batch, Exchange
from pulse_proxy.settings.sections import DashboardSettings
from pulse_proxy.sinks.log import LineRenderer

DEFAULT_BOUND = DashboardSettings().recent_requests
LARGEST_BOUND = 100_000


def exchange(i: int, **overrides: Any) -> Exchange:
    fields: dict[str, Any] = {
        "request_id": f"{i:032x}",
        "method": "POST",
        "path": "/v1/chat/completions",
        "endpoint": "chat",
        "model": "gpt-4o-mini" if i % 3 else "gpt-4o",
        "response_model": "gpt-4o-mini-2024-07-18",
        "upstream": "api.openai.com",
        "status_code": 200,
        "latency_ms": 812.512,
        "upstream_ms": 810.1,
        "overhead_ms": 0.412,
        "prompt_tokens": 42,
        "completion_tokens": 17,
        "total_tokens": 59,
        "token_source": "upstream",
        "prompt_tokens_local": 41,
        "prompt_chars": 160,
        "messages": 2,
        "finish_reason": "stop",
        "cost_usd": 0.000275,
        "user": f"user-{i % 50}",
        "tags": {"team": "search"},
        "api_key_hash": "k-1a2b3c4d5e6f",
        "bytes_in": 300,
        "bytes_out": 600,
    }
    fields.update(overrides)
    return Exchange(**fields)


def best_us(call: Callable[[], object], rounds: int) -> float:
    return min(timeit.repeat(call, number=1, repeat=rounds)) * 1e6


def main() -> None:
    renderer = LineRenderer()
    exchanges = [exchange(i) for i in range(1000)]
    lines = [renderer.render(e) for e in exchanges]
    texts = [
        renderer.render(
            exchange(i, prompt_text="a prompt " * 50, completion_text="an answer " * 20)
        )
        for i in range(1000)
    ]
    print(f"event line: {sum(map(len, lines)) / len(lines):.0f} bytes on average")

    plain = RecentRequests(RequestRing(DEFAULT_BOUND))
    text = RecentRequests(RequestRing(DEFAULT_BOUND), text=True)
    console = RecentRequests(RequestRing(DEFAULT_BOUND), json_lines=False)
    batch = Batch(lines, [], [], None, None)
    with_text = Batch(texts, [], [], None, None)
    as_exchanges = Batch([], [], exchanges, None, None)
    print("filing a batch of 1,000:")
    print(f"  default                 {best_us(lambda: plain.write(batch), 200):9.1f} µs")
    print(f"  log_content, no text    {best_us(lambda: text.write(batch), 20):9.1f} µs")
    print(f"  log_content, with text  {best_us(lambda: text.write(with_text), 20):9.1f} µs")
    print(f"  console log format      {best_us(lambda: console.write(as_exchanges), 10):9.1f} µs")

    for bound in (DEFAULT_BOUND, LARGEST_BOUND):
        tracemalloc.start()
        ring = RequestRing(bound)
        base = tracemalloc.get_traced_memory()[0]
        for _ in range(0, 2 * bound, 1000):
            # Distinct bytes objects, as records are: each line is its own.
            ring.file([line[:-1] + b"}" for line in lines])
        used = tracemalloc.get_traced_memory()[0] - base
        tracemalloc.stop()
        first, kept = ring.snapshot()
        print(
            f"bound {bound:,}: {used / bound:.0f} bytes a record, {used / 1e6:.1f} MB in all; "
            f"snapshot {best_us(ring.snapshot, 5):.0f} µs"
        )
        since = time.time() - 3600
        for name, query in (
            ("unfiltered", RequestFilter()),
            ("user", RequestFilter(users=("user-7",))),
            ("model + since", RequestFilter(models=("gpt-4o",), since=since)),
        ):
            ms = best_us(functools.partial(select, first, kept, query, limit=100), 3) / 1000
            print(f"  first page of 100, {name:14} {ms:8.1f} ms")


if __name__ == "__main__":
    main()
