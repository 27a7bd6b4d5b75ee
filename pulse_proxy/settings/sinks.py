"""The sink sections: ``webhooks:``, ``statsd:`` and ``otel:``.

Only the schemas live here; the sinks that use them are in :mod:`pulse_proxy.sinks`,
so reading the configuration never imports an exporter or opens a socket.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterable, Mapping
from typing import Any, Literal
from urllib.parse import unquote, urlsplit

from pydantic import Field, field_validator, model_validator

from pulse_proxy.proxy.urls import http_base_url
from pulse_proxy.settings.alerts import Severity
from pulse_proxy.settings.sections import Section, require_unique

DEFAULT_MAX_DATAGRAM = 1432
DEFAULT_ENDPOINT = "http://localhost:4318"
INSTALL_HINT = "pip install 'llm-pulse[otel]'"
_REQUIRED_MODULES = ("opentelemetry.sdk", "opentelemetry.exporter.otlp.proto.http")


class WebhookTarget(Section):
    """One receiver.

    Example (YAML)::

        webhooks:
          targets:
            - name: oncall
              url: https://hooks.slack.com/services/T000/B000/XXXX
              format: slack
              min_severity: critical
            - name: audit
              url: http://alerts.internal:9000/pulse
              headers: {Authorization: "Bearer s3cret"}
              alerts: [error_rate, high_latency]
    """

    name: str = Field(pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$")
    url: str
    format: Literal["json", "slack"] = "json"
    headers: dict[str, str] = Field(default_factory=dict)
    # Only these rules (None: every rule routed here).
    alerts: list[str] | None = None
    min_severity: Severity = "info"
    send_resolved: bool = True

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("must be an http(s) URL")
        return value

    @field_validator("headers")
    @classmethod
    def _no_header_injection(cls, headers: dict[str, str]) -> dict[str, str]:
        for key, value in headers.items():
            if any(c in key + value for c in "\r\n\x00"):
                raise ValueError(f"header {key!r} contains a line break")
        return headers


class WebhookSettings(Section):
    """The ``webhooks:`` config section: receivers and delivery behaviour."""

    targets: list[WebhookTarget] = Field(default_factory=list)
    queue_size: int = Field(1000, ge=1, le=100_000)
    timeout_s: float = Field(5.0, gt=0, le=120)
    retries: int = Field(3, ge=0, le=20)
    backoff_s: float = Field(0.5, ge=0, le=60)
    max_backoff_s: float = Field(30.0, ge=0, le=600)

    @field_validator("targets")
    @classmethod
    def _unique_names(cls, targets: list[WebhookTarget]) -> list[WebhookTarget]:
        require_unique((target.name for target in targets), "webhook")
        return targets

    def redacted(self) -> dict[str, Any]:
        """For ``check-config`` output: URL paths/queries and header values masked."""
        data = self.model_dump(mode="json")
        for target in data["targets"]:
            parts = urlsplit(target["url"])
            target["url"] = (
                f"{parts.scheme}://{parts.hostname}{f':{parts.port}' if parts.port else ''}/***"
            )
            target["headers"] = dict.fromkeys(target["headers"], "***")
        return data


def unknown_webhooks(
    rule_webhooks: Mapping[str, Iterable[str]], targets: Iterable[WebhookTarget]
) -> list[str]:
    """``rule.webhook`` references that name no target (for config validation)."""
    names = {t.name for t in targets}
    return [
        f"{rule}.{hook}"
        for rule, hooks in rule_webhooks.items()
        for hook in hooks
        if hook not in names
    ]


class StatsdSettings(Section):
    """The ``statsd:`` config section (the sink is off unless ``enabled``).

    Example (YAML)::

        statsd:
          enabled: true
          host: 127.0.0.1
          port: 8125
          prefix: myapp
          tags: {env: prod, service: chatbot}
    """

    enabled: bool = False
    host: str = "127.0.0.1"
    port: int = Field(8125, ge=1, le=65535)
    prefix: str = Field("", pattern=r"^[A-Za-z0-9_.]*$")
    tags: dict[str, str] = Field(default_factory=dict)
    max_label_values: int = Field(100, ge=1, le=10_000)
    histogram_type: Literal["h", "d"] = "h"
    max_datagram: int = Field(DEFAULT_MAX_DATAGRAM, ge=512, le=65_000)
    flush_interval_s: float = Field(0.1, gt=0, le=10)
    gauge_interval_s: float = Field(10.0, gt=0)


def parse_key_values(value: Any) -> Any:
    """``"k=v,k2=v2"`` (the ``OTEL_EXPORTER_OTLP_HEADERS`` / ``OTEL_RESOURCE_ATTRIBUTES``
    format, values URL-encoded) as a dict; a mapping passes through unchanged."""
    if not isinstance(value, str):
        return value
    pairs: dict[str, str] = {}
    for item in value.split(","):
        if not item.strip():
            continue
        key, sep, val = item.partition("=")
        if not sep or not key.strip():
            raise ValueError("must be a mapping or 'key=value,key2=value2'")
        pairs[unquote(key.strip())] = unquote(val.strip())
    return pairs


def otel_installed() -> bool:
    """Whether the ``otel`` extra is importable (checked without importing it)."""
    try:
        return all(importlib.util.find_spec(name) is not None for name in _REQUIRED_MODULES)
    except (ImportError, ValueError):
        return False


class OtelSettings(Section):
    """The ``otel:`` config section.

    Export is on when ``enabled`` is true or, with ``enabled`` left unset, when an
    endpoint is configured: setting the standard ``OTEL_EXPORTER_OTLP_ENDPOINT`` is
    enough, as for any OpenTelemetry SDK; ``enabled: false`` ignores it.  Example::

        otel:
          endpoint: http://otel-collector:4318      # OTEL_EXPORTER_OTLP_ENDPOINT (base URL)
          headers: {x-honeycomb-team: "…"}          # OTEL_EXPORTER_OTLP_HEADERS; masked in output
          service_name: chat-sidecar                # OTEL_SERVICE_NAME (default llm-pulse)
          resource_attributes: {deployment.environment: prod}   # OTEL_RESOURCE_ATTRIBUTES
          export_interval_s: 30
    """

    enabled: bool = False
    # Base URL: /v1/traces and /v1/metrics are appended, as the OTLP exporter spec says.
    endpoint: str = DEFAULT_ENDPOINT
    headers: dict[str, str] = Field(default_factory=dict)
    service_name: str | None = None
    resource_attributes: dict[str, str] = Field(default_factory=dict)
    # gen_ai.provider.name: the telemetry flavour of the API spoken (OpenAI-compatible).
    provider_name: str = "openai"
    traces: bool = True
    metrics: bool = True
    # Metrics are sent this often; spans in batches at most span_delay_s apart.
    export_interval_s: float = Field(30.0, gt=0, le=3600)
    span_delay_s: float = Field(5.0, gt=0, le=3600)
    max_queue_size: int = Field(2048, ge=1, le=1_000_000)
    timeout_s: float = Field(10.0, gt=0, le=300)
    compression: Literal["gzip", "none"] = "gzip"
    temporality: Literal["cumulative", "delta"] = "cumulative"
    # Export local tiktoken counts when the upstream sent no usage (the convention's opt-in).
    count_local_tokens: bool = False

    @model_validator(mode="before")
    @classmethod
    def _endpoint_enables(cls, data: Any) -> Any:
        """An endpoint with ``enabled`` unset turns export on."""
        if isinstance(data, Mapping) and data.get("enabled") is None:
            data = {**data, "enabled": bool(data.get("endpoint"))}
        return data

    @field_validator("headers", "resource_attributes", mode="before")
    @classmethod
    def _key_values(cls, value: Any) -> Any:
        return parse_key_values(value)

    @field_validator("endpoint")
    @classmethod
    def _endpoint_is_http(cls, value: str) -> str:
        return http_base_url(value, "an http(s) base URL such as http://otel-collector:4318")

    @model_validator(mode="after")
    def _extra_installed(self) -> OtelSettings:
        if self.enabled and not otel_installed():
            raise ValueError(
                "OpenTelemetry export is on (otel.enabled or OTEL_EXPORTER_OTLP_ENDPOINT) but "
                f"its packages are missing: {INSTALL_HINT}, or set otel.enabled: false"
            )
        return self

    def signal_url(self, signal: Literal["traces", "metrics"]) -> str:
        """``{endpoint}/v1/{signal}``."""
        return f"{self.endpoint}/v1/{signal}"

    @property
    def effective_service_name(self) -> str:
        return self.service_name or self.resource_attributes.get("service.name") or "llm-pulse"

    def redacted(self) -> dict[str, Any]:
        """For ``check-config`` and ``pulse.config``: header values (often API keys) masked."""
        data = self.model_dump(mode="json")
        data["headers"] = dict.fromkeys(data["headers"], "***")
        return data
