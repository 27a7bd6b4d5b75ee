"""``pulse-proxy demo``: a realistic traffic mix through a running proxy (to be built)."""

from __future__ import annotations

import argparse


def add_demo_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--proxy", default="http://127.0.0.1:8080", help="the running proxy's base URL")


def run_demo(args: argparse.Namespace) -> int:
    raise SystemExit("pulse-proxy demo: not built yet")
