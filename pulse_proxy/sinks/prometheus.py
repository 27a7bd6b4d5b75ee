"""Prometheus metrics for every proxied request, in a registry the app passes in.

Every request metric is defined in :data:`REQUEST_METRICS`; the sink registers its
collectors with the ``registry`` it is given (no default registry, so every app and
every test owns its series).  Names and buckets follow the OpenTelemetry GenAI advice; counters are exposed with
``_total`` appended, so ``llm_requests`` reads ``llm_requests_total``.

Request metrics share the common labels ``model``, ``endpoint``, ``upstream``,
``status_class`` (``2xx`` … or ``none`` when no response arrived) and ``stream``.
``model`` and ``upstream`` go through :class:`~pulse_proxy.stats.labels.BoundedLabel`, as
do ``error_type`` and ``flag``: a flood of junk names folds into ``other`` instead of
growing the exposition without bound.

The request series are plain Python numbers, one :class:`_Series` per common-label
tuple (bounded, since every label in the key is bounded), turned into metric families
only when scraped.  Through prometheus_client's ``Counter`` and ``Histogram`` every
request would cost the event loop a lock per increment and a linear bucket search per
observation.  Now the accounting process sums each batch into a
:class:`PrometheusTally` under raw labels, and the loop's :meth:`PrometheusSink.merge`
bounds the labels and adds one series state per label tuple.  Exposition is still
prometheus_client's own ``generate_latest``.

Choices of our own:

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
* No ``*_created`` samples: they would double the series count of every counter in
  Prometheus.
* ``llm_tokens_total{token_type}``: ``cached`` is part of ``prompt`` and ``reasoning``
  part of ``completion``, as in OpenAI's usage object; sum only prompt and completion
  for a total.
* ``llm_request_error_rate`` and ``llm_alert_firing`` are read from callables at
  scrape time by a custom collector, so they are never stale and cost nothing per
  request.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from math import isfinite
from typing import Any

from msgspec import Struct, field
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from prometheus_client.registry import Collector
from prometheus_client.samples import Sample
from prometheus_client.utils import floatToGoString

from pulse_proxy.records import AlertEvent, Exchange
from pulse_proxy.stats.labels import BoundedLabel

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


@dataclass(frozen=True, slots=True)
class MetricDef:
    """One request metric: its exposed name, help text, type, and what it adds to the
    common labels (label names) or to a histogram (its bucket bounds)."""

    attribute: str  # where :class:`_Series` or the sink keeps its values
    name: str
    documentation: str
    type: str  # "counter" or "histogram"
    extra_labels: tuple[str, ...] = ()
    buckets: tuple[float, ...] = ()


REQUEST_METRICS = (
    MetricDef("requests", "llm_requests", "Proxied requests.", "counter"),
    MetricDef("duration", "llm_request_duration_seconds",
              "Request latency as the client saw it, to the last byte.", "histogram",
              buckets=DURATION_BUCKETS),
    MetricDef("ttft", "llm_time_to_first_token_seconds",
              "Time to the first content token of streamed responses.", "histogram",
              buckets=tuple(float(b) for b in TTFT_BUCKETS)),
    MetricDef("tokens", "llm_tokens",
              "Tokens by type (cached is part of prompt, reasoning part of completion).", "counter",
              extra_labels=("token_type",)),
    MetricDef("prompt_length", "llm_prompt_length_tokens", "Prompt length in tokens.", "histogram",
              buckets=TOKEN_BUCKETS),
    MetricDef("errors", "llm_request_errors",
              "Requests that did not succeed, by error type and outcome.", "counter",
              extra_labels=("error_type", "outcome")),
    MetricDef("cost", "llm_cost_usd", "Estimated cost in US dollars.", "counter"),
    MetricDef("risk", "llm_prompt_risk", "Requests whose prompt raised a risk flag.", "counter",
              extra_labels=("flag",)),
    MetricDef("drift", "llm_tokens_drift", "Upstream prompt tokens minus the local tiktoken count.",
              "histogram", buckets=DRIFT_BUCKETS),
    MetricDef("unpriced", "llm_unpriced_requests",
              "Requests with token usage but no price for their model.", "counter"),
)  # fmt: skip


class _Histogram(Struct, array_like=True):
    """Bucket counts (not cumulative: cumulated at scrape time) and the sum.  The
    bounds are the metric's (``_HISTOGRAM_BOUNDS``), passed in rather than carried, so
    a batch's histograms cross to the event loop as their counts only."""

    counts: list[int]
    sum: float = 0.0

    def observe(self, bounds: tuple[float, ...], value: float) -> None:
        # le is inclusive: a value equal to a bound belongs to that bound's bucket.
        self.counts[bisect_left(bounds, value)] += 1
        self.sum += value

    def merge(self, other: _Histogram) -> None:
        self.counts = [a + b for a, b in zip(self.counts, other.counts)]
        self.sum += other.sum

    def add_to(self, family: Metric, labels: dict[str, str], bounds: tuple[float, ...]) -> None:
        """Samples as prometheus_client's own Histogram writes them (no ``_sum`` when
        a bound is negative: the sum would not be monotonic)."""
        name = family.name
        total = 0
        for bound, count in zip((*bounds, float("inf")), self.counts):
            total += count
            le = floatToGoString(bound)  # type: ignore[no-untyped-call]  # unannotated upstream
            family.samples.append(Sample(name + "_bucket", {**labels, "le": le}, total))
        family.samples.append(Sample(name + "_count", labels, total))
        if bounds[0] >= 0:
            family.samples.append(Sample(name + "_sum", labels, self.sum))


