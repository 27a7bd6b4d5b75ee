"""The built-in dashboard at /pulse/, checked over HTTP and in a real headless Chromium.

The browser tests send real traffic through a real proxy, load the page and compare
the figures it shows (exposed as ``data-*`` attributes next to what is drawn) with
what ``/pulse/stats`` and ``/pulse/series`` report.  They use Debian's ``chromium``
and ``chromedriver`` by explicit path, so selenium-manager never tries to download a
browser, and they leave full-page screenshots (laptop and phone) under the test's
output: ``$PULSE_TEST_OUTPUT`` or ``<repo>/test-output/``, and ``tmp_path``.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from conftest import RunningProxy, start_proxy, wait_until

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
REPO = Path(__file__).resolve().parent.parent
ADMIN_TOKEN = "dashboard-test-token"

# Rules tuned so a few dozen requests fire and resolve an error-rate alert and trip the
# prompt-length hard cap; evaluated every 0.2 s so the test never waits long.
ALERTS: dict[str, Any] = {
    "alerts": {
        "evaluation_interval_s": 0.2,
        "rules": [
            {"name": "error_rate", "metric": "error_rate", "stat": "rate", "threshold": 0.25,
             "min_samples": 5, "severity": "critical", "resolve_for_s": 0},
            {"name": "prompt_length_spike", "metric": "prompt_tokens", "stat": "p95",
             "baseline_window_s": 3600, "factor": 3, "floor": 1000, "hard_cap": 400,
             "min_samples": 10, "severity": "warning", "resolve_for_s": 0},
            {"name": "high_latency", "metric": "latency_ms", "stat": "p95", "threshold": 2000,
             "min_samples": 10},
        ],
    }
}  # fmt: skip


# -- HTTP surface (no browser needed) ------------------------------------------------


def test_dashboard_page_and_assets_are_served_with_a_strict_csp(proxy: RunningProxy) -> None:
    """/pulse redirects to /pulse/, whose page and bundled assets carry a self-only CSP."""
    with httpx.Client(base_url=proxy.url) as client:
        redirect = client.get("/pulse")
        assert redirect.status_code == 308 and redirect.headers["location"] == "/pulse/"
        page = client.get("/pulse/")
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        csp = page.headers["content-security-policy"]
        assert "default-src 'none'" in csp and "script-src 'self'" in csp
        assert "://" not in page.text  # every reference is same-origin and relative
        for name, kind in [("dashboard.js", "text/javascript"), ("dashboard.css", "text/css"),
                           ("favicon.svg", "image/svg+xml")]:  # fmt: skip
            asset = client.get(f"/pulse/assets/{name}")
            assert asset.status_code == 200 and asset.headers["content-type"].startswith(kind)
            assert f"/pulse/assets/{name}" in page.text
        assert client.get("/pulse/assets/app.py").status_code == 404
        assert client.get("/pulse/assets/..%2Fapp.py").status_code == 404


def test_series_endpoint_is_guarded_and_validates_the_window(mock_url: str) -> None:
    """/pulse/series demands the admin token like /pulse/stats and refuses unknown windows,
    while the page itself, holding no data, loads without it."""
    with start_proxy(mock_url + "/v1", {"server": {"admin_token": ADMIN_TOKEN}}) as running:
        auth = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        with httpx.Client(base_url=running.url) as client:
            assert client.get("/pulse/series").status_code == 401
            assert client.get("/pulse/").status_code == 200
            assert client.get("/pulse/assets/dashboard.js").status_code == 200
            bad = client.get("/pulse/series?window=2m", headers=auth)
            assert bad.status_code == 400 and bad.json()["error"]["param"] == "window"
            body = client.get("/pulse/series?window=1m", headers=auth).json()
    assert body["window"] == "1m" and body["window_s"] == 60 and body["step_s"] == 10
    assert body["model"] is None and len(body["points"]) == 6
    assert body["prompt_histogram"] == {
        "count": 0,
        "p50": None,
        "p95": None,
        "max": None,
        "bins": [],
    }


# -- the browser -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """One headless Chromium for the module, isolated and kept off the network."""
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.exists()]
    if missing:
        pytest.skip(
            f"needs Debian's chromium and chromedriver ({', '.join(missing)} missing): "
            "apt-get install chromium chromium-driver"
        )
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="pulse-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (
        "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
        "--disable-background-networking", "--disable-quic", "--disable-component-update",
        "--disable-sync", "--disable-dev-shm-usage", f"--user-data-dir={profile}",
        "--window-size=1366,900", "--force-device-scale-factor=1", "--lang=en-US",
    ):  # fmt: skip
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=options)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def output_dirs(tmp_path: Path) -> list[Path]:
    """Where screenshots go: the test output directory, and this test's tmp_path."""
    root = Path(os.environ.get("PULSE_TEST_OUTPUT") or REPO / "test-output")
    dirs = [root / "dashboard", tmp_path]
    for directory in dirs:
        directory.mkdir(parents=True, exist_ok=True)
    return dirs


