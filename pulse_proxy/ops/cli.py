"""``pulse-proxy``: serve (the default), check-config, report, demo, export."""

from __future__ import annotations

import argparse
import gc
import json
import os
import signal
import sys
from collections.abc import Sequence
from typing import Any

from pulse_proxy.proxy.urls import UpstreamBase, display_url, points_at_self
from pulse_proxy.settings import ConfigError, Settings, load_settings, redacted


def _serve_overrides(args: argparse.Namespace) -> dict[str, Any]:
    overrides: dict[str, Any] = {}
    server = {
        k: v
        for k, v in (("host", args.host), ("port", args.port), ("log_format", args.log_format))
        if v is not None
    }
    if server:
        overrides["server"] = server
    if args.upstream is not None:
        overrides["upstream"] = {"url": args.upstream}
    return overrides


def self_loop_problem(settings: Settings) -> str | None:
    """Why the configured upstream cannot be used, if it is this proxy itself.

    Each request forwarded there would come back in and be forwarded again: the Via
    check stops such a loop after one round, but a configuration that can only loop
    is better refused before it serves anything."""
    url = settings.upstream.url
    if url == "mock":
        return None
    server = settings.server
    if not points_at_self(UpstreamBase(url), server.host, server.port):
        return None
    return (
        f"upstream.url {display_url(url)} is this proxy's own listening address "
        f"({server.host}:{server.port}): every request would be forwarded back to the proxy "
        "itself. Set PULSE_UPSTREAM_URL (--upstream) to the provider's base URL, or listen "
        "on another port."
    )


def serve(args: argparse.Namespace) -> int:
    import uvicorn

    from pulse_proxy.app import create_app, uvicorn_options
    from pulse_proxy.ops.bundled_mock import BundledMock

    try:
        settings = load_settings(args.config, overrides=_serve_overrides(args))
    except ConfigError as exc:
        print(f"pulse-proxy: {exc}", file=sys.stderr)
        return 2
    problem = self_loop_problem(settings)
    if problem is not None:
        print(f"pulse-proxy: {problem}", file=sys.stderr)
        return 2
    mock: BundledMock | None = None
    upstream_url = settings.upstream.url
    startup: dict[str, Any] = {"mock": False}
    if upstream_url == "mock" or any(f.url == "mock" for f in settings.upstream.fallbacks):
        mock = BundledMock()
        mock.start()
        message = f"forwarding to the bundled mock upstream at {mock.url}"
        if upstream_url == "mock":
            upstream_url = mock.url
        else:
            (name,) = [f.name for f in settings.upstream.fallbacks if f.url == "mock"]
            message = f"the bundled mock upstream at {mock.url} serves as fallback {name!r}"
        startup = {"mock": True, "message": message}
    # uvicorn re-raises the signal that stopped it, after restoring the handlers it found;
    # with the default handlers that would kill us before the bundled mock is stopped.
    # Until uvicorn installs its own handlers, a stop request is remembered rather than
    # lost: a container stopped during start-up must still exit, not wait for SIGKILL.
    server: uvicorn.Server | None = None
    stop_requested = False

    def request_stop(*_: object) -> None:
        nonlocal stop_requested
        stop_requested = True
        if server is not None:
            server.should_exit = True

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, request_stop)
    # Each request allocates a few hundred short-lived objects; collecting the youngest
    # generation every 700 allocations (the default) costs more than it frees, since
    # request objects are acyclic and die by reference counting.  The process is ours.
    gc.set_threshold(50_000, 20, 100)
    try:
        app = create_app(
            settings, upstream_url=upstream_url, startup_fields=startup, bundled_mock=mock
        )
        config = uvicorn.Config(
            app,
            host=settings.server.host,
            port=settings.server.port,
            log_level="warning",
            **uvicorn_options(settings),
            # On SIGTERM: stop accepting, let in-flight requests (streams included) finish
            # for this long, then cut them.  A float: 0.5 must not become 0, and 0 must
            # not become None, which uvicorn reads as "wait forever".
            timeout_graceful_shutdown=settings.server.shutdown_grace_s,  # type: ignore[arg-type]
        )
        server = uvicorn.Server(config)
        server.should_exit = stop_requested
        server.run()
    finally:
        if mock is not None:
            mock.stop()
    # uvicorn's own exit code for a server that never started (port taken, lifespan failed).
    return 0 if server.started else 3


