"""OpenTelemetry export, checked against a real OTLP/HTTP receiver that decodes what arrives.

The receiver is a Starlette app on a loopback port accepting ``POST /v1/traces`` and
``/v1/metrics``; it gunzips and parses the protobuf bodies with the official
``opentelemetry-proto`` messages, so the tests see exactly what a collector would.
"""

from __future__ import annotations

import asyncio
import gzip
import secrets
import sys
import threading
from collections.abc import Iterator
from typing import Any

import openai
import pytest
from conftest import RunningProxy, run_server, start_proxy, wait_until
from factories import make_exchange
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

import pulse_proxy
from pulse_proxy.settings import ConfigError, load_settings, redacted
from pulse_proxy.settings.sinks import OtelSettings
from pulse_proxy.sinks.otel import OtelSink

# The GenAI semantic conventions' advice, written out rather than imported from the sink.
DURATION_BOUNDS = [
    0.01,
    0.02,
    0.04,
    0.08,
    0.16,
    0.32,
    0.64,
    1.28,
    2.56,
    5.12,
    10.24,
    20.48,
    40.96,
    81.92,
]
TOKEN_BOUNDS = [
    1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864,
]  # fmt: skip
PROMPT = "Describe the violet lighthouse of Quillmere in one line."
API_KEY = "sk-proj-" + secrets.token_hex(24)


# -- the receiver ---------------------------------------------------------------------


def _value(value: AnyValue) -> Any:
    kind = value.WhichOneof("value")
    if kind == "array_value":
        return [_value(v) for v in value.array_value.values]
    return getattr(value, kind) if kind else None


def attrs(key_values: Any) -> dict[str, Any]:
    """OTLP ``KeyValue`` list as a plain dict."""
    return {kv.key: _value(kv.value) for kv in key_values if isinstance(kv, KeyValue)}


class OtlpReceiver:
    """What a collector received, decoded; thread-safe (uvicorn serves it in a thread)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.traces: list[ExportTraceServiceRequest] = []
        self.metrics: list[ExportMetricsServiceRequest] = []
        self.bodies: list[bytes] = []
        self.headers: list[dict[str, str]] = []
        self.app = Starlette(
            routes=[
                Route("/v1/traces", self._traces, methods=["POST"]),
                Route("/v1/metrics", self._metrics, methods=["POST"]),
            ]
        )

    async def _body(self, request: Request) -> bytes:
        body = await request.body()
        if request.headers.get("content-encoding") == "gzip":
            body = gzip.decompress(body)
        with self._lock:
            self.bodies.append(body)
            self.headers.append(dict(request.headers))
        return body

    async def _traces(self, request: Request) -> Response:
        message = ExportTraceServiceRequest.FromString(await self._body(request))
        with self._lock:
            self.traces.append(message)
        return Response(
            ExportTraceServiceResponse().SerializeToString(), media_type="application/x-protobuf"
        )

    async def _metrics(self, request: Request) -> Response:
        message = ExportMetricsServiceRequest.FromString(await self._body(request))
        with self._lock:
            self.metrics.append(message)
        return Response(
            ExportMetricsServiceResponse().SerializeToString(), media_type="application/x-protobuf"
        )

    def spans(self) -> list[tuple[dict[str, Any], Span]]:
        """Every span received, with its resource's attributes."""
        with self._lock:
            return [
                (attrs(rs.resource.attributes), span)
                for request in self.traces
                for rs in request.resource_spans
                for ss in rs.scope_spans
                for span in ss.spans
            ]

    def points(self, name: str) -> list[Any]:
        """Histogram points of ``name`` in the latest export carrying it (cumulative totals)."""
        with self._lock:
            exports = list(self.metrics)
        for request in reversed(exports):
            found = [
                point
                for rm in request.resource_metrics
                for sm in rm.scope_metrics
                for metric in sm.metrics
                if metric.name == name
                for point in metric.histogram.data_points
            ]
            if found:
                return found
        return []

    def metric_units(self) -> dict[str, str]:
        with self._lock:
            return {
                m.name: m.unit
                for request in self.metrics
                for rm in request.resource_metrics
                for sm in rm.scope_metrics
                for m in sm.metrics
            }