def screenshot(
    driver: Any,
    name: str,
    dirs: list[Path],
    *,
    width: int,
    height: int,
    mobile: bool,
    dark: bool = False,
) -> None:
    """A full-page PNG at the given viewport (and colour scheme), saved in every output directory."""
    scheme = "dark" if dark else "light"
    driver.execute_cdp_cmd(
        "Emulation.setEmulatedMedia",
        {"features": [{"name": "prefers-color-scheme", "value": scheme}]},
    )
    viewport(driver, width=width, height=height, mobile=mobile)
    driver.execute_script("window.scrollTo(0, 0)")  # a sticky header stays at the top
    full_height = driver.execute_script("return document.documentElement.scrollHeight")
    shot = driver.execute_cdp_cmd(
        "Page.captureScreenshot",
        {
            "format": "png",
            "captureBeyondViewport": True,
            "clip": {"x": 0, "y": 0, "width": width, "height": full_height, "scale": 1},
        },
    )
    data = base64.b64decode(shot["data"])
    for directory in dirs:
        path = directory / f"{name}.png"
        path.write_bytes(data)
        print(f"screenshot: {path}")
    driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
    driver.execute_cdp_cmd("Emulation.setEmulatedMedia", {"features": []})


def viewport(driver: Any, *, width: int, height: int, mobile: bool) -> None:
    """Emulate a screen of that size and wait until the charts are redrawn for it."""
    driver.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride",
        {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": mobile},
    )
    # Let the page redraw its charts for the new width (it listens to resize).
    driver.execute_script("window.dispatchEvent(new Event('resize'))")
    wait(driver).until(
        lambda d: d.execute_script(
            "const c = document.getElementById('chart-latency'), s = c.querySelector('svg');"
            "return !c.offsetParent || !s || Number(s.getAttribute('width')) === Math.max(280, Math.floor(c.clientWidth))"
        )
    )


def wait(driver: Any, timeout: float = 15) -> Any:
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout, poll_frequency=0.05)


def rendered(driver: Any, window: str, model: str = "") -> None:
    """Wait until the page shows ``window`` and ``model`` from a completed refresh."""
    script = (
        "const m = document.getElementById('main');"
        "return [document.body.dataset.state, m.dataset.window, m.dataset.model]"
    )
    wait(driver).until(lambda d: d.execute_script(script) == ["ready", window, model])


def figures(driver: Any) -> dict[str, str]:
    """The headline row: data-metric -> data-value, plus the extras on the requests tile."""
    return driver.execute_script(  # type: ignore[no-any-return]
        "const out = {};"
        "for (const f of document.querySelectorAll('.figure')) out[f.dataset.metric] = f.dataset.value;"
        "const r = document.querySelector('.figure[data-metric=requests]').dataset;"
        "out.errors = r.errors; out.tokens_total = r.tokensTotal; return out;"
    )


def number(text: str) -> float | None:
    return None if text == "" else float(text)


def assert_headline(driver: Any, scope: dict[str, Any]) -> None:
    """Every headline figure equals the /pulse/stats scope it was drawn from."""
    shown = figures(driver)
    assert number(shown["requests"]) == scope["requests"]
    assert number(shown["errors"]) == scope["errors"]
    assert number(shown["error_rate"]) == scope["error_rate"]
    assert number(shown["latency_p50"]) == scope["latency_ms"]["p50"]
    assert number(shown["latency_p95"]) == scope["latency_ms"]["p95"]
    assert number(shown["tokens_total"]) == scope["tokens"]["total"]
    assert number(shown["tokens_per_request"]) == scope["tokens"]["per_request"]
    assert number(shown["prompt_p95"]) == scope["prompt_tokens"]["p95"]
    # Per-minute figures divide by the elapsed span, which grows between two reads.
    assert number(shown["tokens_per_minute"]) is not None


