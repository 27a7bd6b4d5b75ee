"""upstream.fallbacks, upstream.retry and upstream.breaker: defaults and refusals."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import orjson
import pytest
from conftest import clean_env

from pulse_proxy.settings import ConfigError, build_settings, load_settings, redacted


def test_defaults_keep_one_upstream_and_one_try() -> None:
    """With nothing configured there is no fallback, one attempt, and the default retry conditions."""
    upstream = build_settings().upstream
    assert upstream.fallbacks == ()
    assert upstream.retry.attempts == 1
    assert upstream.retry.on == ("connect_error", "timeout", 429, 500, 502, 503, 504)
    assert upstream.retry.budget_ratio == 0.2


def test_a_fallback_with_a_model_map_and_its_own_key_is_redacted_for_display() -> None:
    """A fallback's api_key never appears in the printed config, and its URL loses user information."""
    settings = build_settings(
        {
            "upstream": {
                "url": "https://api.openai.com/v1",
                "fallbacks": [
                    {
                        "url": "https://user:pw@res.openai.azure.com/openai/v1",
                        "name": "azure",
                        "api_key": "azure-secret",
                        "models": {"gpt-4o-mini": "my-deployment"},
                        "read_timeout_s": 30,
                    }
                ],
            }
        }
    )
    shown = orjson.dumps(redacted(settings))
    assert b"azure-secret" not in shown and b"pw@" not in shown
    (fallback,) = redacted(settings)["upstream"]["fallbacks"]
    assert fallback["api_key"] == "***" and fallback["models"] == {"gpt-4o-mini": "my-deployment"}


@pytest.mark.parametrize(
    ("upstream", "key"),
    [
        ({"fallbacks": [{"url": "ftp://x/v1", "name": "a"}]}, "upstream.fallbacks.0.url"),
        ({"fallbacks": [{"url": "http://x/v1"}]}, "upstream.fallbacks.0.name"),
        (
            {
                "fallbacks": [
                    {"url": "http://x/v1", "name": "b"},
                    {"url": "http://y/v1", "name": "b"},
                ]
            },
            "upstream.fallbacks",
        ),
        ({"name": "a", "fallbacks": [{"url": "http://x/v1", "name": "a"}]}, "upstream.fallbacks"),
        ({"fallbacks": [{"url": "mock", "name": "b"}]}, "upstream.fallbacks"),
        ({"retry": {"attempts": 0}}, "upstream.retry.attempts"),
        ({"retry": {"on": [404]}}, "upstream.retry.on"),
        ({"retry": {"on": ["refused"]}}, "upstream.retry.on"),
        ({"retry": {"backoff_s": 5, "max_backoff_s": 1}}, "upstream.retry"),
        ({"retry": {"budget_ratio": -1}}, "upstream.retry.budget_ratio"),
        ({"breaker": {"error_rate": 1.5}}, "upstream.breaker.error_rate"),
        ({"breaker": {"open_for_s": 60, "max_open_for_s": 10}}, "upstream.breaker"),
        ({"breaker": {"cooldown": 1}}, "upstream.breaker.cooldown"),
    ],
)
def test_bad_values_are_refused_naming_the_key(upstream: dict[str, object], key: str) -> None:
    """Each bad failover setting fails validation with its dotted key."""
    with pytest.raises(ConfigError) as refused:
        build_settings({"upstream": upstream})
    assert f"{key}:" in str(refused.value)


def test_check_config_names_a_bad_fallback_key() -> None:
    """``pulse-proxy check-config`` exits non-zero naming the failover key at fault."""
    config = b"upstream:\n  url: https://api.openai.com/v1\n  retry:\n    attempts: 0\n"
    result = subprocess.run(
        [sys.executable, "-m", "pulse_proxy", "check-config", "-"],
        input=config,
        capture_output=True,
        env=clean_env(),
        check=False,
        timeout=60,
    )
    assert result.returncode == 2
    assert b"upstream.retry.attempts" in result.stderr


def test_the_example_config_reads_retry_on_from_yaml(tmp_path: Path) -> None:
    """An unquoted ``on:`` (YAML's boolean true) is still the retry conditions' key."""
    config = tmp_path / "pulse.yaml"
    config.write_text("upstream:\n  retry:\n    attempts: 3\n    on: [timeout, 503]\n")
    retry = load_settings(config, environ={}).upstream.retry
    assert retry.attempts == 3 and retry.on == ("timeout", 503)
    example = Path(__file__).parent.parent / "config" / "pulse.example.yaml"
    assert load_settings(example, environ={}).upstream.retry.attempts == 3
