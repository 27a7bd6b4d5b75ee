"""The core sections of the configuration: server, upstream, accounting, metrics, risk, dashboard, pricing.

Every model forbids unknown keys, so a typo (``uptream:``) fails start-up with the
key's dotted path instead of being silently ignored.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

from pulse_proxy.proxy.urls import http_base_url


class Section(BaseModel):
    """Every part of the configuration: immutable once built, and a misspelt key is an
    error rather than a silently ignored setting."""

    model_config = ConfigDict(frozen=True, extra="forbid")


def require_unique(names: Iterable[str], what: str) -> None:
    """Refuse a list whose entries share a name: later references by name (a rule's
    webhooks, the alerts endpoint) would be ambiguous."""
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise ValueError(f"duplicate {what} name {name!r}")
        seen.add(name)


class ServerSettings(Section):
    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535)
    log_format: Literal["json", "console"] = "json"
    admin_token: str | None = None
    max_body_bytes: int = Field(32 * 1024 * 1024, gt=0)
    # How long SIGTERM waits for in-flight requests (streams included) to finish.
    shutdown_grace_s: float = Field(30.0, ge=0)
    # An llm.metrics.summary event this often (0 turns it off).
    summary_interval_s: float = Field(60.0, ge=0)
    # Slow or idle clients (see pulse_proxy/proxy/protocol.py).  From a connection, or a later
    # request's first byte, to the end of its headers: past it, 408 and close.
    request_header_timeout_s: float = Field(10.0, gt=0, le=3600)
    # The longest pause allowed inside a request body: past it, 408 and close.
    request_body_timeout_s: float = Field(30.0, gt=0, le=3600)
    # A body still arriving after request_body_timeout_s must have averaged at least
    # this many bytes a second, or it is cut like a paused one (0 turns this off).
    request_body_min_rate: float = Field(500.0, ge=0)
    # Open client connections; past it, a new connection is answered 503 and closed.
    max_connections: int = Field(2048, gt=0)


def _upstream_url(value: str) -> str:
    if value == "mock":
        return value
    return http_base_url(value, "'mock' or an http(s) base URL such as https://api.openai.com/v1")


class FallbackSettings(Section):
    """A further upstream, tried in list order after the primary (``upstream.url``)."""

    url: str
    # The ``upstream`` field and label for answers it serves; required, since two
    # fallbacks on one host would otherwise share a name.
    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._:\-]+$")
    # Sent only when the client sent no credential, and only to this upstream.
    api_key: str | None = None
    # Requested model -> this upstream's name for it (an Azure deployment, say).
    models: dict[str, str] = Field(default_factory=dict)
    # Unset: the primary's (upstream.connect_timeout_s / read_timeout_s).
    connect_timeout_s: float | None = Field(None, gt=0)
    read_timeout_s: float | None = Field(None, gt=0)

    @field_validator("url")
    @classmethod
    def _url_is_http(cls, value: str) -> str:
        return _upstream_url(value)


# What ``upstream.retry.on`` may hold besides status codes.
RetryCondition = Literal["connect_error", "timeout"]
DEFAULT_RETRY_ON: tuple[RetryCondition | int, ...] = (
    "connect_error",
    "timeout",
    429,
    500,
    502,
    503,
    504,
)


class RetrySettings(Section):
    """Further tries of a request that failed before its answer began."""

    # Tries per request across all upstreams; 1: no retry, no failover.
    attempts: int = Field(1, ge=1, le=10)
    on: tuple[RetryCondition | int, ...] = DEFAULT_RETRY_ON
    # Full jitter: before trying an upstream again, a random wait in
    # [0, min(max_backoff_s, backoff_s * 2**n)].  A Retry-After longer than
    # max_backoff_s skips that upstream for the request instead.
    backoff_s: float = Field(0.25, ge=0)
    max_backoff_s: float = Field(8.0, ge=0)
    # Retries may add at most this share to the upstream traffic of the last 10 s.
    budget_ratio: float = Field(0.2, ge=0, le=10)

    @model_validator(mode="before")
    @classmethod
    def _yaml_on_key(cls, data: object) -> object:
        """YAML 1.1 (PyYAML's) reads an unquoted ``on:`` key as the boolean true."""
        if isinstance(data, dict) and True in data and "on" not in data:
            data = {("on" if key is True else key): value for key, value in data.items()}
        return data

    @field_validator("on", mode="before")
    @classmethod
    def _retryable_statuses(cls, value: object) -> object:
        """One message naming the entry, rather than pydantic's per-union-member list."""
        if not isinstance(value, list | tuple):
            return value
        for item in value:
            if isinstance(item, str) and not item.isdigit():
                if item not in ("connect_error", "timeout"):
                    raise ValueError(
                        f"{item!r} is not a retry condition: use connect_error, timeout "
                        "or a status code (429, 5xx)"
                    )
                continue
            try:
                status = int(item)
            except (TypeError, ValueError):
                raise ValueError(f"{item!r} is not a retry condition") from None
            if not (status == 429 or 500 <= status <= 599):
                raise ValueError(
                    f"{status} cannot be retried: only 429 and 5xx statuses (a client's own "
                    "error is answered as the upstream gave it)"
                )
        return value

    @model_validator(mode="after")
    def _backoff_ordered(self) -> RetrySettings:
        if self.max_backoff_s < self.backoff_s:
            raise ValueError("max_backoff_s must be at least backoff_s")
        return self


class BreakerSettings(Section):
    """The circuit breaker kept for each upstream separately."""

    # Opens after this many failed tries in a row (0: never on this ground).
    consecutive_failures: int = Field(5, ge=0)
    # ... or when the share of failed tries over window_s exceeds this (with at
    # least min_requests tries in the window).
    error_rate: float = Field(0.5, gt=0, le=1)
    min_requests: int = Field(20, ge=1)
    window_s: float = Field(30.0, gt=0, le=3600)
    # How long it stays open before one trial request; doubled on each failed trial.
    open_for_s: float = Field(10.0, gt=0)
    max_open_for_s: float = Field(300.0, gt=0)

    @model_validator(mode="after")
    def _open_for_ordered(self) -> BreakerSettings:
        if self.max_open_for_s < self.open_for_s:
            raise ValueError("max_open_for_s must be at least open_for_s")
        return self


class UpstreamSettings(Section):
    # A base URL including the version prefix, or "mock" for the bundled mock.
    url: str = "mock"
    # The value of the ``upstream`` field and metric label; defaults to the URL's host.
    name: str | None = None
    api_key: str | None = None
    connect_timeout_s: float = Field(10.0, gt=0)
    # Waiting for response headers, and then for each next chunk of the body.
    # Reasoning models can think for minutes before the first byte; OpenAI's SDK waits 600 s.
    read_timeout_s: float = Field(600.0, gt=0)
    max_connections: int = Field(1000, gt=0)
    probe_interval_s: float = Field(15.0, gt=0)
    # Ask for stream usage (stream_options.include_usage) so streamed token counts are
    # exact; the extra chunk is hidden from a client that did not ask for it.
    inject_stream_usage: bool = True
    # Send an SSE comment this often while waiting for a stream's first chunk (0: off).
    sse_keepalive_s: float = Field(0.0, ge=0)
    # Further upstreams, tried in order when the primary fails (see retry, breaker).
    fallbacks: tuple[FallbackSettings, ...] = ()
    retry: RetrySettings = RetrySettings()
    breaker: BreakerSettings = BreakerSettings()

    @field_validator("url")
    @classmethod
    def _url_is_http(cls, value: str) -> str:
        return _upstream_url(value)

    @field_validator("fallbacks")
    @classmethod
    def _fallbacks_distinct(
        cls, value: tuple[FallbackSettings, ...], info: ValidationInfo
    ) -> tuple[FallbackSettings, ...]:
        """Names must tell upstreams apart (events, labels, breaker state are by name),
        and one bundled mock serves one upstream."""
        url = info.data.get("url", "mock")
        primary = _label(url, info.data.get("name"))
        require_unique([primary, *(f.name for f in value)], "upstream")
        if [url, *(f.url for f in value)].count("mock") > 1:
            raise ValueError("only one upstream can be the bundled mock ('mock')")
        return value

    @property
    def label(self) -> str:
        return _label(self.url, self.name)


def _label(url: str, name: str | None) -> str:
    if name:
        return name
    if url == "mock":
        return "mock"
    return urlsplit(url).hostname or "upstream"


class AccountingSettings(Section):
    # "process": finish accounting (parsing, counting, risk scans) in a child process,
    # off the event loop and on another core; "inline": in the proxy's own loop.
    mode: Literal["process", "inline"] = "process"
    # Finished requests wait this long to travel to the accounting process together,
    # and their figures to come back summed: each batch costs the event loop a fixed
    # amount, each request in it little.  Events are written this much later.
    batch_ms: float = Field(5.0, gt=0, le=1000)
    # Response bytes kept for usage extraction; past this only the tail is kept
    # (usage sits at the end of SSE streams).
    max_capture_bytes: int = Field(16 * 1024 * 1024, gt=0)
    # The backlog of finished requests waiting for the accounting process (queued or
    # sent and unanswered), bounded so that a stalled child cannot grow the proxy's
    # memory without end.  Past max_pending_bytes a request's captured bodies are
    # dropped (its event has usage_unread "backlog"); past max_pending_requests it is
    # accounted in the proxy from its headers alone.  Either way it keeps its event.
    max_pending_requests: int = Field(10_000, gt=0)
    max_pending_bytes: int = Field(128 * 1024 * 1024, gt=0)
    # A compressed response is decoded for accounting up to this many bytes, no further:
    # 1 MB of gzip can expand to 1 GB.  Past it the usage is marked unreadable
    # (``usage_unread``).  64 MiB is four times the capture limit, ample for any
    # real JSON answer, and bounds the accounting process's memory per response.
    max_decoded_bytes: int = Field(64 * 1024 * 1024, gt=0)
    # Salt for api_key_hash; generated at start-up when unset (hashes then differ per run).
    key_hash_salt: str | None = None
    max_tags: int = Field(10, ge=0)
    # Opt-in: also log prompt and completion text, PII and secrets masked, capped.
    log_content: bool = False
    content_max_chars: int = Field(2000, gt=0)


class MetricsSettings(Section):
    # Distinct values kept per client-controlled label (model, user, tag); the rest fold
    # into "other", so junk or hostile values cannot grow the series count.
    max_label_values: int = Field(50, ge=1, le=10_000)
    # Distinct models kept in the rolling statistics (past this: "other").
    max_models: int = Field(50, ge=1, le=10_000)
    # Distinct X-Pulse-Tags keys that become breakdown dimensions; later keys count in
    # "tag:other", so a client inventing a key per request cannot grow /pulse/stats.
    max_tag_keys: int = Field(20, ge=0, le=1_000)
    # Rows (dimension, value) in the /pulse/stats breakdown, all dimensions together;
    # past this a new value folds into its dimension's "other".
    max_breakdown_rows: int = Field(1000, ge=1, le=100_000)


RiskPolicy = Literal["observe", "block"]


class RiskSettings(Section):
    enabled: bool = True
    long_prompt_tokens: int = Field(8000, gt=0)
    # Characters scanned per request (head and tail of longer texts).
    max_scan_chars: int = Field(200_000, gt=0)
    # Per flag: observe (default: record only) or block (400, upstream not called).
    policy: dict[Literal["long_prompt", "jailbreak", "pii", "secret"], RiskPolicy] = Field(
        default_factory=dict
    )

    @property
    def blocking(self) -> frozenset[str]:
        return frozenset(flag for flag, action in self.policy.items() if action == "block")


class DashboardSettings(Section):
    # llm.request records kept in memory for /pulse/requests (about 1 KB each, the size
    # of the event line); the oldest go first.  The cap keeps a typo from costing GBs.
    recent_requests: int = Field(1000, gt=0, le=100_000)


class PricingSettings(Section):
    # Price files layered over the bundled table, later files winning.
    files: list[str] = Field(default_factory=list)