def chart_data(driver: Any, chart: str) -> dict[str, str]:
    return driver.execute_script(  # type: ignore[no-any-return]
        "return Object.assign({}, document.querySelector('svg[data-chart=' + arguments[0] + ']').dataset)",
        chart,
    )


class SteppedClock:
    """Real time plus an offset the test moves forward between batches of requests, so
    the charts span several time slots without the test waiting for them to pass."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset


def send_traffic(proxy: RunningProxy, clock: SteppedClock) -> int:
    """Real requests for three models, in batches 30 s apart on the proxy's clock:
    plain, streamed, failing, slow ones and one prompt over the hard cap."""
    sent = 0

    def chat(
        model: str, text: str, headers: dict[str, str] | None = None, stream: bool = False
    ) -> None:
        nonlocal sent
        body = {"model": model, "messages": [{"role": "user", "content": text}], "stream": stream}
        client.post("/chat/completions", json=body, headers=headers or {}).read()
        sent += 1

    def next_batch() -> None:
        # Every record of this batch is stamped before the clock moves on.
        proxy.wait_for(sent)
        clock.offset += 30

    with httpx.Client(
        base_url=proxy.base_url, timeout=30, headers={"Authorization": "Bearer sk-test"}
    ) as client:
        for i in range(4):
            chat("gpt-4o-mini", f"Summarise ticket {i} in one line.")
            chat("gpt-4o-mini", f"Stream a haiku about queue {i}.", stream=True)
        next_batch()
        chat("gpt-4o", "Plan the release.", {"X-Mock-Latency-Ms": "250"})
        chat("gpt-4o", "Plan the rollback.", {"X-Mock-Latency-Ms": "400"})
        next_batch()
        for i in range(4):
            chat("gpt-4.1-nano", f"Classify {i}", {"X-Mock-Status": "500"})
        # 4 errors of 14: the error-rate rule (> 25 %) fires ...
        wait_until(lambda: any(a["alert"] == "error_rate" for a in alerts(proxy)["active"]), 15)
        next_batch()
        # ... one long prompt trips the prompt-length hard cap (400 tokens) ...
        chat("gpt-4o", "lorem ipsum dolor sit amet " * 120)
        for i in range(3):
            chat("gpt-4o-mini", f"Translate note {i} to French.", stream=i % 2 == 0)
        next_batch()
        # ... and healthy traffic brings the error rate back down: it resolves.
        for i in range(5):
            chat("gpt-4o", f"Review diff {i}.", {"X-Mock-Latency-Ms": "120"} if i < 2 else None)
            chat("gpt-4o-mini", f"Tag commit {i}.", stream=True)
        proxy.wait_for(sent)
    wait_until(lambda: any(a["event"] == "alert.resolved" for a in alerts(proxy)["recent"]), 15)
    return sent


def alerts(proxy: RunningProxy) -> dict[str, Any]:
    return httpx.get(proxy.url + "/pulse/alerts").json()  # type: ignore[no-any-return]


def stats(proxy: RunningProxy) -> dict[str, Any]:
    return httpx.get(proxy.url + "/pulse/stats").json()  # type: ignore[no-any-return]


def series(proxy: RunningProxy, window: str, model: str = "") -> dict[str, Any]:
    params = {"window": window} | ({"model": model} if model else {})
    return httpx.get(proxy.url + "/pulse/series", params=params).json()  # type: ignore[no-any-return]


def test_dashboard_shows_what_pulse_stats_reports(
    browser: Any, mock_url: str, tmp_path: Path
) -> None:
    """With real traffic through the proxy, the page's headline, charts, model filter,
    window selector and alert timeline hold exactly the figures the JSON API reports,
    the browser logs no error, and nothing loads from anywhere but the proxy."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    clock = SteppedClock()
    with start_proxy(mock_url + "/v1", ALERTS, clock=clock) as running:
        sent = send_traffic(running, clock)
        wait_until(lambda: stats(running)["windows"]["1h"]["overall"]["requests"] == sent, 15)
        browser.get(running.url + "/pulse/")
        rendered(browser, "5m")
        body = stats(running)
        overall = body["windows"]["5m"]["overall"]
        assert overall["requests"] == sent and overall["errors"] == 4
        assert_headline(browser, overall)

        # The charts hold the series' figures, slot by slot.
        chart = series(running, "5m")
        latency = chart_data(browser, "latency")
        assert int(latency["requests"]) == sent and int(latency["points"]) == len(chart["points"])
        p95_dots = browser.execute_script(
            "return [...document.querySelectorAll('#chart-latency circle.p95')]"
            ".map(c => [Number(c.dataset.t), Number(c.dataset.value)])"
        )
        by_t = {p["t"]: p for p in chart["points"]}
        assert p95_dots and all(by_t[t]["latency_p95"] == v for t, v in p95_dots if t in by_t)
        assert int(chart_data(browser, "tokens")["tokens"]) == overall["tokens"]["total"]
        errors = chart_data(browser, "errors")
        assert (int(errors["requests"]), int(errors["errors"])) == (sent, 4)
        prompt = chart_data(browser, "prompt")
        assert int(prompt["count"]) == overall["prompt_tokens"]["count"]
        assert float(prompt["max"]) == overall["prompt_tokens"]["max"] > 400
        assert float(prompt["hardCap"]) == 400 and prompt["spikes"] == "true"
        spike_bars = browser.find_elements(By.CSS_SELECTOR, "#chart-prompt rect[data-spike=true]")
        assert spike_bars and all(int(b.get_attribute("data-hi")) > 400 for b in spike_bars)
        bar_total = browser.execute_script(
            "return [...document.querySelectorAll('#chart-prompt rect.bar')]"
            ".reduce((s, b) => s + Number(b.dataset.count), 0)"
        )
        assert bar_total == overall["prompt_tokens"]["count"]

        # The alert timeline: markers on the error-rate chart and the list, from /pulse/alerts.
        for kind in ("fired", "resolved"):
            assert browser.find_elements(
                By.CSS_SELECTOR, f"#chart-errors .marker.{kind}[data-alert=error_rate]"
            )
            assert browser.find_elements(
                By.CSS_SELECTOR, f"#alert-list li.{kind}[data-alert=error_rate]"
            )
        badge = browser.find_element(By.ID, "alert-badge")
        assert badge.is_displayed() and badge.get_attribute("data-active") == "1"  # the prompt cap

        dirs = output_dirs(tmp_path)
        screenshot(browser, "dashboard-laptop", dirs, width=1366, height=900, mobile=False)
        screenshot(browser, "dashboard-phone", dirs, width=390, height=844, mobile=True)
        screenshot(
            browser, "dashboard-laptop-dark", dirs, width=1366, height=900, mobile=False, dark=True
        )

        # The model filter lists every model; choosing one shows that model's figures.
        select = Select(browser.find_element(By.ID, "model-filter"))
        models = sorted(body["windows"]["1h"]["models"])
        assert [o.get_attribute("value") for o in select.options] == ["", *models]
        assert models == ["gpt-4.1-nano", "gpt-4o", "gpt-4o-mini"]
        select.select_by_value("gpt-4o")
        rendered(browser, "5m", "gpt-4o")
        assert_headline(browser, stats(running)["windows"]["5m"]["models"]["gpt-4o"])
        assert (
            int(chart_data(browser, "latency")["requests"])
            == body["windows"]["5m"]["models"]["gpt-4o"]["requests"]
        )

        # The window selector changes the series and the headline together.
        browser.find_element(By.CSS_SELECTOR, "button[data-window='1h']").click()
        rendered(browser, "1h", "gpt-4o")
        assert_headline(browser, stats(running)["windows"]["1h"]["models"]["gpt-4o"])
        assert int(chart_data(browser, "latency")["points"]) == len(
            series(running, "1h", "gpt-4o")["points"]
        )
        select.select_by_value("gpt-4.1-nano")
        rendered(browser, "1h", "gpt-4.1-nano")
        assert number(figures(browser)["error_rate"]) == 1.0

        origin = urlsplit(running.url)
        resources = browser.execute_script(
            "return performance.getEntriesByType('resource').map(e => e.name)"
        )
        assert resources and all(urlsplit(name).netloc == origin.netloc for name in resources), (
            resources
        )
        assert browser.execute_script("return location.href").startswith(running.url)
    severe = [entry for entry in browser.get_log("browser") if entry["level"] == "SEVERE"]
    assert severe == [], json.dumps(severe, indent=1)


