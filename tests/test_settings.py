"""Configuration is built once, from defaults, YAML, PULSE_* variables and flags."""

from __future__ import annotations

from pathlib import Path

import pytest

from pulse_proxy.settings import ConfigError, load_settings, redacted


def test_defaults_match_spec() -> None:
    """With nothing set, SPEC's defaults apply."""
    settings = load_settings(environ={})
    assert settings.server.host == "127.0.0.1"
    assert settings.server.port == 8080
    assert settings.upstream.url == "mock"
    assert settings.server.log_format == "json"
    assert settings.upstream.inject_stream_usage is True


def test_precedence_file_then_env_then_flags(tmp_path: Path) -> None:
    """Variables override the file and flags override variables."""
    config = tmp_path / "pulse.yaml"
    config.write_text(
        "server:\n  port: 9000\n  host: 0.0.0.0\nupstream:\n  url: http://a.example/v1\n"
    )
    env = {"PULSE_CONFIG": str(config), "PULSE_PORT": "9100", "PULSE_UPSTREAM__READ_TIMEOUT_S": "5"}
    settings = load_settings(environ=env, overrides={"server": {"host": "127.0.0.2"}})
    assert settings.server.port == 9100
    assert settings.server.host == "127.0.0.2"
    assert settings.upstream.url == "http://a.example/v1"
    assert settings.upstream.read_timeout_s == 5.0


def test_unknown_key_is_named(tmp_path: Path) -> None:
    """A typo fails with the dotted path of the bad key."""
    config = tmp_path / "bad.yaml"
    config.write_text("upstream:\n  url: http://a.example/v1\n  read_timout_s: 3\n")
    with pytest.raises(ConfigError, match=r"upstream\.read_timout_s"):
        load_settings(config, environ={})


def test_bad_value_is_named() -> None:
    """A wrong type or bad URL names the key."""
    with pytest.raises(ConfigError, match=r"server\.port"):
        load_settings(environ={"PULSE_PORT": "eighty"})
    with pytest.raises(ConfigError, match=r"upstream\.url"):
        load_settings(environ={"PULSE_UPSTREAM_URL": "file:///etc/passwd"})


def test_redacted_never_shows_secrets() -> None:
    """The printed effective config hides the API key and admin token."""
    settings = load_settings(
        environ={"PULSE_UPSTREAM_API_KEY": "sk-secret-123", "PULSE_ADMIN_TOKEN": "tok-9"}
    )
    shown = str(redacted(settings))
    assert "sk-secret-123" not in shown and "tok-9" not in shown
    assert settings.upstream.api_key == "sk-secret-123"


def test_display_url_masks_credentials() -> None:
    """Credentials in an upstream URL never reach a printed line."""
    from pulse_proxy.settings import display_url

    assert display_url("https://user:pw@host.example:8443/v1") == "https://***@host.example:8443/v1"
    assert display_url("https://host.example/v1") == "https://host.example/v1"


def test_slow_client_limits_have_defaults_and_refuse_nonsense() -> None:
    """The slow-client limits default to finite values, and a zero timeout or cap is named as an error."""
    server = load_settings(environ={}).server
    assert (server.request_header_timeout_s, server.request_body_timeout_s) == (10.0, 30.0)
    assert (server.request_body_min_rate, server.max_connections) == (500.0, 2048)
    for key in ("REQUEST_HEADER_TIMEOUT_S", "REQUEST_BODY_TIMEOUT_S", "MAX_CONNECTIONS"):
        with pytest.raises(ConfigError, match=f"server.{key.lower()}"):
            load_settings(environ={f"PULSE_SERVER__{key}": "0"})


def test_process_environment_never_leaks_in(monkeypatch: pytest.MonkeyPatch) -> None:
    """Only the mapping handed to load_settings counts: the process environment, read by
    pydantic-settings by default, reaches neither load_settings nor Settings()."""
    from pulse_proxy.settings import Settings

    monkeypatch.setenv("PULSE_SERVER__PORT", "1")
    monkeypatch.setenv("PULSE_PORT", "2")
    monkeypatch.setenv("SERVER", '{"port": 3}')
    assert load_settings(environ={}).server.port == 8080
    assert Settings().server.port == 8080
    assert load_settings(environ={"PULSE_SERVER__PORT": "9"}).server.port == 9


def test_variables_for_unknown_keys_are_named() -> None:
    """A variable naming an unknown section or key fails start-up instead of being ignored,
    and the error names the variable when it set the offending key."""
    with pytest.raises(ConfigError, match=r"^invalid configuration: foo: Extra inputs"):
        load_settings(environ={"PULSE_FOO__BAR": "1"})
    with pytest.raises(
        ConfigError, match=r"risk\.policy\.nope\.\[key\] \(from PULSE_RISK__POLICY__NOPE\)"
    ):
        load_settings(environ={"PULSE_RISK__POLICY__NOPE": "block"})


def test_of_two_variables_for_one_key_the_later_wins() -> None:
    """An alias and its long form both apply, in the order the environment lists them."""
    assert load_settings(environ={"PULSE_PORT": "1", "PULSE_SERVER__PORT": "2"}).server.port == 2
    assert load_settings(environ={"PULSE_SERVER__PORT": "2", "PULSE_PORT": "1"}).server.port == 1