@pytest.fixture
def receiver() -> Iterator[tuple[OtlpReceiver, str]]:
    rx = OtlpReceiver()
    with run_server(rx.app) as url:
        yield rx, url


def otel_config(url: str, **overrides: Any) -> dict[str, Any]:
    return {"otel": {"endpoint": url, "service_name": "pulse-test", **overrides}}


def count(points: list[Any], **where: Any) -> int:
    return sum(
        p.count for p in points if all(attrs(p.attributes).get(k) == v for k, v in where.items())
    )


def total(points: list[Any], **where: Any) -> float:
    return sum(
        p.sum for p in points if all(attrs(p.attributes).get(k) == v for k, v in where.items())
    )


# -- settings -------------------------------------------------------------------------


def test_standard_variables_map_to_settings_and_headers_are_masked() -> None:
    """OTEL_EXPORTER_OTLP_ENDPOINT turns export on and names the base URL; header values never print."""
    settings = load_settings(
        environ={
            "OTEL_EXPORTER_OTLP_ENDPOINT": "https://collector.example:4318/otlp/",
            "OTEL_EXPORTER_OTLP_HEADERS": "x-api-key=s3cr3t-value,authorization=Bearer%20tok-77",
            "OTEL_SERVICE_NAME": "chat-sidecar",
            "OTEL_RESOURCE_ATTRIBUTES": "deployment.environment=prod,team=llm",
        }
    )
    otel = settings.otel
    assert otel.enabled is True
    assert otel.endpoint == "https://collector.example:4318/otlp"
    assert otel.signal_url("traces") == "https://collector.example:4318/otlp/v1/traces"
    assert otel.signal_url("metrics") == "https://collector.example:4318/otlp/v1/metrics"
    assert otel.headers == {"x-api-key": "s3cr3t-value", "authorization": "Bearer tok-77"}
    assert otel.effective_service_name == "chat-sidecar"
    assert otel.resource_attributes == {"deployment.environment": "prod", "team": "llm"}
    shown = str(redacted(settings))
    assert "s3cr3t-value" not in shown and "tok-77" not in shown
    assert redacted(settings)["otel"]["headers"] == {"x-api-key": "***", "authorization": "***"}


def test_enabling_rules() -> None:
    """No endpoint: off; an endpoint: on; enabled: false wins; PULSE_OTEL__* beats OTEL_*; empty is unset."""
    assert load_settings(environ={}).otel.enabled is False
    assert load_settings(environ={"OTEL_EXPORTER_OTLP_ENDPOINT": ""}).otel.enabled is False
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://a.example:4318", "PULSE_OTEL__ENABLED": "false"}
    assert load_settings(environ=env).otel.enabled is False
    env = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": "http://a.example:4318",
        "PULSE_OTEL__ENDPOINT": "http://b.example:4318",
    }
    assert load_settings(environ=env).otel.endpoint == "http://b.example:4318"
    on = load_settings(environ={"PULSE_OTEL__ENABLED": "true"}).otel
    assert on.enabled is True and on.endpoint == "http://localhost:4318"
    assert on.effective_service_name == "llm-pulse"
    with pytest.raises(ConfigError, match=r"otel\.endpoint"):
        load_settings(environ={"OTEL_EXPORTER_OTLP_ENDPOINT": "collector:4318"})


def test_missing_extra_fails_at_startup(monkeypatch: pytest.MonkeyPatch) -> None:
    """Export switched on without the otel extra stops start-up with the install command."""
    for name in [n for n in sys.modules if n.startswith("opentelemetry.exporter.otlp.proto.http")]:
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.setitem(sys.modules, "opentelemetry.exporter.otlp.proto.http", None)
    with pytest.raises(ConfigError, match=r"llm-pulse\[otel\]"):
        load_settings(environ={"OTEL_EXPORTER_OTLP_ENDPOINT": "http://a.example:4318"})
    assert load_settings(environ={}).otel.enabled is False  # off: nothing is needed
    settings = OtelSettings.model_construct(enabled=True)
    with pytest.raises(ConfigError, match=r"llm-pulse\[otel\]"):
        OtelSink(settings, upstream_url="http://127.0.0.1:1/v1")