def test_dashboard_empty_state_says_how_to_send_the_first_request(
    browser: Any, mock_url: str, tmp_path: Path
) -> None:
    """A proxy that has seen no request shows how to point a client at it, built from the
    page's own origin, instead of empty charts."""
    from selenium.webdriver.common.by import By

    with start_proxy(mock_url + "/v1") as running:
        browser.get(running.url + "/pulse/")
        wait(browser).until(
            lambda d: d.execute_script("return document.body.dataset.state") == "empty"
        )
        assert browser.find_element(By.ID, "empty-state").is_displayed()
        assert not browser.find_element(By.ID, "charts").is_displayed()
        env = browser.find_element(By.ID, "empty-env").text
        curl = browser.find_element(By.ID, "empty-curl").text
        assert env == f"export OPENAI_BASE_URL={running.url}/v1"
        assert f"curl -s {running.url}/v1/chat/completions" in curl
        screenshot(
            browser, "dashboard-empty", output_dirs(tmp_path), width=1366, height=900, mobile=False
        )
    severe = [entry for entry in browser.get_log("browser") if entry["level"] == "SEVERE"]
    assert severe == [], json.dumps(severe, indent=1)


def test_dashboard_asks_for_the_admin_token(browser: Any, mock_url: str) -> None:
    """Behind PULSE_ADMIN_TOKEN the page asks for the token once, then reads the data with it."""
    from selenium.webdriver.common.by import By

    with start_proxy(mock_url + "/v1", {"server": {"admin_token": ADMIN_TOKEN}}) as running:
        browser.get(running.url + "/pulse/")
        browser.execute_script("sessionStorage.clear()")
        browser.refresh()
        state = "return document.body.dataset.state"
        wait(browser).until(lambda d: d.execute_script(state) == "auth")
        field = browser.find_element(By.ID, "auth-token")
        field.send_keys("wrong")
        browser.find_element(By.CSS_SELECTOR, "#auth-form button").click()
        wait(browser).until(lambda d: d.find_element(By.ID, "auth-error").is_displayed())
        field.send_keys(ADMIN_TOKEN)
        browser.find_element(By.CSS_SELECTOR, "#auth-form button").click()
        wait(browser).until(lambda d: d.execute_script(state) == "empty")
        assert not browser.find_element(By.ID, "auth").is_displayed()
        browser.execute_script("sessionStorage.clear()")
    browser.get_log("browser")  # the expected 401s, not an error of this page: discard