def check_config(args: argparse.Namespace) -> int:
    # The same layers as ``serve``: a PULSE_* variable that would stop the proxy from
    # starting must fail here too, named as the variable.
    # "-" is standard input, as for ``report``: a config can be checked before it is
    # written anywhere (``kubectl get cm ... | pulse-proxy check-config -``).
    path = "/dev/stdin" if args.file == "-" else args.file
    try:
        settings = load_settings(path)
    except ConfigError as exc:
        print(f"pulse-proxy: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(redacted(settings), indent=2))
    return 0


def report(args: argparse.Namespace) -> int:
    from pulse_proxy.ops.report import run_report

    if args.file in (None, "-"):
        return run_report(sys.stdin, sys.stdout)
    try:
        handle = open(args.file, encoding="utf-8", errors="replace")  # noqa: SIM115 (closed below; only opening is caught)
    except OSError as exc:
        print(f"pulse-proxy: cannot read {args.file}: {exc.strerror}", file=sys.stderr)
        return 2
    with handle:
        return run_report(handle, sys.stdout)


def demo(args: argparse.Namespace) -> int:
    from pulse_proxy.ops.demo import run_demo

    return run_demo(args)


def export(args: argparse.Namespace) -> int:
    from pulse_proxy.ops.fleet import grafana_dashboard, prometheus_rules

    try:
        settings = load_settings(args.config)
    except ConfigError as exc:
        print(f"pulse-proxy: {exc}", file=sys.stderr)
        return 2
    if args.what == "prometheus-rules":
        text = prometheus_rules(settings)
    else:
        text = grafana_dashboard(settings)
    if args.output in (None, "-"):
        sys.stdout.write(text)
    else:
        with open(args.output, "w", encoding="utf-8") as handle:
            handle.write(text)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pulse-proxy",
        description="LLM Pulse: observability sidecar for OpenAI-compatible APIs.",
    )
    sub = parser.add_subparsers(dest="command")

    def serve_flags(p: argparse.ArgumentParser) -> None:
        p.add_argument("--host", help="listen address (PULSE_HOST, default 127.0.0.1)")
        p.add_argument("--port", type=int, help="listen port (PULSE_PORT, default 8080)")
        p.add_argument(
            "--upstream", help="upstream base URL incl. /v1, or 'mock' (PULSE_UPSTREAM_URL)"
        )
        p.add_argument("--config", help="YAML config file (PULSE_CONFIG)")
        p.add_argument(
            "--log-format", choices=("json", "console"), help="PULSE_LOG_FORMAT, default json"
        )

    serve_flags(parser)
    serve_flags(sub.add_parser("serve", help="run the proxy (the default command)"))
    check = sub.add_parser(
        "check-config",
        help="validate a config file and print the effective config",
        description="Validate FILE with the PULSE_* variables applied over it, as serve would, and "
        "print the effective configuration (secrets masked). A bad key or value exits 2, naming the "
        "key and, when it came from the environment, the variable.",
    )
    check.add_argument("file", metavar="FILE", help="a YAML config file, or - for standard input")
    rep = sub.add_parser(
        "report",
        help="summarise llm.request / alert.* JSON lines in the terminal",
        description="Read the proxy's JSON event lines and print latency, tokens, errors and "
        "prompt-size summaries. Lines that are not events are counted and skipped.",
    )
    rep.add_argument(
        "file",
        nargs="?",
        default="-",
        metavar="FILE",
        help="a file of JSON lines, or - for standard input (the default)",
    )
    from pulse_proxy.ops.demo import add_demo_arguments

    add_demo_arguments(
        sub.add_parser("demo", help="send a realistic traffic mix through a running proxy")
    )
    exp = sub.add_parser(
        "export", help="write fleet monitoring files built from the configured rules"
    )
    exp.add_argument("what", choices=("prometheus-rules", "grafana-dashboard"))
    exp.add_argument("--config", help="YAML config file whose alert rules to export (PULSE_CONFIG)")
    exp.add_argument("-o", "--output", help="file to write (default: stdout)")
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    handlers = {
        None: serve,
        "serve": serve,
        "check-config": check_config,
        "report": report,
        "demo": demo,
        "export": export,
    }
    try:
        code = handlers[args.command](args)
        sys.stdout.flush()
    except BrokenPipeError:
        # The reader went away (``| head``): not an error of ours.  Point stdout at
        # /dev/null so the interpreter's own flush at exit does not fail again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        code = 0
    sys.exit(code)
