"""OpenTelemetry export: one span per GenAI request and the GenAI client metrics, over OTLP/HTTP.

Follows the OpenTelemetry GenAI semantic conventions (v1.37+, where
``gen_ai.provider.name`` replaced ``gen_ai.system``; both are sent, for backends
still keyed on the old name).  Per inference request (``POST`` to
``/v1/chat/completions``, ``/v1/completions``, ``/v1/embeddings``, ``/v1/responses``):

* a ``CLIENT`` span named ``"{gen_ai.operation.name} {gen_ai.request.model}"``,
  timed exactly like the ``llm.request`` event (it ends at ``ended_at`` and lasts
  ``latency_ms``), with ``gen_ai.*``, ``server.*``, ``http.response.status_code``,
  ``error.type`` (status ERROR) and ``pulse.*`` attributes;
* ``gen_ai.client.operation.duration`` (s), ``gen_ai.client.token.usage``
  ({token}, ``gen_ai.token.type`` = input / output) and, for streams,
  ``gen_ai.client.operation.time_to_first_chunk`` (s): histograms with the bucket
  boundaries the conventions advise.

Operation names: chat completions and the Responses API are ``chat`` (the Responses
API is told apart by ``openai.api.type: responses``), legacy completions are
``text_completion``, embeddings ``embeddings``.  Other paths (``/models``, files,
retrieving a stored response) are not GenAI operations and export nothing.

Token usage comes from the upstream's ``usage`` only.  The convention says an
instrumentation that cannot get the counts "MAY allow users to enable offline token
counting. Otherwise it MUST NOT report usage", so local tiktoken counts are exported
only with ``count_local_tokens: true``, and chars/4 estimates never.

Privacy: no prompt or completion text, no key, no key hash, user or tags; error
messages stay in the log line (an upstream may echo request content in them).
Metric attributes a client controls (the model names, ``error.type``) are bounded
like the Prometheus labels.

Isolation: the tracer and meter providers are private to the sink (the global ones
are never set, so an app embedding LLM Pulse keeps its own), and every setting is
passed explicitly, so the SDK's own reading of ``OTEL_*`` variables decides nothing
that :mod:`pulse_proxy.settings` did not.  ``opentelemetry`` is imported only when
export is on (``pip install "llm-pulse[otel]"``).

Not on the event loop: ``on_exchange`` builds one span and three histogram points in
memory; batching and HTTP happen in the SDK's own threads, and ``aclose`` flushes and
shuts down in a worker thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from typing import Any
from urllib.parse import urlsplit

from pulse_proxy import __version__
from pulse_proxy.records import AlertEvent, Batch, Exchange
from pulse_proxy.settings import ConfigError
from pulse_proxy.settings.sinks import INSTALL_HINT, OtelSettings
from pulse_proxy.sinks import Rendered, write_each
from pulse_proxy.sinks.prometheus import DURATION_BUCKETS
from pulse_proxy.stats.labels import BoundedLabel, clean_label

# Bucket boundaries advised by the GenAI semantic conventions: the duration buckets are
# the Prometheus ones (imported above); token buckets go four steps further than Prometheus'.
TOKEN_BUCKETS = tuple(float(4**n) for n in range(14))  # 1, 4, 16, … 67108864

# (path, operation name, openai.api.type); only POSTs to these paths are GenAI operations.
_OPERATIONS: dict[str, tuple[str, str | None]] = {
    "/v1/chat/completions": ("chat", "chat_completions"),
    "/v1/responses": ("chat", "responses"),
    "/v1/completions": ("text_completion", None),
    "/v1/embeddings": ("embeddings", None),
}
_SPAN_STRING_LIMIT = 256


def _server_of(url: str) -> tuple[str | None, int | None]:
    """``server.address`` / ``server.port`` of the upstream base URL."""
    parts = urlsplit(url)
    if not parts.hostname:
        return None, None
    port = parts.port or {"https": 443, "http": 80}.get(parts.scheme)
    return parts.hostname, port


def _operation(ex: Exchange) -> tuple[str, str | None] | None:
    if ex.method != "POST":
        return None
    return _OPERATIONS.get(ex.path.rstrip("/"))


class OtelSink:
    """Spans and GenAI metrics to an OTLP/HTTP collector; see the module docstring.

    ``upstream_url`` gives ``server.address`` / ``server.port``; ``max_label_values``
    bounds the model names used as metric attributes (as ``metrics.max_label_values``
    does for Prometheus).  Nothing is exported before :meth:`start`.
    """

    def __init__(
        self, settings: OtelSettings, *, upstream_url: str, max_label_values: int = 50
    ) -> None:
        self.settings = settings
        self._sdk = _import_sdk()
        self._server_address, self._server_port = _server_of(upstream_url)
        self._request_model = BoundedLabel(max_label_values)
        self._response_model = BoundedLabel(max_label_values)
        self._error_type = BoundedLabel(50)
        self._tracer_provider: Any = None
        self._meter_provider: Any = None
        self._tracer: Any = None
        self._duration: Any = None
        self._tokens: Any = None
        self._ttfc: Any = None
        self._closed = False
        # Exchanges that arrived before start() or after aclose(), for pulse_dropped_events_total.
        self.dropped = 0

    @classmethod
    def from_settings(
        cls, settings: OtelSettings, *, upstream_url: str, max_label_values: int = 50
    ) -> OtelSink:
        return cls(settings, upstream_url=upstream_url, max_label_values=max_label_values)

    # -- lifecycle ----------------------------------------------------------------------

    def start(self) -> None:
        """Build the private providers; their export threads start here (in the lifespan)."""
        if self._tracer_provider is not None or self._meter_provider is not None or self._closed:
            return
        sdk, s = self._sdk, self.settings
        resource = self._resource()
        compression = (
            sdk.Compression.Gzip if s.compression == "gzip" else sdk.Compression.NoCompression
        )
        exporter_options: dict[str, Any] = {
            "headers": dict(s.headers),
            "timeout": s.timeout_s,
            "compression": compression,
        }
        if s.traces:
            provider = sdk.TracerProvider(
                sampler=sdk.ALWAYS_ON, resource=resource, shutdown_on_exit=False
            )
            provider.add_span_processor(
                sdk.BatchSpanProcessor(
                    sdk.OTLPSpanExporter(endpoint=s.signal_url("traces"), **exporter_options),
                    max_queue_size=s.max_queue_size,
                    schedule_delay_millis=s.span_delay_s * 1000,
                    max_export_batch_size=min(512, s.max_queue_size),
                    export_timeout_millis=s.timeout_s * 1000,
                )
            )
            self._tracer_provider = provider
            self._tracer = provider.get_tracer("pulse_proxy", __version__)
        if s.metrics:
            self._start_metrics(resource, exporter_options)

    def _start_metrics(self, resource: Any, exporter_options: dict[str, Any]) -> None:
        sdk, s = self._sdk, self.settings
        temporality = (
            sdk.AggregationTemporality.DELTA
            if s.temporality == "delta"
            else sdk.AggregationTemporality.CUMULATIVE
        )
        exporter = sdk.OTLPMetricExporter(
            endpoint=s.signal_url("metrics"),
            preferred_temporality={sdk.Histogram: temporality},
            **exporter_options,
        )
        reader = sdk.PeriodicExportingMetricReader(
            exporter,
            export_interval_millis=s.export_interval_s * 1000,
            export_timeout_millis=s.timeout_s * 1000,
        )
        provider = sdk.MeterProvider(
            metric_readers=[reader],
            resource=resource,
            exemplar_filter=sdk.AlwaysOffExemplarFilter(),
            shutdown_on_exit=False,
        )
        meter = provider.get_meter("pulse_proxy", __version__)
        self._duration = meter.create_histogram(
            "gen_ai.client.operation.duration", unit="s", description="GenAI operation duration.",
            explicit_bucket_boundaries_advisory=DURATION_BUCKETS,
        )  # fmt: skip
        self._tokens = meter.create_histogram(
            "gen_ai.client.token.usage", unit="{token}",
            description="Number of input and output tokens used.",
            explicit_bucket_boundaries_advisory=TOKEN_BUCKETS,
        )  # fmt: skip
        self._ttfc = meter.create_histogram(
            "gen_ai.client.operation.time_to_first_chunk", unit="s",
            description="Time to receive the first chunk of a streamed response.",
            explicit_bucket_boundaries_advisory=DURATION_BUCKETS,
        )  # fmt: skip
        self._meter_provider = provider

    def _resource(self) -> Any:
        """Built by hand, not ``Resource.create``: that would merge ``OTEL_*`` from the environment."""
        s = self.settings
        attributes: dict[str, Any] = {
            "telemetry.sdk.language": "python",
            "telemetry.sdk.name": "opentelemetry",
            "telemetry.sdk.version": self._sdk.sdk_version,
            "service.instance.id": str(uuid.uuid4()),
            **s.resource_attributes,
            "service.name": s.effective_service_name,
        }
        attributes.setdefault("service.version", __version__)
        return self._sdk.Resource(attributes)

    async def aclose(self) -> None:
        """Send what is pending, then stop the export threads (blocking calls: in a thread)."""
        if self._closed:
            return
        self._closed = True
        if self._tracer_provider is None and self._meter_provider is None:
            return
        await asyncio.to_thread(self._flush_and_shutdown)

    def _flush_and_shutdown(self) -> None:
        timeout_ms = int(self.settings.timeout_s * 1000)
        for provider in (self._tracer_provider, self._meter_provider):
            if provider is None:
                continue
            # The SDK logs its own export failures; one provider failing must not keep
            # the other from sending what it holds.
            with contextlib.suppress(Exception):
                provider.force_flush(timeout_ms)
            with contextlib.suppress(Exception):
                provider.shutdown()

    # -- records -------------------------------------------------------------------------

    def on_alert(self, alert: AlertEvent) -> None:
        """Alerts are not GenAI operations; they reach OTLP backends as the metrics they watch."""
        return

    def takes_exchanges(self, rendered: Rendered) -> bool:
        return True

    def write(self, batch: Batch[Any]) -> None:
        write_each(self.on_exchange, batch.exchanges)

    def on_exchange(self, ex: Exchange) -> None:
        operation = _operation(ex)
        if operation is None:
            return
        if self._closed or (self._tracer is None and self._duration is None):
            self.dropped += 1
            return
        usage = self._usage(ex)
        if self._tracer is not None:
            self._span(ex, operation, usage)
        if self._duration is not None:
            self._record_metrics(ex, operation[0], usage)

    def _usage(self, ex: Exchange) -> tuple[int | None, int | None]:
        """(input, output) tokens to export: the upstream's, or local counts when opted in."""
        if ex.token_source == "upstream" or (
            ex.token_source == "tiktoken" and self.settings.count_local_tokens
        ):
            return ex.prompt_tokens, ex.completion_tokens
        return None, None

    def _common(self, ex: Exchange, operation_name: str, *, bounded: bool) -> dict[str, Any]:
        """Attributes shared by the span and the metrics (bounded model names for metrics)."""
        if bounded:
            request_model = self._request_model.fold(ex.model) if ex.model else None
            response_model = (
                self._response_model.fold(ex.response_model) if ex.response_model else None
            )
        else:
            request_model = clean_label(ex.model, _SPAN_STRING_LIMIT) if ex.model else None
            response_model = (
                clean_label(ex.response_model, _SPAN_STRING_LIMIT) if ex.response_model else None
            )
        attributes: dict[str, Any] = {
            "gen_ai.operation.name": operation_name,
            "gen_ai.provider.name": self.settings.provider_name,
            "gen_ai.system": self.settings.provider_name,
        }
        if request_model:
            attributes["gen_ai.request.model"] = request_model
        if response_model:
            attributes["gen_ai.response.model"] = response_model
        if self._server_address:
            attributes["server.address"] = self._server_address
            attributes["server.port"] = self._server_port
        if ex.outcome != "success":
            error_type = ex.error_type or ex.outcome
            attributes["error.type"] = (
                self._error_type.fold(error_type) if bounded else clean_label(error_type)
            )
        return attributes

    def _span(
        self, ex: Exchange, operation: tuple[str, str | None], usage: tuple[int | None, int | None]
    ) -> None:
        sdk = self._sdk
        operation_name, api_type = operation
        attributes = self._common(ex, operation_name, bounded=False)
        if api_type:
            attributes["openai.api.type"] = api_type
        attributes["gen_ai.request.stream"] = ex.stream
        _set(attributes, "gen_ai.request.max_tokens", ex.max_tokens)
        if ex.finish_reason:
            attributes["gen_ai.response.finish_reasons"] = (clean_label(ex.finish_reason),)
        input_tokens, output_tokens = usage
        _set(attributes, "gen_ai.usage.input_tokens", input_tokens)
        _set(attributes, "gen_ai.usage.output_tokens", output_tokens)
        if ex.token_source == "upstream":
            _set(attributes, "gen_ai.usage.cache_read.input_tokens", ex.cached_tokens)
            _set(attributes, "gen_ai.usage.reasoning.output_tokens", ex.reasoning_tokens)
        if ex.stream and ex.ttft_ms is not None:
            attributes["gen_ai.response.time_to_first_chunk"] = ex.ttft_ms / 1000
        _set(attributes, "http.response.status_code", ex.status_code)
        attributes["pulse.request_id"] = clean_label(ex.request_id, 128)
        attributes["pulse.outcome"] = ex.outcome
        attributes["pulse.stream"] = ex.stream
        _set(attributes, "pulse.token_source", ex.token_source)
        _set(attributes, "pulse.ttft_ms", ex.ttft_ms)
        _set(attributes, "pulse.cost_usd", ex.cost_usd)
        if ex.risk_flags:
            attributes["pulse.risk_flags"] = tuple(ex.risk_flags)

        # The span ends when the llm.request event says and lasts exactly latency_ms.
        end_ns = int(ex.ended_at * 1e9)
        start_ns = end_ns - round((ex.latency_ms or 0.0) * 1e6)
        name = (
            f"{operation_name} {attributes['gen_ai.request.model']}" if ex.model else operation_name
        )
        span = self._tracer.start_span(
            name,
            context=sdk.Context(),
            kind=sdk.SpanKind.CLIENT,
            attributes=attributes,
            start_time=start_ns,
        )
        if ex.outcome != "success":
            span.set_status(sdk.Status(sdk.StatusCode.ERROR, attributes["error.type"]))
        span.end(end_time=end_ns)

    def _record_metrics(
        self, ex: Exchange, operation_name: str, usage: tuple[int | None, int | None]
    ) -> None:
        attributes = self._common(ex, operation_name, bounded=True)
        attributes.pop("gen_ai.system")  # metrics follow the current convention only
        if ex.latency_ms is not None:
            self._duration.record(ex.latency_ms / 1000, attributes)
        if ex.stream and ex.ttft_ms is not None:
            self._ttfc.record(ex.ttft_ms / 1000, attributes)
        attributes.pop("error.type", None)  # not an attribute of token.usage
        for token_type, count in zip(("input", "output"), usage):
            if count is not None and count >= 0:
                self._tokens.record(count, {**attributes, "gen_ai.token.type": token_type})