# -- legibility ------------------------------------------------------------------------

# A hard cap at 100,000 tokens: its marker sits near the right end of an axis that a
# 110K-token prompt stretches to 131,072.
HARD_CAP: dict[str, Any] = {
    "alerts": {
        "evaluation_interval_s": 0.2,
        "rules": [
            {"name": "prompt_length_spike", "metric": "prompt_tokens", "stat": "p95",
             "baseline_window_s": 3600, "factor": 3, "floor": 1000, "hard_cap": 100_000,
             "min_samples": 10, "severity": "warning", "resolve_for_s": 0},
        ],
    }
}  # fmt: skip

# Every text of every chart axis, grouped by axis, with its box in the svg's own units.
AXIS_LABELS = """
return [...document.querySelectorAll('.chart svg')].flatMap((svg) =>
  [...svg.querySelectorAll('g.axis, g.tick')].map((g) => ({
    chart: svg.dataset.chart,
    labels: [...g.querySelectorAll('text')].map((t) => {
      const b = t.getBBox();
      return [t.textContent, b.x, b.y, b.width, b.height];
    }),
  })));
"""


def assert_axes_legible(driver: Any) -> None:
    """On every axis the labels differ from one another and no two boxes overlap."""
    axes = driver.execute_script(AXIS_LABELS)
    assert axes
    for axis in axes:
        labels = axis["labels"]
        texts = [label[0] for label in labels]
        assert len(set(texts)) == len(texts), axis
        for i, (_, x, y, w, h) in enumerate(labels):
            for _, x2, y2, w2, h2 in labels[i + 1 :]:
                apart = x + w <= x2 or x2 + w2 <= x or y + h <= y2 or y2 + h2 <= y
                assert apart, axis


