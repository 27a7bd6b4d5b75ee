"""Bad limits are refused by check-config and at start-up, naming the key."""

from __future__ import annotations

from pathlib import Path

import orjson
from test_cli import _cli

BAD_DIMENSION = b"limits:\n  rules:\n    - {name: r, by: ip, requests_per_min: 5}\n"
BAD_ALERT = b"limits:\n  rules:\n    - {name: r, concurrent: 2, when_alert: no_such_alert}\n"


def test_check_config_names_the_limits_key() -> None:
    """An unknown dimension and a when_alert naming no alert rule exit non-zero, each
    naming its key."""
    bad = _cli("check-config", "-", stdin=BAD_DIMENSION)
    assert bad.returncode == 2 and b"limits.rules.0.by" in bad.stderr
    bad = _cli("check-config", "-", stdin=BAD_ALERT)
    assert bad.returncode == 2 and b"limits.rules.0.when_alert" in bad.stderr
    assert b"Traceback" not in bad.stderr


def test_check_config_masks_the_redis_password() -> None:
    """A good limits section is printed, the Redis URL's password masked."""
    ok = _cli(
        "check-config",
        "-",
        stdin=b"limits:\n  backend: redis\n  redis_url: redis://:hunter2@127.0.0.1:6379/0\n"
        b"  rules:\n    - {name: r, requests_per_min: 5}\n",
    )
    assert ok.returncode == 0, ok.stderr
    limits = orjson.loads(ok.stdout)["limits"]
    assert limits["redis_url"] == "redis://***@127.0.0.1:6379/0"
    assert b"hunter2" not in ok.stdout


def test_serve_refuses_bad_limits_at_start_up(tmp_path: Path) -> None:
    """serve with the same bad config does not start, and names the key."""
    config = tmp_path / "pulse.yaml"
    config.write_bytes(BAD_ALERT)
    refused = _cli("serve", "--config", str(config), "--port", "0")
    assert refused.returncode != 0
    assert b"limits.rules.0.when_alert" in refused.stderr
