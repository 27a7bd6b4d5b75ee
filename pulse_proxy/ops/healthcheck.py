"""``python -m pulse_proxy.ops.healthcheck``: exit 0 if this host's proxy answers ``/healthz``.

For the image's ``HEALTHCHECK`` and exec probes: slim images have no curl, and a check
that runs every few seconds must be cheap, so this imports only the standard library
(and PyYAML when a config file names the port), not the proxy's settings model, which
pulls in pydantic and aiohttp and costs about a second of CPU per run.  The port and
address are found as ``serve`` finds them: ``PULSE_PORT`` / ``PULSE_SERVER__PORT``
over ``server.port`` in ``PULSE_CONFIG`` over 8080 (likewise for the host).
"""

from __future__ import annotations

import argparse
import os
import sys
import urllib.request
from collections.abc import Mapping, Sequence
from typing import Any

DEFAULT_PORT = 8080
DEFAULT_HOST = "127.0.0.1"


def _from_file(path: str | None) -> dict[str, Any]:
    if not path:
        return {}
    import yaml

    with open(path, encoding="utf-8") as handle:
        data = yaml.safe_load(handle) or {}
    server = data.get("server") if isinstance(data, dict) else None
    return server if isinstance(server, dict) else {}


def target(
    environ: Mapping[str, str],
    *,
    config: str | None = None,
    host: str | None = None,
    port: int | None = None,
) -> str:
    """The /healthz URL of the proxy configured by ``environ`` (and flags, which win)."""
    server = _from_file(config or environ.get("PULSE_CONFIG"))
    if port is None:
        port = int(
            environ.get("PULSE_PORT")
            or environ.get("PULSE_SERVER__PORT")
            or server.get("port")
            or DEFAULT_PORT
        )
    if host is None:
        host = (
            environ.get("PULSE_HOST")
            or environ.get("PULSE_SERVER__HOST")
            or server.get("host")
            or DEFAULT_HOST
        )
    # A wildcard listen address is reached through loopback; IPv6 literals need brackets.
    host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host)  # noqa: S104 - mapped, not bound
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}/healthz"


def check(url: str, timeout: float = 3.0) -> bool:
    # No proxy from the environment (HTTP_PROXY): this must reach the local process.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, timeout=timeout) as response:
            return bool(response.status == 200)
    except (OSError, ValueError) as exc:  # refused, timed out, or a non-200 (HTTPError)
        print(f"pulse healthcheck: {url}: {exc}", file=sys.stderr)
        return False


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m pulse_proxy.ops.healthcheck", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--host", help="the proxy's listen address (PULSE_HOST)")
    parser.add_argument("--port", type=int, help="the proxy's port (PULSE_PORT)")
    parser.add_argument("--config", help="YAML config file (PULSE_CONFIG)")
    parser.add_argument("--timeout", type=float, default=3.0, help="seconds to wait (default 3)")
    args = parser.parse_args(argv)
    try:
        url = target(os.environ, config=args.config, host=args.host, port=args.port)
    except Exception as exc:  # noqa: BLE001 (an unreadable config: unhealthy, no traceback)
        print(f"pulse healthcheck: cannot read the configuration: {exc}", file=sys.stderr)
        return 1
    return 0 if check(url, args.timeout) else 1


if __name__ == "__main__":
    sys.exit(main())