def _set(attributes: dict[str, Any], key: str, value: Any) -> None:
    if value is not None:
        attributes[key] = value


class _Sdk:
    """The OpenTelemetry names the sink uses, imported once, only when export is on."""

    def __init__(self) -> None:
        from opentelemetry.context import Context
        from opentelemetry.exporter.otlp.proto.http import Compression
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.metrics import AlwaysOffExemplarFilter, Histogram, MeterProvider
        from opentelemetry.sdk.metrics.export import (
            AggregationTemporality,
            PeriodicExportingMetricReader,
        )
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
        from opentelemetry.sdk.trace.sampling import ALWAYS_ON
        from opentelemetry.sdk.version import __version__ as sdk_version
        from opentelemetry.trace import SpanKind, Status, StatusCode

        self.Context = Context
        self.Compression = Compression
        self.OTLPMetricExporter = OTLPMetricExporter
        self.OTLPSpanExporter = OTLPSpanExporter
        self.Histogram = Histogram
        self.MeterProvider = MeterProvider
        self.AggregationTemporality = AggregationTemporality
        self.PeriodicExportingMetricReader = PeriodicExportingMetricReader
        self.AlwaysOffExemplarFilter = AlwaysOffExemplarFilter
        self.Resource = Resource
        self.TracerProvider = TracerProvider
        self.BatchSpanProcessor = BatchSpanProcessor
        self.ALWAYS_ON = ALWAYS_ON
        self.sdk_version = sdk_version
        self.SpanKind = SpanKind
        self.Status = Status
        self.StatusCode = StatusCode


def _import_sdk() -> _Sdk:
    try:
        return _Sdk()
    except ImportError as exc:
        raise ConfigError(
            f"OpenTelemetry export needs its packages: {INSTALL_HINT} ({exc})"
        ) from exc
