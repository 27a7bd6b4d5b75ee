"""A real Prometheus scrapes two proxies; its fleet-wide PromQL agrees with what they saw.

How "agrees" is made exact: ``rate()`` scales each series' increase by an
extrapolation factor that depends on that target's scrape times (the range edges
against its first and last sample), so the two instances get slightly different
factors.  The test reads each instance's factor back from Prometheus (its
``increase()`` over the proxy's own count of new requests), checks that the factor is
the same for every growing bucket of that instance, and then interpolates the
proxies' own bucket counts, weighted so, exactly as ``histogram_quantile`` does.  The
series exist (from a warm-up) before the first scrape, so every measured request is
an increase between two samples and none is lost to a series being born.  The traffic
is one pattern sent three times through one proxy and once through the other, with
latencies well inside their buckets, so the true p95 from the events can be placed in
a bucket with confidence.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from conftest import RunningProxy, free_port, start_proxy
from prometheus_client.parser import text_string_to_metric_families
from test_fleet import dashboard_exprs

from pulse_proxy.ops.fleet import grafana_dashboard, prometheus_rules
from pulse_proxy.records import ERROR_OUTCOMES
from pulse_proxy.settings import Settings

PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"
pytestmark = pytest.mark.skipif(
    not Path(PROMETHEUS).exists(),
    reason="needs a Prometheus server binary (/usr/bin/prometheus, Debian package 'prometheus')",
)

CHAT = {"model": "gpt-4o", "messages": [{"role": "user", "content": "hello"}]}
# (mock latency in ms, status): each just above a bucket's lower bound (0.08-0.16,
# 0.16-0.32, 0.64-1.28 s), leaving most of the bucket for the proxy's overhead.
PATTERN = [
    (90, 200),
    (90, 200),
    (90, 200),
    (180, 200),
    (180, 200),
    (700, 200),
    (90, 500),
    (180, 500),
]
COPIES = {"a": 3, "b": 1}  # different counts per proxy, the same shape
WARMUP = 20  # fast requests per status class: every series exists, with counts > 0
P95 = "histogram_quantile(0.95, sum by (le) (rate(llm_request_duration_seconds_bucket[1m])))"
Buckets = dict[tuple[str, float], float]  # (status_class, le) -> cumulative count


def _send(proxy: RunningProxy, latency_ms: int, status: int) -> None:
    headers = {"X-Mock-Latency-Ms": str(latency_ms)}
    if status != 200:
        headers["X-Mock-Status"] = str(status)
    response = httpx.post(
        proxy.base_url + "/chat/completions", json=CHAT, headers=headers, timeout=30
    )
    assert response.status_code == status


def _duration_buckets(proxy: RunningProxy) -> Buckets:
    """The proxy's own ``llm_request_duration_seconds`` buckets, per status class."""
    text = httpx.get(proxy.url + "/metrics").text
    out: Buckets = {}
    for family in text_string_to_metric_families(text):
        if family.name != "llm_request_duration_seconds":
            continue
        for sample in family.samples:
            if sample.name.endswith("_bucket"):
                key = (sample.labels["status_class"], float(sample.labels["le"]))
                out[key] = out.get(key, 0.0) + sample.value
    return out


def _minus(after: Buckets, before: Buckets) -> Buckets:
    return {key: value - before.get(key, 0.0) for key, value in after.items()}


def histogram_quantile(q: float, cumulative: dict[float, float]) -> float:
    """Prometheus's bucketQuantile: linear interpolation inside the bucket holding rank q."""
    bounds = sorted(cumulative)
    total = cumulative[float("inf")]
    rank = q * total
    previous_bound, previous_count = 0.0, 0.0
    for bound in bounds:
        count = cumulative[bound]
        if count >= rank:
            if bound == float("inf"):
                return previous_bound
            return previous_bound + (bound - previous_bound) * (rank - previous_count) / (
                count - previous_count
            )
        previous_bound, previous_count = bound, count
    raise AssertionError("no +Inf bucket")


def _bucket_of(value: float, bounds: list[float]) -> float:
    return min(b for b in bounds if value <= b)


