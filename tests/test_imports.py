"""The package's import structure: the hot path loads no sink, no modules import each
other in a circle, and importing the app changes no process-wide logging."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import pulse_proxy

# The hot path's module; the one place to change if it moves.
FORWARD_MODULE = "pulse_proxy.proxy.forward"

# Whole families of modules the hot path must not drag in.
FORBIDDEN_WITH_FORWARD = ("pulse_proxy.sinks", "opentelemetry", "prometheus_client")


def _modules(root: Path, package: str) -> dict[str, Path]:
    """Every module of the package under ``root``, by dotted name (packages by their __init__)."""
    found = {}
    for path in sorted(root.rglob("*.py")):
        parts = [package, *path.relative_to(root).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _import_time(body: list[ast.stmt]) -> Iterator[ast.Import | ast.ImportFrom]:
    """Import statements that run when the module is imported: not those inside
    functions, nor those under ``if TYPE_CHECKING:``."""
    for node in body:
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node
        elif isinstance(node, ast.If):
            if not _is_type_checking(node.test):
                yield from _import_time(node.body)
            yield from _import_time(node.orelse)
        elif isinstance(node, ast.Try):
            for block in (node.body, node.orelse, node.finalbody, *(h.body for h in node.handlers)):
                yield from _import_time(block)
        elif isinstance(node, ast.With | ast.ClassDef):
            yield from _import_time(node.body)


def _ancestors(name: str) -> list[str]:
    parts = name.split(".")
    return [".".join(parts[:end]) for end in range(1, len(parts))]


def _every_import(body: list[ast.stmt]) -> Iterator[ast.Import | ast.ImportFrom]:
    """Every import statement, deferred ones (in functions, under TYPE_CHECKING) included."""
    for statement in body:
        for node in ast.walk(statement):
            if isinstance(node, ast.Import | ast.ImportFrom):
                yield node


def import_graph(modules: dict[str, Path], *, deferred: bool = False) -> dict[str, set[str]]:
    """Which of ``modules`` each one imports while it is being imported (with
    ``deferred``: at any time, through imports in functions or for type checkers too).

    Importing ``a.b.c`` first runs ``a/__init__`` and ``a/b/__init__``, so those count
    too, except the importer's own ancestors: they are already running when it loads,
    and only a name taken from one of them (not a submodule) depends on it.
    """
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        own = set(_ancestors(name))

        def loads(target: str, own: set[str] = own) -> list[str]:
            return [m for m in [*_ancestors(target), target] if m not in own]

        statements = (_every_import if deferred else _import_time)(
            ast.parse(path.read_text(encoding="utf-8")).body
        )
        for node in statements:
            needed: list[str] = []
            if isinstance(node, ast.Import):
                for alias in node.names:
                    needed += loads(alias.name)
            else:
                base = node.module or ""
                if node.level:
                    anchor = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
                    base = ".".join(
                        [*anchor[: len(anchor) - node.level + 1], *([base] if base else [])]
                    )
                for alias in node.names:
                    submodule = f"{base}.{alias.name}"
                    needed += loads(submodule) if submodule in modules else [*loads(base), base]
            graph[name].update(m for m in needed if m in modules and m != name)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for successor in sorted(graph[node]):
            if successor not in index:
                visit(successor)
                low[node] = min(low[node], low[successor])
            elif successor in on_stack:
                low[node] = min(low[node], index[successor])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_forward_imports_no_sink_and_no_exporter() -> None:
    """Importing the hot path alone loads no sink, no OpenTelemetry and no Prometheus client."""
    probe = (
        "import importlib, json, sys\n"
        f"importlib.import_module({FORWARD_MODULE!r})\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    )
    loaded = json.loads(result.stdout)
    assert FORWARD_MODULE in loaded
    unwanted = [
        m for m in loaded if any(m == f or m.startswith(f + ".") for f in FORBIDDEN_WITH_FORWARD)
    ]
    assert unwanted == []


@pytest.mark.parametrize("deferred", [False, True], ids=["load-time", "deferred-too"])
def test_package_has_no_import_cycles(deferred: bool) -> None:
    """No pulse_proxy modules import each other in a circle when they load, nor
    through an import deferred into a function or kept for type checkers only."""
    root = Path(pulse_proxy.__file__).parent
    graph = import_graph(_modules(root, "pulse_proxy"), deferred=deferred)
    assert (
        graph["pulse_proxy.proxy.forward"] and graph["pulse_proxy.settings"]
    )  # the walk saw imports
    assert cycles(graph) == []


def test_cycle_finder_tells_load_time_from_deferred_imports(tmp_path: Path) -> None:
    """The finder reports a cycle through a relative import or a package's own
    __init__; one closed only inside a function or under TYPE_CHECKING counts only
    when deferred imports are asked for."""
    files = {
        "__init__.py": "",
        "a.py": "from pkg import b\n",
        "b.py": "from . import a\n",
        "c.py": "def later():\n    from pkg import d\n",
        "d.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg import c\nimport pkg.c\n",
        "sub/__init__.py": "from pkg.sub.leaf import VALUE\n",
        "sub/leaf.py": "from pkg.sub import OTHER\nVALUE = 1\n",
    }
    for relative, text in files.items():
        (tmp_path / relative).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / relative).write_text(text)
    modules = _modules(tmp_path, "pkg")
    assert cycles(import_graph(modules)) == [["pkg.a", "pkg.b"], ["pkg.sub", "pkg.sub.leaf"]]
    assert cycles(import_graph(modules, deferred=True)) == [
        ["pkg.a", "pkg.b"], ["pkg.c", "pkg.d"], ["pkg.sub", "pkg.sub.leaf"],
    ]  # fmt: skip


def test_importing_the_app_leaves_uvicorns_log_alone_creating_one_filters_it() -> None:
    """Importing the app adds no filter to uvicorn's error log (a process-wide change);
    creating an app adds the aborted-stream filter, and creating a second adds no other."""
    probe = (
        "import io, json, logging\n"
        "from pulse_proxy.app import create_app\n"
        "from pulse_proxy.settings import build_settings\n"
        "from pulse_proxy.uvicorn_log import LOGGER, DropStreamAborted\n"
        "def installed():\n"
        "    return sum(isinstance(f, DropStreamAborted) for f in logging.getLogger(LOGGER).filters)\n"
        "counts = [installed()]\n"
        "settings = build_settings(\n"
        "    {'accounting': {'mode': 'inline'}, 'upstream': {'url': 'http://127.0.0.1:9/v1'}}\n"
        ")\n"
        "for _ in range(2):\n"
        "    create_app(settings, log_stream=io.BytesIO())\n"
        "    counts.append(installed())\n"
        "print(json.dumps(counts))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=False, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == [0, 1, 1]