class _Series(Struct, array_like=True):
    """The request figures of one common-label tuple.

    Histograms and token counts start as ``None`` and appear on first use, because a
    series shows in the exposition as soon as it exists: a non-streamed model would
    otherwise carry an all-zero TTFT histogram.
    """

    requests: int = 0
    duration: _Histogram | None = None
    ttft: _Histogram | None = None
    prompt_length: _Histogram | None = None
    drift: _Histogram | None = None
    tokens: list[int | None] = field(default_factory=lambda: [None] * len(TOKEN_TYPES))
    cost: float | None = None
    unpriced: int | None = None

    def merge(self, other: _Series) -> None:
        """Fold in another tuple's figures (a batch's, already summed)."""
        self.requests += other.requests
        for attribute in _HISTOGRAM_BOUNDS:
            part = getattr(other, attribute)
            if part is not None:
                (getattr(self, attribute) or _new(self, attribute)).merge(part)
        mine = self.tokens
        for index, count in enumerate(other.tokens):
            if count is not None:
                _add_token(mine, index, count)
        if other.cost is not None:
            self.cost = (self.cost or 0.0) + other.cost
        if other.unpriced is not None:
            self.unpriced = (self.unpriced or 0) + other.unpriced


def _add_token(tokens: list[int | None], index: int, count: int) -> None:
    tokens[index] = (tokens[index] or 0) + count


class PrometheusTally(Struct, array_like=True):
    """A batch's request figures by raw (unbounded) label tuple.

    Summed where the batch is accounted, in the accounting process, so the event loop
    only merges one :class:`_Series` per label tuple into the sink (:meth:`PrometheusSink.merge`).
    """

    series: dict[Key, _Series] = {}
    errors: dict[tuple[Key, str, str], int] = {}
    risks: dict[tuple[Key, str], int] = {}

    def add(self, ex: Exchange) -> None:
        status = ex.status_code
        key: Key = (
            ex.model or ex.response_model or UNKNOWN_MODEL,
            ex.endpoint,
            ex.upstream,
            _STATUS_CLASS.get(status // 100, "other") if status else "none",
            "true" if ex.stream else "false",
        )
        series = self.series.get(key)
        if series is None:
            series = self.series[key] = _Series()

        series.requests += 1
        value: Any = ex.latency_ms
        if value is not None and isfinite(value):  # NaN or inf would poison _sum
            (series.duration or _new(series, "duration")).observe(
                _HISTOGRAM_BOUNDS["duration"], value / 1000.0
            )
        value = ex.ttft_ms
        if ex.stream and value is not None and isfinite(value):
            (series.ttft or _new(series, "ttft")).observe(_HISTOGRAM_BOUNDS["ttft"], value / 1000.0)
        tokens = series.tokens
        prompt = ex.prompt_tokens
        if prompt is not None:
            (series.prompt_length or _new(series, "prompt_length")).observe(
                _HISTOGRAM_BOUNDS["prompt_length"], prompt
            )
            if prompt > 0:
                _add_token(tokens, 0, prompt)
            local = ex.prompt_tokens_local
            if local is not None and ex.token_source == "upstream":
                (series.drift or _new(series, "drift")).observe(
                    _HISTOGRAM_BOUNDS["drift"], prompt - local
                )
        value = ex.completion_tokens
        if value and value > 0:
            _add_token(tokens, 1, value)
        value = ex.cached_tokens
        if value and value > 0:
            _add_token(tokens, 2, value)
        value = ex.reasoning_tokens
        if value and value > 0:
            _add_token(tokens, 3, value)
        value = ex.cost_usd
        if value is not None:
            if value > 0 and isfinite(value):
                series.cost = (series.cost or 0.0) + value
        elif (
            ex.outcome == "success"
            and ex.endpoint in PRICED_ENDPOINTS
            and (prompt or ex.completion_tokens)
        ):
            series.unpriced = (series.unpriced or 0) + 1

        if ex.outcome != "success":
            error_key = (key, ex.error_type or ex.outcome, ex.outcome)
            self.errors[error_key] = self.errors.get(error_key, 0) + 1
        for flag in ex.risk_flags:
            risk_key = (key, flag)
            self.risks[risk_key] = self.risks.get(risk_key, 0) + 1


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

        degraded = CounterMetricFamily(
            "pulse_accounting_degraded",
            "Requests accounted without their bodies (usage unread) because the accounting "
            "backlog was full (stage bodies_dropped or headers_only) or their batch kept "
            "crashing the accounting process (quarantined).",
            labels=["stage"],
        )
        stages = _call(sink.degraded)
        if isinstance(stages, Mapping):
            for stage, count in sorted(stages.items()):
                degraded.add_metric([str(stage)], float(count))
        yield degraded

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
    counts of dropped records, ``degraded`` maps accounting stages to counts of
    requests accounted without their bodies; each is called at scrape time.

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
        degraded: Callable[[], Mapping[str, int]] | None = None,
    ) -> None:
        self.registry = registry
        self.error_rate = error_rate
        self.alert_firing = alert_firing
        self.dropped = dropped
        self.degraded = degraded
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
        self._series: dict[Key, _Series] = {}
        self._errors: dict[tuple[Key, str, str], int] = {}
        self._risks: dict[tuple[Key, str], int] = {}
        registry.register(_RequestCollector(self))
        registry.register(_ScrapeTimeCollector(self))

    def on_exchange(self, ex: Exchange) -> None:
        """One exchange's figures (the proxy itself merges whole batches: :meth:`merge`)."""
        tally = PrometheusTally()
        tally.add(ex)
        self.merge(tally)

    def merge(self, tally: PrometheusTally) -> None:
        """Fold a batch's figures in: one step per label tuple, however many requests.

        Labels are bounded here, not where the batch was summed, so that one set of
        kept values holds for the life of the process; each fold is weighted by its
        requests so ``pulse_label_values_folded`` counts requests, as before.
        """
        folded: dict[Key, Key] = {}
        for raw, part in tally.series.items():
            key = folded[raw] = self._fold_key(raw, part.requests)
            series = self._series.get(key)
            if series is None:
                series = self._series[key] = _Series()
            series.merge(part)
        for (raw, error_type, outcome), count in tally.errors.items():
            error_key = (folded[raw], self._error_type.fold(error_type, count), outcome)
            self._errors[error_key] = self._errors.get(error_key, 0) + count
        for (raw, flag), count in tally.risks.items():
            risk_key = (folded[raw], self._flag.fold(flag, count))
            self._risks[risk_key] = self._risks.get(risk_key, 0) + count

    def _fold_key(self, raw: Key, requests: int) -> Key:
        model, endpoint, upstream, status_class, stream = raw
        return (
            self._model.fold(model, requests),
            endpoint,
            self._upstream.fold(upstream, requests),
            status_class,
            stream,
        )

    def on_alert(self, alert: AlertEvent) -> None:
        """Alert state reaches Prometheus through ``alert_firing`` at scrape time."""

    async def aclose(self) -> None:
        return None


