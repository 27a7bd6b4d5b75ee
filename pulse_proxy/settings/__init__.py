"""One typed, validated configuration object, built once at start-up.

Precedence, lowest first: built-in defaults, the YAML file (``PULSE_CONFIG`` or
``--config``), ``PULSE_*`` environment variables, command-line flags.  Each layer is a
pydantic-settings source (:mod:`pulse_proxy.settings.sources`) and pydantic-settings
merges them, section by section.  Nothing else in the package reads the environment:
:func:`load_settings` takes it as an argument, so tests build settings from plain dicts.

The section schemas live beside this module, not in the features that use them, so
that reading the configuration imports no sink, exporter or proxy code.  Every model
forbids unknown keys, so a typo (``uptream:``) fails start-up with the key's dotted
path instead of being silently ignored.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import ValidationError, model_validator
from pydantic_settings import (
    BaseSettings,
    InitSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from pulse_proxy.proxy.urls import display_url
from pulse_proxy.settings.alerts import AlertSettings
from pulse_proxy.settings.limits import LimitRule, LimitsSettings
from pulse_proxy.settings.sections import (
    AccountingSettings,
    BreakerSettings,
    DashboardSettings,
    FallbackSettings,
    MetricsSettings,
    PricingSettings,
    RetrySettings,
    RiskSettings,
    ServerSettings,
    UpstreamSettings,
)
from pulse_proxy.settings.sinks import (
    OtelSettings,
    StatsdSettings,
    WebhookSettings,
    unknown_webhooks,
)
from pulse_proxy.settings.sources import ConfigError, EnvironmentSource, read_config_file


class Settings(BaseSettings):
    model_config = SettingsConfigDict(frozen=True, extra="forbid")

    server: ServerSettings = ServerSettings()
    upstream: UpstreamSettings = UpstreamSettings()
    accounting: AccountingSettings = AccountingSettings()
    metrics: MetricsSettings = MetricsSettings()
    risk: RiskSettings = RiskSettings()
    dashboard: DashboardSettings = DashboardSettings()
    pricing: PricingSettings = PricingSettings()
    alerts: AlertSettings = AlertSettings()
    webhooks: WebhookSettings = WebhookSettings()
    statsd: StatsdSettings = StatsdSettings()
    otel: OtelSettings = OtelSettings()
    limits: LimitsSettings = LimitsSettings()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """``Settings(...)`` takes its keyword arguments and nothing else: the process
        environment, a ``.env`` file or a secrets directory never leak in unasked.  The
        file and the variables arrive through :func:`load_settings`."""
        return (init_settings,)

    @model_validator(mode="after")
    def _rules_name_known_webhooks(self) -> Settings:
        unknown = unknown_webhooks(
            {r.name: r.webhooks for r in self.alerts.rules}, self.webhooks.targets
        )
        if unknown:
            raise ValueError(f"alerts.rules name unknown webhooks: {unknown}")
        alerts = self.limits.unknown_alerts({rule.name for rule in self.alerts.rules})
        if alerts:
            named = ", ".join(f"{key}: {name!r}" for key, name in alerts.items())
            raise ValueError(f"when_alert names no alert rule ({named})")
        return self


def format_validation_error(
    exc: ValidationError, sources: Mapping[tuple[str, ...], str] | None = None
) -> str:
    lines = []
    for error in exc.errors():
        path = tuple(str(part) for part in error["loc"])
        key = ".".join(path) or "(top level)"
        variable = _source_of(path, sources or {})
        if variable:
            key = f"{key} (from {variable})"
        lines.append(f"{key}: {error['msg']}")
    return "invalid configuration: " + "; ".join(lines)


def _source_of(path: tuple[str, ...], sources: Mapping[tuple[str, ...], str]) -> str | None:
    """The variable that set ``path`` or the section holding it, if one did."""
    for end in range(len(path), 0, -1):
        if path[:end] in sources:
            return sources[path[:end]]
    return None


def _from_sources(
    layers: Sequence[PydanticBaseSettingsSource], sources: Mapping[tuple[str, ...], str] | None
) -> Settings:
    """Validate ``layers`` (lowest precedence first) merged by pydantic-settings."""
    try:
        # BaseSettings takes ``_build_sources`` (highest precedence first) besides the
        # fields; the pydantic mypy plugin knows it.
        return Settings(_build_sources=(tuple(reversed(layers)), {}))
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, sources)) from exc


def build_settings(
    *layers: Mapping[str, Any], sources: Mapping[tuple[str, ...], str] | None = None
) -> Settings:
    """Settings from config trees, later ones winning key by key."""
    return _from_sources([InitSettingsSource(Settings, dict(layer)) for layer in layers], sources)


def load_settings(
    path: str | os.PathLike[str] | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Settings:
    """Defaults ← YAML file ← ``PULSE_*`` variables ← ``overrides`` (command-line flags)."""
    environ = os.environ if environ is None else environ
    path = path or environ.get("PULSE_CONFIG") or None
    file = InitSettingsSource(Settings, read_config_file(path) if path else {})
    variables = EnvironmentSource(Settings, environ)
    flags = InitSettingsSource(Settings, dict(overrides or {}))
    return _from_sources([file, variables, flags], variables.origins)


def redacted(settings: Settings) -> dict[str, Any]:
    """The effective config for display: secrets replaced, never printed."""
    data = settings.model_dump(mode="json")
    data["upstream"]["url"] = display_url(data["upstream"]["url"])
    for fallback in data["upstream"]["fallbacks"]:
        fallback["url"] = display_url(fallback["url"])
        if fallback.get("api_key"):
            fallback["api_key"] = "***"
    data["webhooks"] = settings.webhooks.redacted()
    data["otel"] = settings.otel.redacted()
    data["otel"]["endpoint"] = display_url(data["otel"]["endpoint"])
    if data["limits"]["redis_url"]:
        data["limits"]["redis_url"] = display_url(data["limits"]["redis_url"])
    for section, key in (
        ("server", "admin_token"),
        ("upstream", "api_key"),
        ("accounting", "key_hash_salt"),
    ):
        if data[section].get(key):
            data[section][key] = "***"
    return data


__all__ = [
    "AccountingSettings",
    "AlertSettings",
    "BreakerSettings",
    "ConfigError",
    "DashboardSettings",
    "FallbackSettings",
    "LimitRule",
    "LimitsSettings",
    "MetricsSettings",
    "OtelSettings",
    "PricingSettings",
    "RetrySettings",
    "RiskSettings",
    "ServerSettings",
    "Settings",
    "StatsdSettings",
    "UpstreamSettings",
    "WebhookSettings",
    "build_settings",
    "display_url",
    "format_validation_error",
    "load_settings",
    "read_config_file",
    "redacted",
]