# -- end to end through the proxy -------------------------------------------------------


def drive(proxy: RunningProxy) -> dict[str, Any]:
    """Chat, streamed chat with usage, embeddings, an upstream 500 and a model list."""
    client = openai.OpenAI(base_url=proxy.base_url, api_key=API_KEY, max_retries=0)
    messages: Any = [{"role": "user", "content": PROMPT}]
    usage: dict[str, Any] = {}
    reply = client.chat.completions.create(model="gpt-4o-mini", messages=messages)
    usage["chat"] = reply.usage
    chunks = list(
        client.chat.completions.create(
            model="gpt-4o", messages=messages, stream=True, stream_options={"include_usage": True}
        )
    )
    usage["stream"] = chunks[-1].usage
    usage["embeddings"] = client.embeddings.create(
        model="text-embedding-3-small", input=PROMPT
    ).usage
    with pytest.raises(openai.InternalServerError):
        client.chat.completions.create(
            model="gpt-4o-mini", messages=messages, extra_headers={"X-Mock-Status": "500"}
        )
    client.models.list()
    return usage


def test_one_span_per_request_and_genai_metrics(
    receiver: tuple[OtlpReceiver, str], mock_url: str
) -> None:
    """Each GenAI request becomes one CLIENT span matching its llm.request event, plus the GenAI histograms."""
    rx, url = receiver
    config = otel_config(url, export_interval_s=0.2, span_delay_s=0.05)
    with start_proxy(mock_url + "/v1", config) as proxy:
        usage = drive(proxy)
        exchanges = proxy.wait_for(5)
        wait_until(lambda: len(rx.spans()) >= 4)
        wait_until(lambda: sum(p.count for p in rx.points("gen_ai.client.operation.duration")) == 4)

    genai = [ex for ex in exchanges if ex.endpoint != "models"]
    by_id = {ex.request_id: ex for ex in genai}
    spans = rx.spans()
    assert len(spans) == 4  # one per GenAI request; GET /models is not a GenAI operation
    mock_port = int(mock_url.rsplit(":", 1)[1])
    for resource, span in spans:
        assert resource["service.name"] == "pulse-test"
        assert resource["service.version"] == pulse_proxy.__version__
        a = attrs(span.attributes)
        ex = by_id.pop(a["pulse.request_id"])
        operation = "embeddings" if ex.endpoint == "embeddings" else "chat"
        assert span.name == f"{operation} {ex.model}"
        assert span.kind == Span.SPAN_KIND_CLIENT
        assert a["gen_ai.operation.name"] == operation
        assert a["gen_ai.provider.name"] == "openai"
        assert a["gen_ai.request.model"] == ex.model
        assert a.get("gen_ai.response.model") == ex.response_model
        assert a["server.address"] == "127.0.0.1" and a["server.port"] == mock_port
        assert a["http.response.status_code"] == ex.status_code
        assert a["pulse.outcome"] == ex.outcome and a["pulse.stream"] == ex.stream
        assert (span.end_time_unix_nano - span.start_time_unix_nano) / 1e6 == pytest.approx(
            ex.latency_ms, abs=1e-3
        )
        assert span.end_time_unix_nano == pytest.approx(ex.ended_at * 1e9, abs=1e3)
        if ex.outcome == "success":
            assert ex.token_source == "upstream"
            assert a["gen_ai.usage.input_tokens"] == ex.prompt_tokens
            assert a.get("gen_ai.usage.output_tokens") == ex.completion_tokens
            assert span.status.code != Status.STATUS_CODE_ERROR
            assert "error.type" not in a
        else:
            assert ex.status_code == 500
            assert a["error.type"] == ex.error_type
            assert span.status.code == Status.STATUS_CODE_ERROR
        if ex.stream:
            assert a["gen_ai.request.stream"] is True
            assert a["gen_ai.response.time_to_first_chunk"] == pytest.approx(ex.ttft_ms / 1000)
            assert a["gen_ai.usage.input_tokens"] == usage["stream"].prompt_tokens
            assert a["gen_ai.usage.output_tokens"] == usage["stream"].completion_tokens
        elif ex.endpoint == "embeddings":
            assert a["gen_ai.usage.input_tokens"] == usage["embeddings"].prompt_tokens
        elif ex.outcome == "success":
            assert a["gen_ai.usage.input_tokens"] == usage["chat"].prompt_tokens
            assert a["gen_ai.usage.output_tokens"] == usage["chat"].completion_tokens
    assert by_id == {}

    duration = rx.points("gen_ai.client.operation.duration")
    assert all(list(p.explicit_bounds) == DURATION_BOUNDS for p in duration)
    assert (
        count(duration, **{"gen_ai.operation.name": "chat", "gen_ai.request.model": "gpt-4o-mini"})
        == 2
    )
    assert (
        count(duration, **{"gen_ai.operation.name": "chat", "gen_ai.request.model": "gpt-4o"}) == 1
    )
    assert count(duration, **{"gen_ai.operation.name": "embeddings"}) == 1
    failed = [p for p in duration if "error.type" in attrs(p.attributes)]
    assert len(failed) == 1 and failed[0].count == 1
    assert total(duration) == pytest.approx(sum(ex.latency_ms for ex in genai) / 1000, rel=1e-6)
    for p in duration:
        assert attrs(p.attributes)["gen_ai.provider.name"] == "openai"
        assert attrs(p.attributes)["server.address"] == "127.0.0.1"

    tokens = rx.points("gen_ai.client.token.usage")
    assert all(list(p.explicit_bounds) == TOKEN_BOUNDS for p in tokens)
    ok = [ex for ex in genai if ex.outcome == "success"]
    assert total(tokens, **{"gen_ai.token.type": "input"}) == sum(
        ex.prompt_tokens or 0 for ex in ok
    )
    assert total(tokens, **{"gen_ai.token.type": "output"}) == sum(
        ex.completion_tokens or 0 for ex in ok
    )
    assert count(tokens, **{"gen_ai.token.type": "input"}) == 3

    ttfc = rx.points("gen_ai.client.operation.time_to_first_chunk")
    assert sum(p.count for p in ttfc) == 1 and list(ttfc[0].explicit_bounds) == DURATION_BOUNDS
    assert rx.metric_units()["gen_ai.client.operation.duration"] == "s"
    assert rx.metric_units()["gen_ai.client.token.usage"] == "{token}"

    everything = b"".join(rx.bodies)
    assert API_KEY.encode() not in everything
    assert API_KEY[8:20].encode() not in everything
    assert b"violet lighthouse" not in everything
    assert all(h.get("content-encoding") == "gzip" for h in rx.headers)