@dataclass
class Prometheus:
    url: str

    def query(self, expr: str, at: float | None = None) -> list[dict[str, Any]]:
        """An instant query (at ``at``, else now); a PromQL error fails the test, naming it."""
        params: dict[str, Any] = {"query": expr}
        if at is not None:
            params["time"] = f"{at:.3f}"
        response = httpx.get(self.url + "/api/v1/query", params=params, timeout=10)
        body = response.json()
        assert response.status_code == 200 and body["status"] == "success", (expr, body)
        return list(body["data"]["result"])

    def scalar(self, expr: str, at: float | None = None) -> float | None:
        result = self.query(expr, at)
        return float(result[0]["value"][1]) if result else None

    def by(self, label: str, expr: str) -> dict[str, float]:
        return {r["metric"][label]: float(r["value"][1]) for r in self.query(expr)}

    def wait_for(self, what: str, check: Callable[[], bool], timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        while not check():
            if time.monotonic() > deadline:
                raise AssertionError(f"Prometheus never showed {what}")
            time.sleep(0.2)


@contextlib.contextmanager
def run_prometheus(tmp_path: Path, targets: list[str], rules: str) -> Iterator[Prometheus]:
    """A Prometheus on loopback scraping ``targets`` every second, with ``rules`` loaded."""
    (tmp_path / "rules.yml").write_text(rules)
    config = {
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(tmp_path / "rules.yml")],
        "scrape_configs": [{"job_name": "pulse", "static_configs": [{"targets": targets}]}],
    }
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = free_port()
    log = open(tmp_path / "prometheus.log", "wb")  # noqa: SIM115 - closed below
    process = subprocess.Popen(
        [
            PROMETHEUS,
            f"--config.file={tmp_path / 'prometheus.yml'}",
            f"--storage.tsdb.path={tmp_path / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--log.level=warn",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            assert process.poll() is None, (tmp_path / "prometheus.log").read_text()
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(url + "/-/ready", timeout=1).status_code == 200:
                    break
            assert time.monotonic() < deadline, "Prometheus did not get ready"
            time.sleep(0.1)
        yield Prometheus(url)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
        log.close()


def _warm_up(proxy: RunningProxy) -> None:
    for status in (200, 500):
        for _ in range(WARMUP):
            _send(proxy, 0, status)


def _traffic(proxies: dict[str, RunningProxy]) -> None:
    jobs = [
        (proxies[name], call)
        for name, copies in COPIES.items()
        for _ in range(copies)
        for call in PATTERN
    ]
    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(lambda job: _send(job[0], *job[1]), jobs))


def _extrapolation_factors(
    prom: Prometheus, at: float, hosts: dict[str, str], deltas: dict[str, Buckets]
) -> dict[str, float]:
    """Per proxy, Prometheus's increase() over the proxy's own count, for every growing bucket.

    rate() multiplies a series' increase by a factor set by its sample times; the
    series of one target share their sample times, so the factor must be one number
    per instance (asserted), which is what makes the expected p95 computable.
    """
    factors: dict[str, float] = {}
    for series in prom.query("increase(llm_request_duration_seconds_bucket[1m])", at):
        labels = series["metric"]
        name = hosts[labels["instance"]]
        delta = deltas[name][(labels["status_class"], float(labels["le"]))]
        if delta:
            ratio = float(series["value"][1]) / delta
            factors.setdefault(name, ratio)
            assert ratio == pytest.approx(factors[name], rel=1e-9), (name, labels, ratio, factors)
    assert set(factors) == set(deltas)
    return factors


def _assert_series_existed(before: dict[str, Buckets], deltas: dict[str, Buckets]) -> None:
    """Every bucket that grew had a count before the first scrape (see module docstring)."""
    for name, delta in deltas.items():
        born = [key for key, value in delta.items() if value and not before[name].get(key)]
        assert not born, f"{name}: buckets first filled by the measured traffic: {born}"


@pytest.mark.slow
def test_prometheus_fleet_figures_agree_with_the_proxies(mock_url: str, tmp_path: Path) -> None:
    settings = Settings()
    with start_proxy(mock_url + "/v1") as a, start_proxy(mock_url + "/v1") as b:
        proxies = {"a": a, "b": b}
        # Both at once: each proxy's first request loads its tokenizer.
        with ThreadPoolExecutor(max_workers=2) as pool:
            list(pool.map(_warm_up, proxies.values()))
        for proxy in proxies.values():
            proxy.wait_for(2 * WARMUP)
        before = {name: _duration_buckets(p) for name, p in proxies.items()}
        hosts = {p.url.removeprefix("http://"): name for name, p in proxies.items()}

        with run_prometheus(tmp_path, sorted(hosts), prometheus_rules(settings)) as prom:
            warm_total = 2 * WARMUP * len(proxies)
            prom.wait_for("both targets up", lambda: prom.scalar('sum(up{job="pulse"})') == 2)
            prom.wait_for(
                "the warm-up", lambda: prom.scalar("sum(llm_requests_total)") == warm_total
            )

            _traffic(proxies)
            sent = len(PATTERN) * sum(COPIES.values())
            errors_sent = sum(1 for _, status in PATTERN if status != 200) * sum(COPIES.values())
            for name, proxy in proxies.items():
                proxy.wait_for(2 * WARMUP + len(PATTERN) * COPIES[name])
            after = {name: _duration_buckets(p) for name, p in proxies.items()}
            prom.wait_for(
                "the final counts",
                lambda: prom.scalar("sum(llm_request_duration_seconds_count)") == warm_total + sent,
            )
            at = time.time()  # one evaluation time for every figure compared below

            # Counters: the fleet's sums and each instance's own figures.
            assert prom.scalar("sum(llm_requests_total)") == warm_total + sent
            assert (
                prom.scalar("sum(llm_request_errors_total)") == WARMUP * len(proxies) + errors_sent
            )
            failed = "|".join(sorted(ERROR_OUTCOMES))
            assert (
                prom.scalar(f'sum(llm_request_errors_total{{outcome=~"{failed}"}})')
                == WARMUP * 2 + errors_sent
            )
            requests = prom.by("instance", "sum by (instance) (llm_requests_total)")
            errors = prom.by("instance", "sum by (instance) (llm_request_errors_total)")
            for host, name in hosts.items():
                proxy = proxies[name]
                stats = httpx.get(proxy.url + "/pulse/stats").json()["windows"]["1h"]["overall"]
                assert requests[host] == stats["requests"] == len(proxy.exchanges)
                assert (
                    errors[host]
                    == stats["errors"]
                    == sum(1 for e in proxy.exchanges if e.outcome != "success")
                )

            # p95: PromQL over the fleet equals the interpolation of the proxies' buckets.
            deltas = {name: _minus(after[name], before[name]) for name in proxies}
            _assert_series_existed(before, deltas)
            factors = _extrapolation_factors(prom, at, hosts, deltas)
            fleet: dict[float, float] = {}
            for name, delta in deltas.items():
                for (_, bound), count in delta.items():
                    fleet[bound] = fleet.get(bound, 0.0) + factors[name] * count
            expected = histogram_quantile(0.95, fleet)
            assert prom.scalar(P95, at) == pytest.approx(expected, rel=1e-9)
            latencies = sorted(
                e.latency_ms / 1000 for p in proxies.values() for e in p.exchanges[2 * WARMUP :]
            )
            assert len(latencies) == sent
            true_p95 = latencies[-(-95 * len(latencies) // 100) - 1]  # nearest rank
            bounds = sorted(fleet)
            assert _bucket_of(true_p95, bounds) == _bucket_of(expected, bounds)

            # Every dashboard expression runs against the real server without error.
            for expr in dashboard_exprs(grafana_dashboard(settings)):
                prom.query(expr)

            # The exported rules loaded and evaluate cleanly; error_rate fires (8 of 32
            # requests failed upstream), high_latency does not (p95 about 1 s).
            prom.wait_for(
                "error_rate firing",
                lambda: bool(prom.query('ALERTS{alertname="error_rate",alertstate="firing"}')),
            )
            groups = httpx.get(prom.url + "/api/v1/rules").json()["data"]["groups"]
            rules = [rule for group in groups for rule in group["rules"]]
            assert len(rules) == 5
            for rule in rules:
                assert rule["health"] == "ok" and not rule.get("lastError"), rule
            assert not prom.query('ALERTS{alertname="high_latency"}')
