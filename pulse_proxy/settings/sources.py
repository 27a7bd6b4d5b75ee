"""Where configuration comes from: the YAML file and the environment, as settings sources.

Both are read from what the caller hands over (a path, a mapping of variables), never
from ``os.environ`` directly, so tests build settings from plain dicts.  The
environment source also remembers which variable set each key: a bad value or a
misspelt key from the environment is then reported by the variable's name, since the
operator never wrote the dotted key anywhere.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml
from pydantic.fields import FieldInfo
from pydantic_settings import PydanticBaseSettingsSource

if TYPE_CHECKING:
    from pydantic_settings import BaseSettings

ENV_PREFIX = "PULSE_"
ENV_NESTED_DELIMITER = "__"

# The documented short names, mapped to their place in the config tree.
ENV_ALIASES: dict[str, tuple[str, ...]] = {
    "PULSE_HOST": ("server", "host"),
    "PULSE_PORT": ("server", "port"),
    "PULSE_LOG_FORMAT": ("server", "log_format"),
    "PULSE_ADMIN_TOKEN": ("server", "admin_token"),
    "PULSE_UPSTREAM_URL": ("upstream", "url"),
    "PULSE_UPSTREAM_API_KEY": ("upstream", "api_key"),
}

# OpenTelemetry's standard variables, read here (not by the SDK) and overridden by any
# PULSE_OTEL__* variable.  An endpoint alone turns export on (see OtelSettings).
OTEL_ENV_ALIASES: dict[str, tuple[str, ...]] = {
    "OTEL_EXPORTER_OTLP_ENDPOINT": ("otel", "endpoint"),
    "OTEL_EXPORTER_OTLP_HEADERS": ("otel", "headers"),
    "OTEL_SERVICE_NAME": ("otel", "service_name"),
    "OTEL_RESOURCE_ATTRIBUTES": ("otel", "resource_attributes"),
}


class ConfigError(ValueError):
    """A configuration problem, phrased for the operator (names the offending key)."""


def read_config_file(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The file's sections, or a :class:`ConfigError` saying why it cannot be used."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML: {exc}") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of sections")
    return data


class EnvironmentSource(PydanticBaseSettingsSource):
    """``PULSE_<SECTION>__<KEY>`` variables, the short aliases and OpenTelemetry's own.

    pydantic-settings' ``EnvSettingsSource`` reads ``os.environ`` and only the fields
    the model declares, so a variable naming an unknown section would pass silently and
    nothing would say which variable set a bad value.  This source takes the mapping it
    is given, passes every ``PULSE_*__*`` key on (unknown ones then fail validation like
    a typo in the file), and records :attr:`origins`.  Values stay strings: pydantic
    coerces them, and its error names the key.
    """

    def __init__(self, settings_cls: type[BaseSettings], environ: Mapping[str, str]) -> None:
        super().__init__(settings_cls)
        self._tree: dict[str, Any] = {}
        # Which variable set each dotted path.
        self.origins: dict[tuple[str, ...], str] = {}
        for name, path in OTEL_ENV_ALIASES.items():
            if environ.get(name):  # OpenTelemetry treats an empty variable as unset
                self._set(path, environ[name], name)
        # In the mapping's order: of two variables for one key, the later one wins.
        for name, value in environ.items():
            if name in ENV_ALIASES:
                self._set(ENV_ALIASES[name], value, name)
            elif name.startswith(ENV_PREFIX) and ENV_NESTED_DELIMITER in name:
                path = tuple(
                    part.lower() for part in name[len(ENV_PREFIX) :].split(ENV_NESTED_DELIMITER)
                )
                if all(path):
                    self._set(path, value, name)

    def _set(self, path: tuple[str, ...], value: str, name: str) -> None:
        node = self._tree
        for key in path[:-1]:
            child = node.get(key)
            if not isinstance(child, dict):
                child = {}
                node[key] = child
            node = child
        node[path[-1]] = value
        self.origins[path] = name

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return self._tree.get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return self._tree