@pytest.mark.parametrize("count_local_tokens", [False, True])
def test_token_usage_only_from_upstream_unless_opted_in(
    receiver: tuple[OtlpReceiver, str], mock_url: str, count_local_tokens: bool
) -> None:
    """A response without usage exports no token counts, unless local counting is opted in."""
    rx, url = receiver
    config = otel_config(
        url, export_interval_s=0.2, span_delay_s=0.05, count_local_tokens=count_local_tokens
    )
    with start_proxy(mock_url + "/v1", config) as proxy:
        client = openai.OpenAI(base_url=proxy.base_url, api_key=API_KEY, max_retries=0)
        client.chat.completions.create(
            model="gpt-4o-mini",
            messages=[{"role": "user", "content": PROMPT}],
            extra_headers={"X-Mock-Usage": "omit"},
        )
        (ex,) = proxy.wait_for(1)
        wait_until(lambda: len(rx.spans()) == 1)
        wait_until(lambda: sum(p.count for p in rx.points("gen_ai.client.operation.duration")) == 1)

    assert ex.token_source == "tiktoken" and ex.prompt_tokens
    a = attrs(rx.spans()[0][1].attributes)
    assert a["pulse.token_source"] == "tiktoken"
    tokens = rx.points("gen_ai.client.token.usage")
    if count_local_tokens:
        assert a["gen_ai.usage.input_tokens"] == ex.prompt_tokens
        assert total(tokens, **{"gen_ai.token.type": "input"}) == ex.prompt_tokens
    else:
        assert "gen_ai.usage.input_tokens" not in a and "gen_ai.usage.output_tokens" not in a
        assert tokens == []


