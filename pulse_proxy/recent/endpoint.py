"""``GET /pulse/requests``: the ring's records, filtered, a page at a time or all as JSON lines.

Query parameters (each optional; see :class:`~pulse_proxy.recent.query.RequestFilter`):
``model``, ``user``, ``api_key_hash``, ``outcome``, ``flag`` (a risk flag), ``tag``
(``key:value``), ``min_latency_ms``, ``since`` / ``until`` (epoch seconds, the bounds of
a chart's time bucket), ``limit`` (at most :data:`MAX_LIMIT`), ``cursor`` (the previous
page's ``next``) and ``format`` (``json``, or ``jsonl`` for every match as one event a
line, oldest first, which ``pulse-proxy report -`` reads; ``limit`` and ``cursor`` page
only the JSON answer).  A parameter that is not on
this list, or a value that does not parse, is answered 400 naming it, rather than
ignored: a misspelt filter would otherwise show every record as if it had matched.

The records are the event lines themselves, spliced into the answer as they are kept,
so the page shows exactly what the log holds, and text in them stays JSON text.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable
from typing import get_args

import orjson
from starlette.datastructures import QueryParams
from starlette.requests import Request
from starlette.responses import Response

from pulse_proxy.proxy.errors import openai_error_body
from pulse_proxy.recent.query import Page, RequestFilter, select
from pulse_proxy.recent.sink import RecentRequests
from pulse_proxy.records import Outcome
from pulse_proxy.risk.flags import FLAGS

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
_OUTCOMES = frozenset(get_args(Outcome))
_KNOWN = frozenset(
    {
        "model",
        "user",
        "api_key_hash",
        "outcome",
        "flag",
        "tag",
        "min_latency_ms",
        "since",
        "until",
        "limit",
        "cursor",
        "format",
    }
)
# Not sniffed as anything but what the type says, and never cached on the way.
_HEADERS = {"X-Content-Type-Options": "nosniff", "Cache-Control": "no-store"}


class BadParameter(ValueError):
    def __init__(self, param: str, message: str) -> None:
        super().__init__(message)
        self.param = param


def _number(params: QueryParams, name: str) -> float | None:
    text = params.get(name)
    if text is None:
        return None
    try:
        value = float(text)
    except ValueError:
        raise BadParameter(name, f"{name} must be a number") from None
    if not math.isfinite(value) or value < 0:
        raise BadParameter(name, f"{name} must be a finite number, 0 or more")
    return value


def _whole(params: QueryParams, name: str, low: int, high: int | None) -> int | None:
    text = params.get(name)
    if text is None:
        return None
    try:
        value = int(text)
    except ValueError:
        raise BadParameter(name, f"{name} must be a whole number") from None
    if value < low or (high is not None and value > high):
        bounds = f"from {low} to {high}" if high is not None else f"{low} or more"
        raise BadParameter(name, f"{name} must be {bounds}")
    return value


def _tags(values: list[str]) -> tuple[tuple[str, str], ...]:
    tags = []
    for value in values:
        key, sep, wanted = value.partition(":")
        if not sep or not key:
            raise BadParameter("tag", "tag must be key:value")
        tags.append((key, wanted))
    return tuple(tags)


def _chosen(params: QueryParams, name: str, allowed: frozenset[str]) -> tuple[str, ...]:
    values = tuple(params.getlist(name))
    unknown = sorted(set(values) - allowed)
    if unknown:
        raise BadParameter(name, f"{name} must be one of {', '.join(sorted(allowed))}")
    return values


def parse_filter(params: QueryParams) -> RequestFilter:
    """The filter a query string asks for; :class:`BadParameter` for a bad one."""
    for name in params:
        if name not in _KNOWN:
            raise BadParameter(name, f"unknown parameter {name}")
    return RequestFilter(
        models=tuple(params.getlist("model")),
        users=tuple(params.getlist("user")),
        api_key_hashes=tuple(params.getlist("api_key_hash")),
        outcomes=_chosen(params, "outcome", _OUTCOMES),
        flags=_chosen(params, "flag", frozenset(FLAGS)),
        tags=_tags(params.getlist("tag")),
        min_latency_ms=_number(params, "min_latency_ms"),
        since=_number(params, "since"),
        until=_number(params, "until"),
    )


def page_body(page: Page) -> bytes:
    """``{"requests": [...], "next": ..., "total": ...}`` with the lines as they are."""
    return b"".join(
        (
            b'{"requests":[',
            b",".join(page.lines),
            b'],"next":',
            orjson.dumps(page.next),
            b',"total":',
            orjson.dumps(page.total),
            b"}",
        )
    )


def jsonl_body(page: Page) -> bytes:
    """Every record of ``page``, oldest first, one a line: a log excerpt."""
    return b"".join(line + b"\n" for line in reversed(page.lines))


def _bad(error: BadParameter) -> Response:
    return Response(
        openai_error_body(str(error), "invalid_request", status=400, param=error.param),
        status_code=400,
        media_type="application/json",
    )


def requests_endpoint(recent: RecentRequests) -> Callable[[Request], Awaitable[Response]]:
    """The handler for ``/pulse/requests`` over ``recent``'s ring (guard it as the
    other ``/pulse/*`` data endpoints are)."""

    async def pulse_requests(request: Request) -> Response:
        params = request.query_params
        try:
            query = parse_filter(params)
            export = _chosen(params, "format", frozenset({"json", "jsonl"}))[-1:] == ("jsonl",)
            limit = _whole(params, "limit", 1, MAX_LIMIT) or DEFAULT_LIMIT
            cursor = _whole(params, "cursor", 0, None)
        except BadParameter as error:
            return _bad(error)
        # Copied here, on the loop that files records; read in a thread, since a full
        # ring at its largest bound takes a while to parse.
        first, lines = recent.ring.snapshot()
        if export:
            page = await asyncio.to_thread(select, first, lines, query, limit=None)
            return Response(
                jsonl_body(page),
                media_type="application/x-ndjson",
                headers={
                    **_HEADERS,
                    "Content-Disposition": 'attachment; filename="pulse-requests.jsonl"',
                },
            )
        page = await asyncio.to_thread(select, first, lines, query, limit=limit, before=cursor)
        return Response(page_body(page), media_type="application/json", headers=_HEADERS)

    return pulse_requests
