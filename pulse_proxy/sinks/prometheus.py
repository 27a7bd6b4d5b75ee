"""Prometheus metrics for every proxied request, in a registry the app passes in.

All metrics are defined in :class:`PrometheusSink.__init__`, each with ``registry=``
(no default registry, so every app and every test owns its series).  Names and
buckets are SPEC's; prometheus_client appends ``_total`` to counters, so the Counter
``llm_requests`` is exposed as ``llm_requests_total``.

Request metrics share the common labels ``model``, ``endpoint``, ``upstream``,
``status_class`` (``2xx`` … or ``none`` when no response arrived) and ``stream``.
``model`` and ``upstream`` go through :class:`~pulse_proxy.labels.BoundedLabel`, as
do ``error_type`` and ``flag``: a flood of junk names folds into ``other`` instead of
growing the exposition without bound.

``on_exchange`` runs once per request on the dispatcher task, so it is kept cheap:
the ``.labels(...)`` children for a label tuple are looked up once and cached (the
cache is bounded because every key is made of bounded values).

Choices SPEC leaves open:

* ``llm_request_errors_total{error_type, outcome}`` counts every request whose
  outcome is not ``success`` (``error_type`` falls back to the outcome).  The extra
  ``outcome`` label tells the service's failures (``upstream_error``, ``timeout``,
  ``connection_error``, what ``llm_request_error_rate`` counts) from a client's own
  4xx or hang-up.
* ``llm_tokens_drift`` is a histogram of ``prompt_tokens - prompt_tokens_local`` for
  requests whose usage came from the upstream (otherwise there is nothing to compare).
  A gauge would only show the last request; the histogram shows how often, and in
  which direction, the local count is off by more than 1, 4, 16 … tokens (buckets are
  symmetric powers of 4 around zero).  prometheus_client exposes no ``_sum`` for a
  histogram with negative buckets, so read it through its buckets and ``_count``.
* :func:`exposition` leaves out the ``*_created`` samples by default.  They would
  double the series count of every counter in Prometheus, and the client's own switch
  for them is process-global.
* ``llm_tokens_total{token_type}``: ``cached`` is part of ``prompt`` and ``reasoning``
  part of ``completion``, as in OpenAI's usage object; sum only prompt and completion
  for a total.
* ``llm_request_error_rate`` and ``llm_alert_firing`` are read from callables at
  scrape time by a custom collector, so they are never stale and cost nothing per
  request.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from math import isfinite
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from prometheus_client.registry import Collector

from pulse_proxy.labels import BoundedLabel
from pulse_proxy.records import AlertEvent, Exchange

DURATION_BUCKETS = (0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92)  # fmt: skip
TTFT_BUCKETS = (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10)  # fmt: skip
TOKEN_BUCKETS = tuple(float(4**i) for i in range(12))  # 1 … 4,194,304
DRIFT_BUCKETS = (-256.0, -64.0, -16.0, -4.0, -1.0, 0.0, 1.0, 4.0, 16.0, 64.0, 256.0)

COMMON_LABELS = ("model", "endpoint", "upstream", "status_class", "stream")
TOKEN_TYPES = ("prompt", "completion", "cached", "reasoning")
# Endpoints whose requests are expected to have a price; others are never "unpriced".
PRICED_ENDPOINTS = frozenset({"chat", "completions", "embeddings", "responses"})
UNKNOWN_MODEL = "unknown"  # as in /pulse/stats

_STATUS_CLASS = {n: f"{n}xx" for n in range(1, 6)}

Key = tuple[str, str, str, str, str]


class _Children:
    """The label children of one common-label tuple, each resolved on first use.

    Lazily, because a child shows in the exposition as soon as it exists: a
    non-streamed model would otherwise carry an all-zero TTFT histogram.
    """

    __slots__ = (
        "_key",
        "_sink",
        "cached",
        "completion",
        "cost",
        "drift",
        "duration",
        "prompt",
        "prompt_length",
        "reasoning",
        "requests",
        "ttft",
        "unpriced",
    )

    requests: Any
    duration: Any
    ttft: Any
    prompt_length: Any
    cost: Any
    drift: Any
    unpriced: Any
    prompt: Any
    completion: Any
    cached: Any
    reasoning: Any

    def __init__(self, sink: PrometheusSink, key: Key) -> None:
        self._sink, self._key = sink, key
        self.requests = sink.requests.labels(*key)
        self.duration = self.ttft = self.prompt_length = None
        self.cost = self.drift = self.unpriced = None
        self.prompt = self.completion = self.cached = self.reasoning = None

    def make(self, name: str) -> Any:
        """Create the child ``name`` (an attribute of this class) and keep it."""
        sink = self._sink
        if name in TOKEN_TYPES:
            child = sink.tokens.labels(*self._key, name)
        else:
            child = getattr(sink, name).labels(*self._key)
        setattr(self, name, child)
        return child


class _ScrapeTimeCollector(Collector):
    """Figures that belong to the process, not to a request: read when scraped."""

    def __init__(self, sink: PrometheusSink) -> None:
        self._sink = sink

    def collect(self) -> Iterator[Metric]:
        sink = self._sink
        rate = GaugeMetricFamily(
            "llm_request_error_rate",
            "Share of requests that failed upstream (upstream_error, timeout, connection_error) over 5 minutes.",
        )
        value = _call(sink.error_rate)
        if isinstance(value, (int, float)) and isfinite(value):
            rate.add_metric([], float(value))
        yield rate

        firing = GaugeMetricFamily(
            "llm_alert_firing", "1 while the alert rule fires, else 0.", labels=["alert"]
        )
        states = _call(sink.alert_firing)
        if isinstance(states, Mapping):
            for name, on in sorted(states.items()):
                firing.add_metric([str(name)], 1.0 if on else 0.0)
        yield firing

        dropped = CounterMetricFamily(
            "pulse_dropped_events",
            "Records or deliveries a component dropped rather than block (full queue, send error).",
            labels=["component"],
        )
        counts = _call(sink.dropped)
        if isinstance(counts, Mapping):
            for component, count in sorted(counts.items()):
                dropped.add_metric([str(component)], float(count))
        yield dropped

        folded = CounterMetricFamily(
            "pulse_label_values_folded",
            "Label values folded into 'other' because the label had too many distinct values.",
            labels=["label"],
        )
        for name, bounded in sink.bounded_labels.items():
            folded.add_metric([name], float(bounded.folded))
        yield folded


def _call(source: Callable[[], Any] | None) -> Any:
    """A scrape must succeed even when a source is broken: a failure reads as absent."""
    if source is None:
        return None
    try:
        return source()
    except Exception:  # noqa: BLE001 - any bug in a source must not fail the scrape
        return None


class PrometheusSink:
    """Request metrics into ``registry``; see the module docstring for names and labels.

    ``error_rate`` returns the 5-minute error rate (or ``None`` with no traffic),
    ``alert_firing`` maps rule names to firing, ``dropped`` maps component names to
    counts of dropped records; each is called at scrape time.

    Example::

        registry = CollectorRegistry()
        sink = PrometheusSink(
            registry,
            error_rate=lambda: stats.measure("error_rate", "rate", 300).value,
            alert_firing=engine.firing,
        )
        body, content_type = exposition(registry)
    """

    def __init__(
        self,
        registry: CollectorRegistry,
        *,
        max_label_values: int = 100,
        error_rate: Callable[[], float | None] | None = None,
        alert_firing: Callable[[], Mapping[str, bool]] | None = None,
        dropped: Callable[[], Mapping[str, int]] | None = None,
    ) -> None:
        self.registry = registry
        self.error_rate = error_rate
        self.alert_firing = alert_firing
        self.dropped = dropped
        self._model = BoundedLabel(max_label_values)
        self._upstream = BoundedLabel(20)
        self._error_type = BoundedLabel(50)
        self._flag = BoundedLabel(20)
        self.bounded_labels = {
            "model": self._model,
            "upstream": self._upstream,
            "error_type": self._error_type,
            "flag": self._flag,
        }
        common = COMMON_LABELS
        self.requests = Counter("llm_requests", "Proxied requests.", common, registry=registry)
        self.duration = Histogram(
            "llm_request_duration_seconds",
            "Request latency as the client saw it, to the last byte.",
            common,
            buckets=DURATION_BUCKETS,
            registry=registry,
        )
        self.ttft = Histogram(
            "llm_time_to_first_token_seconds",
            "Time to the first content token of streamed responses.",
            common,
            buckets=TTFT_BUCKETS,
            registry=registry,
        )
        self.tokens = Counter(
            "llm_tokens",
            "Tokens by type (cached is part of prompt, reasoning part of completion).",
            (*common, "token_type"),
            registry=registry,
        )
        self.prompt_length = Histogram(
            "llm_prompt_length_tokens",
            "Prompt length in tokens.",
            common,
            buckets=TOKEN_BUCKETS,
            registry=registry,
        )
        self.errors = Counter(
            "llm_request_errors",
            "Requests that did not succeed, by error type and outcome.",
            (*common, "error_type", "outcome"),
            registry=registry,
        )
        self.cost = Counter(
            "llm_cost_usd", "Estimated cost in US dollars.", common, registry=registry
        )
        self.risk = Counter(
            "llm_prompt_risk",
            "Requests whose prompt raised a risk flag.",
            (*common, "flag"),
            registry=registry,
        )
        self.drift = Histogram(
            "llm_tokens_drift",
            "Upstream prompt tokens minus the local tiktoken count.",
            common,
            buckets=DRIFT_BUCKETS,
            registry=registry,
        )
        self.unpriced = Counter(
            "llm_unpriced_requests",
            "Requests with token usage but no price for their model.",
            common,
            registry=registry,
        )
        registry.register(_ScrapeTimeCollector(self))
        self._children: dict[Key, _Children] = {}
        self._errors: dict[tuple[Key, str, str], Any] = {}
        self._risks: dict[tuple[Key, str], Any] = {}

    def on_exchange(self, ex: Exchange) -> None:
        status = ex.status_code
        key: Key = (
            self._model.fold(ex.model or ex.response_model or UNKNOWN_MODEL),
            ex.endpoint,
            self._upstream.fold(ex.upstream),
            _STATUS_CLASS.get(status // 100, "other") if status else "none",
            "true" if ex.stream else "false",
        )
        children = self._children.get(key)
        if children is None:
            children = self._children[key] = _Children(self, key)

        children.requests.inc()
        value: Any = ex.latency_ms
        if value is not None and isfinite(value):  # NaN or inf would poison _sum
            (children.duration or children.make("duration")).observe(value / 1000.0)
        value = ex.ttft_ms
        if ex.stream and value is not None and isfinite(value):
            (children.ttft or children.make("ttft")).observe(value / 1000.0)
        prompt = ex.prompt_tokens
        if prompt is not None:
            (children.prompt_length or children.make("prompt_length")).observe(prompt)
            if prompt > 0:
                (children.prompt or children.make("prompt")).inc(prompt)
            local = ex.prompt_tokens_local
            if local is not None and ex.token_source == "upstream":
                (children.drift or children.make("drift")).observe(prompt - local)
        value = ex.completion_tokens
        if value and value > 0:
            (children.completion or children.make("completion")).inc(value)
        value = ex.cached_tokens
        if value and value > 0:
            (children.cached or children.make("cached")).inc(value)
        value = ex.reasoning_tokens
        if value and value > 0:
            (children.reasoning or children.make("reasoning")).inc(value)
        value = ex.cost_usd
        if value is not None:
            if value > 0:
                (children.cost or children.make("cost")).inc(value)
        elif (
            ex.outcome == "success"
            and ex.endpoint in PRICED_ENDPOINTS
            and (prompt or ex.completion_tokens)
        ):
            (children.unpriced or children.make("unpriced")).inc()

        if ex.outcome != "success":
            error_type = self._error_type.fold(ex.error_type or ex.outcome)
            error_key = (key, error_type, ex.outcome)
            child = self._errors.get(error_key)
            if child is None:
                child = self._errors[error_key] = self.errors.labels(*key, error_type, ex.outcome)
            child.inc()
        for flag in ex.risk_flags:
            risk_key = (key, self._flag.fold(flag))
            child = self._risks.get(risk_key)
            if child is None:
                child = self._risks[risk_key] = self.risk.labels(*key, risk_key[1])
            child.inc()

    def on_alert(self, alert: AlertEvent) -> None:
        """Alert state reaches Prometheus through ``alert_firing`` at scrape time."""

    async def aclose(self) -> None:
        return None


class _WithoutCreated(Collector):
    """``registry`` as seen by a scrape, minus the ``*_created`` samples."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self._registry = registry

    def collect(self) -> Iterator[Metric]:
        for metric in self._registry.collect():
            created = metric.name + "_created"
            samples = [s for s in metric.samples if s.name != created]
            if len(samples) == len(metric.samples):
                yield metric
                continue
            copy = Metric(metric.name, metric.documentation, metric.type, metric.unit)
            copy.samples = samples
            yield copy


def exposition(registry: CollectorRegistry, *, created: bool = False) -> tuple[bytes, str]:
    """The body and content type of a ``/metrics`` response for ``registry``.

    The classic text format, version 0.0.4, which every Prometheus (and every other
    scraper) parses; all names here are legacy-valid, so nothing needs the newer
    UTF-8 escaping.  ``created=True`` keeps prometheus_client's ``*_created`` samples.
    """
    body = generate_latest(registry if created else _WithoutCreated(registry))
    return body, CONTENT_TYPE_PLAIN_0_0_4