def test_shutdown_flushes_pending_spans_and_metrics(
    receiver: tuple[OtlpReceiver, str], mock_url: str
) -> None:
    """Stopping the proxy sends what is pending long before the export interval, with the configured headers."""
    rx, url = receiver
    config = otel_config(
        url,
        export_interval_s=3600,
        span_delay_s=3600,
        headers={"authorization": "Bearer collector-tok"},
    )
    with start_proxy(mock_url + "/v1", config) as proxy:
        client = openai.OpenAI(base_url=proxy.base_url, api_key=API_KEY, max_retries=0)
        client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": PROMPT}]
        )
        proxy.wait_for(1)
        assert rx.spans() == [] and rx.metrics == []  # an hour-long interval: nothing sent yet
    # Leaving start_proxy ran the lifespan's shutdown, which flushed synchronously.
    assert len(rx.spans()) == 1
    assert sum(p.count for p in rx.points("gen_ai.client.operation.duration")) == 1
    assert rx.headers and all(h["authorization"] == "Bearer collector-tok" for h in rx.headers)


# -- the sink alone ---------------------------------------------------------------------


def test_sink_bounds_metric_models_and_skips_non_genai(receiver: tuple[OtlpReceiver, str]) -> None:
    """Model attributes fold into "other" past the bound on metrics (spans keep the name); other paths export nothing."""
    rx, url = receiver

    async def main() -> OtelSink:
        sink = OtelSink(
            OtelSettings(endpoint=url), upstream_url="https://api.openai.com/v1", max_label_values=1
        )
        sink.on_exchange(make_exchange())  # before start: dropped, counted
        sink.start()
        sink.on_exchange(make_exchange(model="gpt-4o"))
        sink.on_exchange(make_exchange(model="junk-" + "x" * 500, response_model=None))
        sink.on_exchange(make_exchange(method="GET", path="/v1/models", endpoint="models"))
        sink.on_exchange(make_exchange(path="/v1/responses/resp_1/cancel", endpoint="responses"))
        sink.on_exchange(
            make_exchange(
                path="/v1/responses",
                endpoint="responses",
                outcome="timeout",
                error_type="upstream_timeout",
            )
        )
        await sink.aclose()
        sink.on_exchange(make_exchange())  # after close: dropped, counted
        return sink

    sink = asyncio.run(main())
    assert sink.dropped == 2
    spans = [span for _, span in rx.spans()]
    assert [s.name for s in spans] == [
        "chat gpt-4o",
        "chat " + ("junk-" + "x" * 500)[:256],
        "chat gpt-4o",
    ]
    responses = attrs(spans[2].attributes)
    assert (
        responses["openai.api.type"] == "responses"
        and responses["error.type"] == "upstream_timeout"
    )
    assert responses["server.address"] == "api.openai.com" and responses["server.port"] == 443
    assert spans[2].status.code == Status.STATUS_CODE_ERROR
    models = {
        attrs(p.attributes).get("gen_ai.request.model")
        for p in rx.points("gen_ai.client.operation.duration")
    }
    assert models == {"gpt-4o", "other"}


def test_disabled_by_default_builds_no_sink() -> None:
    """Without an endpoint or otel.enabled the app has no OpenTelemetry sink and imports nothing for it."""
    from pulse_proxy.app import create_app

    app = create_app(
        load_settings(environ={"PULSE_UPSTREAM_URL": "http://127.0.0.1:1/v1"}), log_stream=_Null()
    )
    assert app.otel is None


class _Null:
    def write(self, data: bytes) -> int:
        return len(data)

    def flush(self) -> None:
        return None
