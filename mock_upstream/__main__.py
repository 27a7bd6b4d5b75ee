"""``pulse-mock`` / ``python -m mock_upstream``: the mock upstream on its own."""

from __future__ import annotations

import argparse
import importlib.util

import uvicorn

from mock_upstream.app import create_app


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="pulse-mock",
        description="The bundled OpenAI-compatible mock upstream, steered by X-Mock-* request headers.",
    )
    parser.add_argument(
        "--host", default="127.0.0.1", help="interface to listen on (default: %(default)s)"
    )
    parser.add_argument(
        "--port", type=int, default=8081, help="port to listen on (default: %(default)s)"
    )
    parser.add_argument(
        "--log-level",
        default="info",
        choices=("critical", "error", "warning", "info", "debug"),
        help="uvicorn's log level (default: %(default)s)",
    )
    args = parser.parse_args(argv)
    # uvloop is not available on Windows; everywhere else it is a dependency.
    loop = "uvloop" if importlib.util.find_spec("uvloop") else "auto"
    uvicorn.run(
        create_app(),
        host=args.host,
        port=args.port,
        loop=loop,
        http="httptools",
        access_log=False,
        log_level=args.log_level,
    )


if __name__ == "__main__":
    main()