_HISTOGRAM_BOUNDS = {m.attribute: m.buckets for m in REQUEST_METRICS if m.type == "histogram"}


def _new(series: _Series, attribute: str) -> _Histogram:
    histogram = _Histogram([0] * (len(_HISTOGRAM_BOUNDS[attribute]) + 1))  # the last is +Inf
    setattr(series, attribute, histogram)
    return histogram


class _RequestCollector(Collector):
    """The sink's request series as metric families, built when scraped."""

    def __init__(self, sink: PrometheusSink) -> None:
        self._sink = sink

    def collect(self) -> Iterator[Metric]:
        sink = self._sink
        series = list(sink._series.items())  # a snapshot: requests may land meanwhile
        # Counters with labels beyond the common ones, kept by their full label tuple.
        by_labels: dict[str, Mapping[tuple[Any, ...], int]] = {
            "errors": sink._errors,
            "risk": sink._risks,
        }
        for metric in REQUEST_METRICS:
            names = [*COMMON_LABELS, *metric.extra_labels]
            family = Metric(metric.name, metric.documentation, metric.type)
            counter_name = metric.name + "_total"
            counts = by_labels.get(metric.attribute)
            if counts is not None:
                for (key, *extra), count in list(counts.items()):
                    family.add_sample(counter_name, _labels(names, (*key, *extra)), count)
            elif metric.attribute == "tokens":
                for key, one in series:
                    for token_type, tokens in zip(TOKEN_TYPES, one.tokens):
                        if tokens is not None:
                            family.add_sample(
                                counter_name, _labels(names, (*key, token_type)), tokens
                            )
            else:
                for key, one in series:
                    figure = getattr(one, metric.attribute)
                    if figure is None:
                        continue
                    if metric.type == "histogram":
                        figure.add_to(family, _labels(names, key), metric.buckets)
                    else:
                        family.add_sample(counter_name, _labels(names, key), figure)
            yield family


def _labels(names: list[str], values: tuple[str, ...]) -> dict[str, str]:
    return dict(zip(names, values))


def exposition(registry: CollectorRegistry) -> tuple[bytes, str]:
    """The body and content type of a ``/metrics`` response for ``registry``.

    The classic text format, version 0.0.4, which every Prometheus (and every other
    scraper) parses; all names here are legacy-valid, so nothing needs the newer
    UTF-8 escaping.
    """
    return generate_latest(registry), CONTENT_TYPE_PLAIN_0_0_4
