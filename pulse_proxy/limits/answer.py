"""The proxy's own 429, shaped as OpenAI sends it, so SDKs back off as they would.

OpenAI's SDKs read ``retry-after-ms`` first, then ``Retry-After`` (seconds), and
retry after that long; the ``x-ratelimit-*`` headers tell a client how much of a
limit is left.  The message names the rule and its window, never the key (a key
hash or a user is the client's own business, and may be someone else's).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from email.utils import formatdate

import orjson

from pulse_proxy.limits.backend import Denial
from pulse_proxy.limits.rules import PHRASES
from pulse_proxy.limits.window import go_duration
from pulse_proxy.proxy.types import Send
from pulse_proxy.records import Capture

CODE = "rate_limit_exceeded"


@dataclass(slots=True, frozen=True)
class Refusal:
    """Why a request is answered 429: a limit it is over, or a store that failed."""

    rule: str
    message: str
    wait_s: float
    # (kind, limit, remaining, reset in seconds) for the x-ratelimit-* headers.
    figures: tuple[tuple[str, float, float, float], ...] = ()
    error_type: str = CODE


def refusal_for(denial: Denial) -> Refusal:
    limit = denial.check.limit
    wait = denial.wait_s
    amount = f"{limit.limit:g}"
    message = (
        f"Rate limit reached for rule {limit.rule.name!r} on {PHRASES[limit.kind]}: "
        f"limit {amount}. Please try again in {go_duration(max(wait, 0.001))}."
    )
    if limit.kind == "concurrent":
        message = (
            f"Rate limit reached for rule {limit.rule.name!r}: at most {amount} "
            "requests in flight at once. Please try again shortly."
        )
    figures: list[tuple[str, float, float, float]] = []
    for kind in ("requests", "tokens"):
        for other in limit.rule.limits:
            if other.kind == kind:
                mine = other is limit
                figures.append(
                    (
                        kind,
                        other.limit,
                        denial.remaining if mine else other.limit,
                        wait if mine else 0.0,
                    )
                )
    return Refusal(limit.rule.name, message, wait, tuple(figures))


async def send_refusal(send: Send, capture: Capture, refusal: Refusal) -> None:
    """Answer 429 and record it in the exchange: ``outcome: throttled``."""
    exchange = capture.exchange
    exchange.status_code = 429
    exchange.outcome = "throttled"
    exchange.throttled_by = refusal.rule
    exchange.error_type = refusal.error_type
    exchange.error_message = refusal.message
    kind = refusal.figures[0][0] if refusal.figures else "requests"
    body = orjson.dumps(
        {"error": {"message": refusal.message, "type": kind, "param": None, "code": CODE}}
    )
    wait = max(refusal.wait_s, 0.001)
    headers = [
        (b"date", formatdate(usegmt=True).encode()),
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"x-request-id", exchange.request_id.encode("latin-1")),
        (b"retry-after", str(max(math.ceil(wait), 1)).encode()),
        (b"retry-after-ms", str(math.ceil(wait * 1000)).encode()),
    ]
    for kind, limit, remaining, reset in refusal.figures:
        headers.append((f"x-ratelimit-limit-{kind}".encode(), f"{limit:g}".encode()))
        headers.append(
            (f"x-ratelimit-remaining-{kind}".encode(), str(math.floor(remaining)).encode())
        )
        headers.append((f"x-ratelimit-reset-{kind}".encode(), go_duration(reset).encode()))
    await send({"type": "http.response.start", "status": 429, "headers": headers})
    capture.response_started = True
    await send({"type": "http.response.body", "body": body, "more_body": False})
    exchange.bytes_out = len(body)