def assert_sub_lines_fit(driver: Any) -> None:
    """Each headline card shows its whole sub-line: nothing cut off or ellipsised."""
    overflowing = driver.execute_script(
        "return [...document.querySelectorAll('.figure .sub')]"
        ".filter((s) => s.scrollWidth > s.clientWidth || s.scrollHeight > s.clientHeight + 1)"
        ".map((s) => [s.parentElement.dataset.metric, s.textContent, s.scrollWidth, s.clientWidth])"
    )
    assert overflowing == []


def test_dashboard_stays_legible_with_one_huge_prompt_and_an_empty_window(
    browser: Any, mock_url: str, tmp_path: Path
) -> None:
    """With many short prompts and one of 110K tokens, on a laptop and a phone: headline
    sub-lines are whole, axis labels are distinct and never overlap, the hard-cap label
    stays inside the chart, the lone long prompt's bar is clearly visible on the log
    count scale, and a window with no requests repeats no axis label."""
    clock = SteppedClock()
    with start_proxy(mock_url + "/v1", HARD_CAP, clock=clock) as running:
        with httpx.Client(base_url=running.base_url, timeout=60) as client:
            for i in range(60):
                body = {
                    "model": "gpt-4o-mini",
                    "messages": [{"role": "user", "content": f"Tag {i}"}],
                }
                assert client.post("/chat/completions", json=body).status_code == 200
            huge = "lorem ipsum dolor sit amet, consectetur adipiscing elit " * 12_300
            body = {"model": "gpt-4o", "messages": [{"role": "user", "content": huge}]}
            long_answer = {"X-Mock-Completion-Tokens": "20000"}
            assert (
                client.post("/chat/completions", json=body, headers=long_answer).status_code == 200
            )
        running.wait_for(61, timeout=30)
        largest = stats(running)["windows"]["5m"]["overall"]["prompt_tokens"]["max"]
        assert 100_000 < largest < 131_072
        browser.get(running.url + "/pulse/")
        rendered(browser, "5m")
        dirs = output_dirs(tmp_path)
        for name, width, height, mobile in (
            ("laptop", 1366, 900, False),
            ("phone", 390, 844, True),
        ):
            viewport(browser, width=width, height=height, mobile=mobile)
            assert_sub_lines_fit(browser)
            assert_axes_legible(browser)
            cap = browser.execute_script(
                "const svg = document.querySelector('svg[data-chart=prompt]');"
                "const label = svg.querySelector('.marker-label.cap'), b = label.getBBox();"
                "return [label.textContent, b.x, b.x + b.width, svg.viewBox.baseVal.width]"
            )
            assert cap[0] == "cap 100,000" and cap[1] >= 0 and cap[2] <= cap[3], cap
            lone = browser.execute_script(
                "const bars = [...document.querySelectorAll('#chart-prompt rect.bar')];"
                "const big = bars.filter((b) => Number(b.dataset.lo) > 50000 && Number(b.dataset.count) > 0);"
                "const most = Math.max(...bars.map((b) => Number(b.dataset.height || b.getAttribute('height'))));"
                "return big.map((b) => [Number(b.dataset.count), Number(b.getAttribute('height')), most])"
            )
            ((count, height_px, tallest),) = lone
            assert count == 1 and height_px >= 0.1 * tallest and height_px >= 10, lone
            scales = chart_data(browser, "prompt")
            assert (scales.get("xScale"), scales.get("yScale")) == ("log", "log")
            titles = browser.execute_script(
                "return [...document.querySelectorAll('#chart-prompt .axis-title')].map((t) => t.textContent)"
            )
            assert titles and all("log scale" in title for title in titles), titles
            screenshot(browser, f"dashboard-huge-prompt-{name}", dirs, width=width, height=height,
                       mobile=mobile)  # fmt: skip

        # Ten minutes on, the 5m window is empty while the last hour is not: charts
        # are drawn with nothing in them, and their axes must not repeat a label.
        clock.offset += 600
        browser.find_element("css selector", "button[data-window='1m']").click()
        rendered(browser, "1m")
        assert int(chart_data(browser, "latency")["requests"]) == 0
        assert_axes_legible(browser)
        screenshot(browser, "dashboard-empty-window", dirs, width=1366, height=900, mobile=False)
    severe = [entry for entry in browser.get_log("browser") if entry["level"] == "SEVERE"]
    assert severe == [], json.dumps(severe, indent=1)
