// LLM Pulse dashboard: polls /pulse/stats, /pulse/series, /pulse/alerts and the recent
// requests, and draws the four seed dashboards, who spends, the model mix, risk flags,
// the upstreams and a table of the requests themselves, as inline SVG and plain tables.  No library and nothing fetched from elsewhere: the
// page's Content-Security-Policy only lets this origin's files load.
//
// Every figure drawn is also written into the DOM as data-* attributes (the headline's
// data-value, each chart point's data-*), so a test can compare the page with the API.
"use strict";

(() => {
  const POLL_MS = 5000;
  const TOKEN_KEY = "pulse.adminToken";
  const SVG_NS = "http://www.w3.org/2000/svg";
  const WINDOWS = ["1m", "5m", "1h"];
  const PAD = { top: 14, right: 46, bottom: 24, left: 48 };

  const state = {
    window: "5m",
    model: "",
    stats: null,
    series: null,
    alerts: null,
    seq: 0,
    timer: null,
    renders: 0,
    spendBy: "api_key",
    filters: {},
    timeFilter: null,
    cursor: null, // the page shown: null for the newest, else the cursor /pulse/requests gave
    newer: [], // the cursors of the pages before it, to go back
    requests: null,
    upstreams: null,
    limits: null,
    ready: null,
  };

  // -- data ------------------------------------------------------------------------

  class AuthRequired extends Error {}

  async function getJSON(path) {
    const headers = { Accept: "application/json" };
    const token = sessionStorage.getItem(TOKEN_KEY);
    if (token) headers.Authorization = "Bearer " + token;
    const response = await fetch(path, { headers, cache: "no-store", credentials: "same-origin" });
    if (response.status === 401) throw new AuthRequired(path);
    if (!response.ok) throw new Error(path + " answered " + response.status);
    return response.json();
  }

  // An endpoint that a proxy may not have (no failover, no limits configured): null.
  async function getJSONOptional(path) {
    try {
      return await getJSON(path);
    } catch (error) {
      if (error instanceof AuthRequired) throw error;
      return null;
    }
  }

  // /readyz answers 503 with its reason when not ready: both are an answer here.
  async function getReady() {
    try {
      const response = await fetch("/readyz", { cache: "no-store" });
      return await response.json();
    } catch (error) {
      return null;
    }
  }

  async function refresh() {
    clearTimeout(state.timer);
    const seq = ++state.seq;
    const query = new URLSearchParams({ window: state.window });
    if (state.model) query.set("model", state.model);
    try {
      const [stats, series, alerts, requests, upstreams, limits, ready] = await Promise.all([
        getJSON("/pulse/stats"),
        getJSON("/pulse/series?" + query.toString()),
        getJSON("/pulse/alerts"),
        getJSONOptional("/pulse/requests?" + requestsQuery(pageParams()).toString()),
        getJSONOptional("/pulse/upstreams"),
        getJSONOptional("/pulse/limits"),
        getReady(),
      ]);
      if (seq !== state.seq) return; // a newer request (control change) superseded this one
      Object.assign(state, { stats, series, alerts, requests, upstreams, limits, ready });
      hideAuth();
      render();
      setStatus("Updated " + clock(Date.now() / 1000, true) + " · refreshes every " + POLL_MS / 1000 + " s", false);
    } catch (error) {
      if (seq !== state.seq) return;
      if (error instanceof AuthRequired) {
        showAuth();
        return; // polling resumes once a token is entered
      }
      setStatus("Cannot load the figures: " + error.message + " (retrying)", true);
    }
    state.timer = setTimeout(refresh, POLL_MS);
  }

  // -- page state ------------------------------------------------------------------

  function setStatus(text, bad) {
    const status = document.getElementById("status");
    status.textContent = text;
    status.classList.toggle("bad", bad);
  }

  function showAuth() {
    const hadToken = sessionStorage.getItem(TOKEN_KEY) !== null;
    document.getElementById("auth").hidden = false;
    document.getElementById("auth-error").hidden = !hadToken;
    document.getElementById("figures").hidden = true;
    document.getElementById("charts").hidden = true;
    document.getElementById("insights").hidden = true;
    document.getElementById("requests").hidden = true;
    document.getElementById("empty-state").hidden = true;
    document.body.dataset.state = "auth";
    setStatus("Waiting for the admin token", true);
    document.getElementById("auth-token").focus();
  }

  function hideAuth() {
    document.getElementById("auth").hidden = true;
  }

  function onTokenSubmit(event) {
    event.preventDefault();
    const input = document.getElementById("auth-token");
    sessionStorage.setItem(TOKEN_KEY, input.value.trim());
    input.value = "";
    refresh();
  }

  function scope() {
    const figures = state.stats.windows[state.window];
    if (!state.model) return figures.overall;
    return figures.models[state.model] || null;
  }

  function render() {
    const hour = state.stats.windows["1h"] || state.stats.windows[WINDOWS[WINDOWS.length - 1]];
    const empty = hour.overall.requests === 0;
    document.getElementById("empty-state").hidden = !empty;
    document.getElementById("figures").hidden = empty;
    document.getElementById("charts").hidden = empty;
    document.getElementById("insights").hidden = empty;
    document.getElementById("requests").hidden = empty;
    renderModels();
    renderBadge();
    if (!empty) {
      renderFigures(scope());
      drawCharts();
      renderSpend();
      renderModelMix();
      renderUpstreams();
      renderRequests();
    }
    state.renders += 1;
    const main = document.getElementById("main");
    main.dataset.window = state.series.window;
    main.dataset.model = state.series.model || "";
    main.dataset.renders = String(state.renders);
    main.dataset.generatedAt = state.stats.generated_at;
    document.body.dataset.state = empty ? "empty" : "ready";
  }

  function drawCharts() {
    drawLatency(document.getElementById("chart-latency"));
    drawTokens(document.getElementById("chart-tokens"));
    drawPrompt(document.getElementById("chart-prompt"));
    drawErrors(document.getElementById("chart-errors"));
    drawRisk(document.getElementById("chart-risk"));
  }

  // A click on a chart's time slot narrows the request table to that slot.
  function onSlotClick(node, t, step) {
    node.classList.add("clickable");
    node.addEventListener("click", () => setFilters(state.filters, { since: t, until: t + step }));
    return node;
  }

  function renderModels() {
    const select = document.getElementById("model-filter");
    const names = new Set(state.series.models);
    for (const figures of Object.values(state.stats.windows)) {
      for (const name of Object.keys(figures.models)) names.add(name);
    }
    if (state.model) names.add(state.model);
    const wanted = ["", ...[...names].sort()];
    const current = [...select.options].map((option) => option.value);
    if (wanted.join("\n") !== current.join("\n")) {
      select.replaceChildren(
        ...wanted.map((name) => {
          const option = document.createElement("option");
          option.value = name;
          option.textContent = name || "All models";
          return option;
        }),
      );
    }
    select.value = state.model;
  }

  function renderBadge() {
    const badge = document.getElementById("alert-badge");
    const active = state.alerts.active.length;
    badge.hidden = active === 0;
    badge.textContent = active + " alert" + (active === 1 ? "" : "s") + " firing";
    badge.dataset.active = String(active);
  }

  // Requests a limit answered 429: beside the error rate, never in it.
  function throttledNote(s) {
    const throttled = (s.outcomes && s.outcomes.throttled) || 0;
    return throttled ? " · " + fmtInt(throttled) + " throttled" : "";
  }

  function renderFigures(s) {
    const none = s === null || s.requests === 0;
    const figures = {
      requests: [s ? s.requests : 0, fmtInt(s ? s.requests : 0), s && s.rate_per_s != null ? s.rate_per_s.toFixed(2) + " req/s" : ""],
      error_rate: [
        s ? s.error_rate : null,
        s && s.error_rate != null ? fmtPct(s.error_rate) : "–",
        s ? fmtInt(s.errors) + " error" + (s.errors === 1 ? "" : "s") + throttledNote(s) +
          (s.failovers ? " · " + fmtInt(s.failovers) + " failed over" : "") : "",
      ],
      latency_p50: [s ? s.latency_ms.p50 : null, fmtMs(s ? s.latency_ms.p50 : null), s && s.ttft_ms.p50 != null ? "TTFT p50 " + fmtMs(s.ttft_ms.p50) : ""],
      latency_p95: [s ? s.latency_ms.p95 : null, fmtMs(s ? s.latency_ms.p95 : null), s && s.latency_ms.max != null ? "max " + fmtMs(s.latency_ms.max) : ""],
      tokens_per_request: [s ? s.tokens.per_request : null, fmtNum(s ? s.tokens.per_request : null), s ? fmtInt(s.tokens.total) + " tokens" : ""],
      tokens_per_minute: [s ? s.tokens.per_minute : null, fmtNum(s ? s.tokens.per_minute : null), s ? fmtCompact(s.tokens.prompt) + " in · " + fmtCompact(s.tokens.completion) + " out" : ""],
      prompt_p95: [s ? s.prompt_tokens.p95 : null, fmtNum(s ? s.prompt_tokens.p95 : null), s && s.prompt_tokens.max != null ? "max " + fmtInt(s.prompt_tokens.max) : ""],
      cost_usd: [s ? s.cost_usd.sum : null, fmtUsd(s ? s.cost_usd.sum : null), s ? fmtInt(s.cost_usd.priced_requests) + " priced" : ""],
    };
    for (const [metric, [value, text, sub]] of Object.entries(figures)) {
      const el = document.querySelector('.figure[data-metric="' + metric + '"]');
      el.dataset.value = value == null ? "" : String(value);
      el.querySelector(".value").textContent = none && metric !== "requests" ? "–" : text;
      el.querySelector(".sub").textContent = none ? "" : sub;
    }
    const extra = document.querySelector('.figure[data-metric="requests"]');
    extra.dataset.errors = String(s ? s.errors : 0);
    extra.dataset.tokensTotal = String(s ? s.tokens.total : 0);
    extra.dataset.promptTokens = String(s ? s.tokens.prompt : 0);
    extra.dataset.completionTokens = String(s ? s.tokens.completion : 0);
    const rate = document.querySelector('.figure[data-metric="error_rate"]');
    rate.classList.toggle("alarm", Boolean(s && s.error_rate > 0.05));
  }

  // -- charts ----------------------------------------------------------------------

  function el(tag, attrs, children) {
    const node = document.createElementNS(SVG_NS, tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value !== null && value !== undefined) node.setAttribute(key, String(value));
    }
    for (const child of children || []) node.appendChild(child);
    return node;
  }

  function tip(text) {
    const title = el("title");
    title.textContent = text;
    return title;
  }

  function frame(container, height, bottom) {
    const width = Math.max(280, Math.floor(container.clientWidth || 560));
    const svg = el("svg", { viewBox: "0 0 " + width + " " + height, width, height, role: "img" });
    container.replaceChildren(svg);
    return {
      svg,
      width,
      height,
      x0: PAD.left,
      x1: width - PAD.right,
      y0: height - (bottom || PAD.bottom),
      y1: PAD.top,
    };
  }

  // A round top for an axis holding ``value``, and the step between its 3-5 ticks.
  function niceScale(value) {
    const top = value > 0 ? value : 1;
    const raw = top / 4;
    const power = Math.pow(10, Math.floor(Math.log10(raw)));
    const step = [1, 2, 2.5, 5, 10].map((m) => m * power).find((s) => s >= raw);
    return { max: Math.ceil(top / step - 1e-9) * step, step };
  }

  // Prompt counts on a log scale, 0 and then powers of ten up to the decade holding
  // ``top``: one 110K-token prompt among thousands of short ones is what the prompt
  // chart is for, and on a linear scale its bar would be under a pixel high.
  function countAxis(f, top) {
    const decades = Math.max(1, Math.ceil(Math.log10(Math.max(top, 1)) - 1e-9));
    const span = Math.log10(1 + Math.pow(10, decades));
    const y = (v) => f.y0 - (Math.log10(1 + Math.max(0, v)) / span) * (f.y0 - f.y1);
    const group = el("g", { class: "tick" });
    if (top > 0) {
      for (let k = -1; k <= decades; k += 1) {
        const v = k < 0 ? 0 : Math.pow(10, k);
        group.appendChild(el("line", { class: "gridline", x1: f.x0, x2: f.x1, y1: y(v), y2: y(v) }));
        group.appendChild(el("text", { x: f.x0 - 6, y: y(v) + 4, "text-anchor": "end" }, [text(fmtCompact(v))]));
      }
    }
    f.svg.appendChild(group);
    declutter(group);
    return y;
  }

  function niceMax(value) {
    return niceScale(value).max;
  }

  function scaleY(f, max) {
    return (v) => f.y0 - (v / max) * (f.y0 - f.y1);
  }

  function timeAxis(f, points, step) {
    const t0 = points[0].t;
    const t1 = points[points.length - 1].t + step;
    const x = (t) => f.x0 + ((t - t0) / (t1 - t0)) * (f.x1 - f.x0);
    const span = t1 - t0;
    const every = [10, 30, 60, 120, 300, 600, 900, 1800].find((s) => span / s <= Math.max(3, Math.floor((f.x1 - f.x0) / 90))) || 3600;
    const axis = el("g", { class: "axis" });
    for (let t = Math.ceil(t0 / every) * every; t <= t1; t += every) {
      axis.appendChild(el("text", { x: x(t), y: f.height - 6, "text-anchor": "middle" }, [text(clock(t, span <= 120))]));
    }
    f.svg.appendChild(axis);
    declutter(axis);
    return { x, t0, t1, slot: (f.x1 - f.x0) / points.length };
  }

  // ``empty``: nothing to scale (every value 0 or missing), so only the baseline is
  // drawn; labels for a made-up range would read "0ms 0ms 1ms 1ms 1ms".
  function valueAxis(f, max, side, format, empty) {
    const y = scaleY(f, max);
    const { step } = niceScale(max);
    const group = el("g", { class: "tick" });
    const ticks = empty ? 0 : Math.round(max / step);
    let previous = null;
    for (let i = 0; i <= ticks; i += 1) {
      const v = step * i;
      const label = format(v);
      const shown = !empty && label !== previous;
      previous = label;
      if (side === "left") {
        group.appendChild(el("line", { class: "gridline", x1: f.x0, x2: f.x1, y1: y(v), y2: y(v) }));
        if (shown) group.appendChild(el("text", { x: f.x0 - 6, y: y(v) + 4, "text-anchor": "end" }, [text(label)]));
      } else if (shown && (i === 0 || i === ticks || (ticks % 2 === 0 && i === ticks / 2))) {
        group.appendChild(el("text", { x: f.x1 + 6, y: y(v) + 4, "text-anchor": "start" }, [text(label)]));
      }
    }
    f.svg.appendChild(group);
    declutter(group);
    return y;
  }

  // Drop each label whose box would touch one already kept: on a narrow screen long
  // labels would otherwise run together ("65.5K131.1K").  Needs the svg in the page.
  function declutter(group) {
    const kept = [];
    for (const label of [...group.querySelectorAll("text")]) {
      const b = label.getBBox();
      const clash = kept.some((k) =>
        b.x < k.x + k.width + 3 && k.x < b.x + b.width + 3 && b.y < k.y + k.height && k.y < b.y + b.height);
      if (clash) label.remove();
      else kept.push(b);
    }
  }

  // Keep a label inside the svg: flip it to the other side of its anchor point when
  // it would run off the right edge (a cap near the end of the axis).
  function keepInside(f, label, x, gap) {
    const box = label.getBBox();
    if (box.x + box.width > f.width - 1) {
      label.setAttribute("x", String(x - gap));
      label.setAttribute("text-anchor", "end");
    }
  }

  function text(value) {
    return document.createTextNode(value);
  }

  function polyline(points, cls) {
    // Consecutive non-null points form one segment: an empty slot is a gap, not a zero.
    const group = el("g");
    let run = [];
    const flush = () => {
      if (run.length > 1) group.appendChild(el("polyline", { class: "line " + cls, points: run.join(" ") }));
      run = [];
    };
    for (const p of points) {
      if (p === null) flush();
      else run.push(p[0].toFixed(1) + "," + p[1].toFixed(1));
    }
    flush();
    return group;
  }

  function noData(f, message) {
    f.svg.appendChild(el("text", { class: "empty-chart", x: (f.x0 + f.x1) / 2, y: (f.y0 + f.y1) / 2, "text-anchor": "middle" }, [text(message)]));
  }

  function chartData(svg, attrs) {
    for (const [key, value] of Object.entries(attrs)) svg.dataset[key] = value == null ? "" : String(value);
  }

  function drawLatency(container) {
    const { points, step_s: step } = state.series;
    const f = frame(container, 240);
    const latTop = Math.max(0, ...points.map((p) => p.latency_p95 || 0));
    const reqTop = Math.max(0, ...points.map((p) => p.requests));
    const yLat = valueAxis(f, niceMax(latTop), "left", fmtMsShort, latTop === 0);
    const yReq = valueAxis(f, niceMax(reqTop), "right", (v) => fmtInt(v), reqTop === 0);
    const tx = timeAxis(f, points, step);
    const bars = el("g");
    const hovers = el("g");
    const p50 = [];
    const p95 = [];
    const dots = el("g");
    for (const p of points) {
      const x = tx.x(p.t);
      const w = Math.max(1, tx.slot - 2);
      bars.appendChild(el("rect", {
        class: "bar requests", x: x + 1, width: w, y: yReq(p.requests), height: f.y0 - yReq(p.requests),
        "data-t": p.t, "data-requests": p.requests,
      }));
      const mid = x + tx.slot / 2;
      p50.push(p.latency_p50 == null ? null : [mid, yLat(p.latency_p50)]);
      p95.push(p.latency_p95 == null ? null : [mid, yLat(p.latency_p95)]);
      if (p.latency_p50 != null) {
        dots.appendChild(el("circle", { class: "dot p50", cx: mid, cy: yLat(p.latency_p50), r: 3, "data-t": p.t, "data-value": p.latency_p50 }));
        dots.appendChild(el("circle", { class: "dot p95", cx: mid, cy: yLat(p.latency_p95), r: 3, "data-t": p.t, "data-value": p.latency_p95 }));
      }
      hovers.appendChild(onSlotClick(el("rect", { class: "hover", x, width: tx.slot, y: f.y1, height: f.y0 - f.y1, "data-t": p.t }, [
        tip(clock(p.t, true) + " · " + fmtInt(p.requests) + " requests" +
          (p.latency_p50 == null ? "" : " · p50 " + fmtMs(p.latency_p50) + " · p95 " + fmtMs(p.latency_p95))),
      ]), p.t, step));
    }
    f.svg.append(bars, polyline(p50, "p50"), polyline(p95, "p95"), dots, hovers);
    const total = points.reduce((sum, p) => sum + p.requests, 0);
    if (total === 0) noData(f, "No requests in this window");
    chartData(f.svg, { chart: "latency", points: points.length, step: step, requests: total });
  }

  function drawTokens(container) {
    const { points, step_s: step } = state.series;
    const f = frame(container, 240);
    const tpmTop = Math.max(0, ...points.map((p) => p.tokens_per_minute || 0));
    const tprTop = Math.max(0, ...points.map((p) => p.tokens_per_request || 0));
    const yTpr = valueAxis(f, niceMax(tprTop), "left", fmtCompact, tprTop === 0);
    const yTpm = valueAxis(f, niceMax(tpmTop), "right", fmtCompact, tpmTop === 0);
    const tx = timeAxis(f, points, step);
    const bars = el("g");
    const hovers = el("g");
    const dots = el("g");
    const line = [];
    for (const p of points) {
      const x = tx.x(p.t);
      bars.appendChild(el("rect", {
        class: "bar tpm", x: x + 1, width: Math.max(1, tx.slot - 2), y: yTpm(p.tokens_per_minute), height: f.y0 - yTpm(p.tokens_per_minute),
        "data-t": p.t, "data-tokens": p.tokens, "data-tokens-per-minute": p.tokens_per_minute,
      }));
      const mid = x + tx.slot / 2;
      line.push(p.tokens_per_request == null ? null : [mid, yTpr(p.tokens_per_request)]);
      if (p.tokens_per_request != null) {
        dots.appendChild(el("circle", { class: "dot tpr", cx: mid, cy: yTpr(p.tokens_per_request), r: 3, "data-t": p.t, "data-value": p.tokens_per_request }));
      }
      hovers.appendChild(onSlotClick(el("rect", { class: "hover", x, width: tx.slot, y: f.y1, height: f.y0 - f.y1, "data-t": p.t }, [
        tip(clock(p.t, true) + " · " + fmtInt(p.tokens) + " tokens (" + fmtNum(p.tokens_per_minute) + "/min)" +
          (p.tokens_per_request == null ? "" : " · " + fmtNum(p.tokens_per_request) + " per request")),
      ]), p.t, step));
    }
    f.svg.append(bars, polyline(line, "tpr"), dots, hovers);
    const tokens = points.reduce((sum, p) => sum + p.tokens, 0);
    if (tokens === 0) noData(f, "No tokens in this window");
    chartData(f.svg, { chart: "tokens", points: points.length, step: step, tokens });
  }

  function promptRule() {
    // The rule that watches prompt length (SPEC's prompt_length_spike, or any renamed one).
    return state.alerts.rules.find((r) => r.config && r.config.metric === "prompt_tokens" && r.state !== "disabled") || null;
  }

  function drawPrompt(container) {
    const hist = state.series.prompt_histogram;
    const rule = promptRule();
    const cap = rule ? rule.config.hard_cap : null;
    const threshold = rule && rule.config.stat === "p95" ? rule.threshold : null;
    // Room under the bin labels for the axis title.
    const f = frame(container, 250, PAD.bottom + 16);
    const bins = hist.bins;
    const y = countAxis(f, Math.max(0, ...bins.map((b) => b.count)));
    const slot = bins.length ? (f.x1 - f.x0) / bins.length : 0;
    // A value's position on the log2 axis: its bin, plus how far into the bin it is.
    const xOf = (v) => {
      if (!bins.length) return null;
      for (let i = 0; i < bins.length; i += 1) {
        const b = bins[i];
        if (v < b.hi || i === bins.length - 1) {
          const frac = b.lo === 0 ? v : Math.log2(Math.max(v, b.lo) / b.lo);
          return f.x0 + slot * (i + Math.min(1, Math.max(0, frac)));
        }
      }
      return null;
    };
    const limits = [cap, threshold].filter((v) => v != null);
    const limit = limits.length ? Math.min(...limits) : null;
    const spiking = limit != null && hist.max != null && hist.max > limit;
    const group = el("g");
    const labels = el("g", { class: "axis" });
    const every = Math.max(1, Math.ceil(bins.length / Math.max(2, Math.floor((f.x1 - f.x0) / 60))));
    bins.forEach((b, i) => {
      const spike = spiking && b.count > 0 && b.hi > limit;
      group.appendChild(el("rect", {
        class: "bar prompt" + (spike ? " spike" : ""), x: f.x0 + slot * i + 1, width: Math.max(1, slot - 2),
        y: y(b.count), height: f.y0 - y(b.count),
        "data-lo": b.lo, "data-hi": b.hi, "data-count": b.count, "data-spike": spike ? "true" : "false",
      }, [tip(fmtInt(b.lo) + "–" + fmtInt(b.hi) + " tokens: " + fmtInt(b.count) + " prompt" + (b.count === 1 ? "" : "s"))]));
      if (i % every === 0) labels.appendChild(el("text", { x: f.x0 + slot * i, y: f.y0 + 16, "text-anchor": "middle" }, [text(fmtPow2(b.lo))]));
    });
    if (bins.length) labels.appendChild(el("text", { x: f.x1, y: f.y0 + 16, "text-anchor": "middle" }, [text(fmtPow2(bins[bins.length - 1].hi))]));
    f.svg.append(group, labels);
    declutter(labels);
    if (bins.length) {
      const mid = (f.y0 + f.y1) / 2;
      f.svg.appendChild(el("g", { class: "axis-titles" }, [
        el("text", { class: "axis-title", x: (f.x0 + f.x1) / 2, y: f.height - 4, "text-anchor": "middle" }, [text("prompt tokens (log scale)")]),
        el("text", { class: "axis-title", x: 11, y: mid, "text-anchor": "middle", transform: "rotate(-90 11 " + mid + ")" }, [text("prompts (log scale)")]),
      ]));
    }
    const marks = [["p95", hist.p95, "p95"], ["cap", cap, "cap"], ["threshold", threshold, "spike"]];
    let offset = 0;
    for (const [cls, value, name] of marks) {
      if (value == null || !bins.length) continue;
      const inRange = value <= bins[bins.length - 1].hi;
      if (!inRange) continue;
      const x = xOf(value);
      f.svg.appendChild(el("line", { class: "marker-line " + cls, x1: x, x2: x, y1: f.y1, y2: f.y0, "data-marker": cls, "data-value": value }));
      const label = el("text", { class: "marker-label " + cls, x: x + 4, y: f.y1 + 10 + offset, "text-anchor": "start" }, [text(name + " " + fmtInt(value))]);
      f.svg.appendChild(label);
      keepInside(f, label, x, 4);
      offset += 13;
    }
    if (!hist.count) noData(f, "No prompts in this window");
    chartData(f.svg, {
      chart: "prompt", count: hist.count, p50: hist.p50, p95: hist.p95, max: hist.max, xScale: "log", yScale: "log",
      hardCap: cap, spikeThreshold: threshold, spikes: spiking ? "true" : "false",
    });
    const parts = [];
    if (hist.count) parts.push("p95 " + fmtInt(hist.p95) + " · max " + fmtInt(hist.max) + " tokens");
    if (cap != null) parts.push("hard cap " + fmtInt(cap) + (spiking && hist.max > cap ? " (exceeded)" : ""));
    if (rule && rule.config.factor != null) {
      parts.push(threshold != null ? "spike above " + fmtInt(threshold) : "spike threshold: no baseline yet");
    }
    document.getElementById("prompt-note").textContent = parts.join(" · ");
  }

  function alertEvents() {
    // alert.fired / alert.resolved transitions, newest first, with the time each happened.
    return state.alerts.recent.map((a) => ({
      kind: a.event === "alert.resolved" ? "resolved" : "fired",
      at: Date.parse(a.event === "alert.resolved" ? a.resolved_at : a.fired_at) / 1000,
      alert: a.alert,
      severity: a.severity,
      message: a.message,
    }));
  }

  function drawErrors(container) {
    const { points, step_s: step } = state.series;
    const f = frame(container, 240);
    const rule = state.alerts.rules.find((r) => r.config && r.config.metric === "error_rate" && r.config.threshold != null);
    const threshold = rule ? rule.config.threshold : null;
    const max = niceMax(Math.max(0.05, threshold || 0, ...points.map((p) => p.error_rate || 0)));
    const y = valueAxis(f, Math.min(1, max), "left", (v) => fmtPct(v, Math.abs(v * 100 - Math.round(v * 100)) > 1e-6 ? 1 : 0));
    const tx = timeAxis(f, points, step);
    const line = [];
    const dots = el("g");
    const hovers = el("g");
    for (const p of points) {
      const mid = tx.x(p.t) + tx.slot / 2;
      line.push(p.error_rate == null ? null : [mid, y(p.error_rate)]);
      if (p.error_rate != null) {
        dots.appendChild(el("circle", { class: "dot error", cx: mid, cy: y(p.error_rate), r: 3, "data-t": p.t, "data-value": p.error_rate, "data-errors": p.errors, "data-requests": p.requests }));
      }
      hovers.appendChild(onSlotClick(el("rect", { class: "hover", x: tx.x(p.t), width: tx.slot, y: f.y1, height: f.y0 - f.y1, "data-t": p.t }, [
        tip(clock(p.t, true) + " · " + fmtInt(p.errors) + " of " + fmtInt(p.requests) + " failed" + (p.error_rate == null ? "" : " (" + fmtPct(p.error_rate) + ")")),
      ]), p.t, step));
    }
    // Throttled requests (the proxy's own 429s, not upstream errors) as a share of the
    // slot's requests, beside the error rate; requests served after a failover as marks.
    const throttledBars = el("g");
    const failovers = el("g");
    let throttled = 0;
    let failedOver = 0;
    for (const p of points) {
      const x = tx.x(p.t);
      if (p.throttled) {
        throttled += p.throttled;
        const share = Math.min(1, p.throttled / Math.max(1, p.requests));
        throttledBars.appendChild(el("rect", {
          class: "bar throttled", x: x + 1, width: Math.max(1, tx.slot - 2), y: y(Math.min(share, max)), height: f.y0 - y(Math.min(share, max)),
          "data-t": p.t, "data-throttled": p.throttled,
        }, [tip(clock(p.t, true) + " · " + fmtInt(p.throttled) + " throttled by a limit")]));
      }
      if (p.failovers) {
        failedOver += p.failovers;
        const mid = x + tx.slot / 2;
        failovers.appendChild(el("path", {
          class: "marker failover", d: "M" + mid + "," + (f.y0 - 12) + " l5,5 l-5,5 l-5,-5 Z", "data-t": p.t, "data-failovers": p.failovers,
        }, [tip(clock(p.t, true) + " · " + fmtInt(p.failovers) + " request" + (p.failovers === 1 ? "" : "s") + " served by a fallback")]));
      }
    }
    f.svg.append(throttledBars, polyline(line, "error"), dots, failovers);
    if (threshold != null && threshold <= max) {
      f.svg.appendChild(el("line", { class: "marker-line threshold", x1: f.x0, x2: f.x1, y1: y(threshold), y2: y(threshold), "data-marker": "threshold", "data-value": threshold }));
      f.svg.appendChild(el("text", { class: "marker-label threshold", x: f.x1 + 4, y: y(threshold) + 4 }, [text(fmtPct(threshold, 0))]));
    }
    const shown = [];
    for (const event of alertEvents()) {
      if (!(event.at >= tx.t0 && event.at <= tx.t1 + step)) continue;
      const x = Math.min(f.x1, tx.x(event.at));
      const shape = event.kind === "fired"
        ? el("path", { d: "M" + (x - 5) + "," + (f.y1 + 9) + " L" + x + "," + (f.y1 - 1) + " L" + (x + 5) + "," + (f.y1 + 9) + " Z" })
        : el("circle", { cx: x, cy: f.y1 + 4, r: 4.5 });
      shape.setAttribute("class", "marker " + event.kind);
      shape.setAttribute("data-alert", event.alert);
      shape.setAttribute("data-kind", event.kind);
      shape.appendChild(tip(clock(event.at, true) + " " + event.kind + ": " + event.message));
      f.svg.append(el("line", { class: "marker-line " + event.kind, x1: x, x2: x, y1: f.y1 + 8, y2: f.y0 }), shape);
      shown.push(event);
    }
    f.svg.appendChild(hovers);
    const requests = points.reduce((sum, p) => sum + p.requests, 0);
    const errors = points.reduce((sum, p) => sum + p.errors, 0);
    if (requests === 0) noData(f, "No requests in this window");
    chartData(f.svg, { chart: "errors", points: points.length, requests, errors, markers: shown.length, threshold, throttled, failovers: failedOver });
    renderAlertList();
  }

  function renderAlertList() {
    const list = document.getElementById("alert-list");
    const events = alertEvents().slice(0, 20);
    if (!events.length) {
      const li = document.createElement("li");
      li.className = "none";
      li.textContent = "No alert has fired or resolved yet.";
      list.replaceChildren(li);
      return;
    }
    list.replaceChildren(
      ...events.map((event) => {
        const li = document.createElement("li");
        li.className = event.kind;
        li.dataset.alert = event.alert;
        li.dataset.kind = event.kind;
        const when = span("when", clock(event.at, true));
        const kind = span("kind", (event.kind === "fired" ? "▲ fired" : "● resolved"));
        const name = span("name", event.alert + " (" + event.severity + ")");
        const msg = span("msg", event.message);
        li.append(when, kind, name, msg);
        return li;
      }),
    );
  }

  function span(cls, content) {
    const node = document.createElement("span");
    node.className = cls;
    node.textContent = content;
    return node;
  }

  // -- spend, models, risk, upstreams ------------------------------------------------

  // Rows of the spend breakdown for one dimension ("api_key", "user" or every "tag:*"),
  // largest spend first: cost, then tokens, then requests.
  function spendRows(by) {
    const windows = state.stats.breakdown || {};
    const dimensions = windows[state.window] || {};
    const rows = [];
    for (const [dimension, values] of Object.entries(dimensions)) {
      const wanted = by === "tag" ? dimension.startsWith("tag:") : dimension === by;
      if (!wanted) continue;
      for (const [value, f] of Object.entries(values)) rows.push({ dimension, value, ...f });
    }
    rows.sort((a, b) => b.cost_usd - a.cost_usd || b.total_tokens - a.total_tokens || b.requests - a.requests);
    return rows;
  }

  function cell(content, cls) {
    const td = document.createElement("td");
    if (cls) td.className = cls;
    if (content instanceof Node) td.appendChild(content);
    else td.textContent = content;
    return td;
  }

  function headerRow(names) {
    const tr = document.createElement("tr");
    for (const name of names) {
      const th = document.createElement("th");
      th.scope = "col";
      th.textContent = name;
      tr.appendChild(th);
    }
    const thead = document.createElement("thead");
    thead.appendChild(tr);
    return thead;
  }

  function fillTable(table, names, rows, empty) {
    const tbody = document.createElement("tbody");
    if (!rows.length) {
      const tr = document.createElement("tr");
      const td = cell(empty, "none");
      td.colSpan = names.length;
      tr.appendChild(td);
      tbody.appendChild(tr);
    }
    for (const row of rows) tbody.appendChild(row);
    const head = headerRow(names);
    // A column of figures is right-aligned, its heading too.
    if (rows.length) {
      [...rows[0].children].forEach((td, i) => {
        if (td.classList.contains("num")) head.rows[0].cells[i].classList.add("num");
      });
    }
    table.replaceChildren(head, tbody);
  }

  function shareBar(share) {
    const bar = document.createElement("span");
    bar.className = "share";
    const fill = document.createElement("span");
    fill.style.width = Math.max(0, Math.min(100, share * 100)).toFixed(1) + "%";
    bar.appendChild(fill);
    return bar;
  }

  function renderSpend() {
    const by = state.spendBy;
    const rows = spendRows(by);
    const throttled = rows.some((r) => r.throttled);
    const names = [by === "api_key" ? "Key (hash)" : by === "user" ? "User" : "Tag", "Requests", "Tokens", "Cost", "Errors"];
    if (throttled) names.push("Throttled");
    const top = rows.slice(0, 10);
    const totalCost = rows.reduce((sum, r) => sum + r.cost_usd, 0);
    fillTable(document.getElementById("spend-table"), names, top.map((r) => {
      const tr = document.createElement("tr");
      tr.className = "link";
      tr.dataset.dimension = r.dimension;
      tr.dataset.value = r.value;
      tr.dataset.requests = String(r.requests);
      tr.dataset.totalTokens = String(r.total_tokens);
      tr.dataset.costUsd = String(r.cost_usd);
      const label = by === "tag" ? r.dimension.slice(4) + "=" + r.value : r.value;
      tr.append(
        cell(label, "name"), cell(fmtInt(r.requests), "num"), cell(fmtCompact(r.total_tokens), "num"),
        cell(fmtUsd(r.cost_usd), "num"), cell(r.errors ? fmtPct(r.error_rate) : "–", "num"),
      );
      if (throttled) tr.appendChild(cell(fmtInt(r.throttled || 0), "num"));
      tr.title = "Show this " + (by === "api_key" ? "key" : by) + "'s requests";
      tr.addEventListener("click", () => {
        const filter = by === "api_key" ? { api_key_hash: r.value } : by === "user" ? { user: r.value } : { tag: r.dimension.slice(4) + ":" + r.value };
        setFilters(filter);
      });
      return tr;
    }), "No " + (by === "api_key" ? "keys" : by === "user" ? "users" : "tags") + " in this window");
    document.getElementById("spend-note").textContent = rows.length
      ? rows.length + " in this window" + (totalCost ? " · " + fmtUsd(totalCost) + " in all" : "") + " · click a row for its requests"
      : "";
  }

  function renderModelMix() {
    const models = state.stats.windows[state.window].models;
    const entries = Object.entries(models);
    const total = entries.reduce((sum, [, m]) => sum + m.requests, 0);
    fillTable(document.getElementById("models-table"), ["Model", "Requests", "Share", "Tokens", "Cost", "Errors"], entries.map(([name, m]) => {
      const tr = document.createElement("tr");
      tr.className = "link";
      tr.dataset.model = name;
      tr.dataset.requests = String(m.requests);
      tr.dataset.totalTokens = String(m.tokens.total);
      tr.dataset.costUsd = m.cost_usd.sum == null ? "" : String(m.cost_usd.sum);
      tr.append(
        cell(name, "name"), cell(fmtInt(m.requests), "num"), cell(shareBar(total ? m.requests / total : 0)),
        cell(fmtCompact(m.tokens.total), "num"), cell(fmtUsd(m.cost_usd.sum), "num"),
        cell(m.errors ? fmtPct(m.error_rate) : "–", "num"),
      );
      tr.title = "Show this model's requests";
      tr.addEventListener("click", () => setFilters({ model: name }));
      return tr;
    }), "No requests in this window");
  }

  const FLAGS = ["long_prompt", "jailbreak", "pii", "secret"];

  function flagNames(points, totals) {
    const names = new Set(FLAGS.filter((f) => totals[f]));
    for (const p of points) for (const f of Object.keys(p.flags || {})) names.add(f);
    return [...names].sort((a, b) => FLAGS.indexOf(a) - FLAGS.indexOf(b));
  }

  function drawRisk(container) {
    const { points, step_s: step } = state.series;
    const s = scope();
    const totals = (s && s.risk_flags) || {};
    const names = flagNames(points, totals);
    const f = frame(container, 180);
    const top = Math.max(0, ...points.map((p) => Object.values(p.flags || {}).reduce((a, b) => a + b, 0)));
    const y = valueAxis(f, niceMax(top), "left", (v) => fmtInt(v), top === 0);
    const tx = timeAxis(f, points, step);
    const bars = el("g");
    for (const p of points) {
      let base = f.y0;
      for (const name of names) {
        const count = (p.flags || {})[name] || 0;
        if (!count) continue;
        const h = f.y0 - y(count);
        const rect = el("rect", {
          class: "bar flag flag-" + FLAGS.indexOf(name), x: tx.x(p.t) + 1, width: Math.max(1, tx.slot - 2), y: base - h, height: h,
          "data-t": p.t, "data-flag": name, "data-count": count,
        }, [tip(clock(p.t, true) + " · " + name + ": " + fmtInt(count))]);
        rect.addEventListener("click", () => setFilters({ flag: name }, { since: p.t, until: p.t + step }));
        bars.appendChild(rect);
        base -= h;
      }
    }
    f.svg.appendChild(bars);
    const flagged = names.reduce((sum, n) => sum + (totals[n] || 0), 0);
    if (!flagged) noData(f, "No flagged prompts in this window");
    chartData(f.svg, { chart: "risk", points: points.length, flagged });
    const legend = document.getElementById("risk-legend");
    legend.replaceChildren(...names.map((name) => {
      const key = span("key flag-" + FLAGS.indexOf(name), name + " " + fmtInt(totals[name] || 0));
      key.dataset.flag = name;
      key.dataset.count = String(totals[name] || 0);
      return key;
    }));
    // Who sent them: the users (and keys) whose prompts were flagged, from the breakdown.
    const rows = [];
    const dimensions = (state.stats.breakdown || {})[state.window] || {};
    for (const dimension of ["user", "api_key"]) {
      for (const [value, r] of Object.entries(dimensions[dimension] || {})) {
        if (r.flagged) rows.push({ dimension, value, flagged: r.flagged, requests: r.requests });
      }
    }
    rows.sort((a, b) => b.flagged - a.flagged);
    fillTable(document.getElementById("risk-table"), ["Flagged by", "Flagged", "of requests"], rows.slice(0, 8).map((r) => {
      const tr = document.createElement("tr");
      tr.className = "link";
      tr.dataset.dimension = r.dimension;
      tr.dataset.value = r.value;
      tr.dataset.flagged = String(r.flagged);
      tr.append(cell((r.dimension === "user" ? "user " : "key ") + r.value, "name"), cell(fmtInt(r.flagged), "num"), cell(fmtInt(r.requests), "num"));
      tr.addEventListener("click", () => setFilters(r.dimension === "user" ? { user: r.value } : { api_key_hash: r.value }));
      return tr;
    }), "No flagged prompts in this window");
  }

  const BREAKER_STATES = { closed: "closed", half_open: "half-open", "half-open": "half-open", open: "open" };

  const LIMIT_UNITS = { requests: "req/min", tokens: "tokens/min", cost: "USD/day", concurrent: "in flight" };

  function renderUpstreams() {
    const table = document.getElementById("upstreams-table");
    const note = document.getElementById("upstreams-note");
    const upstreams = state.upstreams && state.upstreams.upstreams;
    if (upstreams) {
      fillTable(table, ["Upstream", "Breaker", "Error rate", "Latency", "Tries"], upstreams.map((u) => {
        const tr = document.createElement("tr");
        const label = BREAKER_STATES[u.state] || String(u.state);
        tr.dataset.upstream = u.name;
        tr.dataset.state = u.state;
        tr.dataset.errorRate = u.error_rate == null ? "" : String(u.error_rate);
        const tries = Object.values(u.attempts || {}).reduce((a, b) => a + b, 0);
        const state = span("state " + u.state, label + (u.state === "open" && u.reopen_in_s != null ? " · trial in " + Math.ceil(u.reopen_in_s) + " s" : ""));
        tr.append(cell(u.name, "name"), cell(state),
          cell(u.error_rate == null ? "–" : fmtPct(u.error_rate), "num"), cell(fmtMs(u.latency_ms), "num"), cell(fmtInt(tries), "num"));
        if (u.last_error) tr.title = "last error: " + u.last_error;
        return tr;
      }), "No upstream configured");
      const ready = state.ready;
      note.textContent = ready ? "Readiness: " + (ready.status === "ready" ? "ready" : "not ready") + (ready.reason ? " (" + ready.reason + ")" : "") : "";
    } else {
      const ready = state.ready;
      const tr = document.createElement("tr");
      const label = ready && ready.status === "ready" ? "ready" : "not ready";
      tr.dataset.upstream = "upstream";
      tr.dataset.state = label;
      tr.append(cell("upstream", "name"), cell(span("state " + (label === "ready" ? "closed" : "open"), label)), cell(ready ? ready.reason || "" : "–"));
      fillTable(table, ["Upstream", "Readiness", "Why"], [tr], "");
      note.textContent = "One upstream, no failover configured: its readiness, as /readyz answers.";
    }
    const limits = state.limits && state.limits.rules;
    const limitsTable = document.getElementById("limits-table");
    limitsTable.hidden = !limits;
    if (limits) {
      // One row per limit of each rule: its busiest consumer and how much of the limit it
      // used; a rule waiting on an alert says so instead of looking idle.
      const rows = [];
      for (const rule of limits) {
        for (const limit of rule.limits || []) {
          const top = (limit.top || [])[0];
          const ratio = top ? top.ratio : null;
          const tr = document.createElement("tr");
          tr.dataset.rule = rule.name;
          tr.dataset.kind = limit.kind;
          tr.dataset.ratio = ratio == null ? "" : String(ratio);
          const name = rule.name + (rule.active ? "" : " · off until " + rule.when_alert + " fires");
          tr.append(cell(name, "name"), cell(fmtNum(limit.limit) + " " + (LIMIT_UNITS[limit.kind] || limit.kind)),
            cell(top ? String(top.value) : "–", "name"),
            cell(ratio == null ? "–" : fmtPct(ratio, 0), "num" + (ratio >= 1 ? " over" : ratio >= 0.8 ? " near" : "")),
            cell(fmtInt(rule.throttled || 0), "num"));
          rows.push(tr);
        }
      }
      fillTable(limitsTable, ["Limit", "At most", "Top consumer", "Used", "Refused"], rows, "No limit in use");
    }
  }

  // -- recent requests -----------------------------------------------------------------

  const FILTER_NAMES = ["model", "user", "api_key_hash", "tag", "outcome", "flag", "min_latency_ms"];
  const PAGE_SIZE = 50;

  function pageParams() {
    return state.cursor == null ? { limit: PAGE_SIZE } : { limit: PAGE_SIZE, cursor: state.cursor };
  }

  function firstPage() {
    state.cursor = null;
    state.newer = [];
  }

  function requestsQuery(extra) {
    const query = new URLSearchParams();
    for (const [key, value] of Object.entries(state.filters)) if (value !== "" && value != null) query.set(key, value);
    if (state.timeFilter) {
      query.set("since", String(state.timeFilter.since));
      query.set("until", String(state.timeFilter.until));
    }
    for (const [key, value] of Object.entries(extra || {})) query.set(key, String(value));
    return query;
  }

  // Filters from a click elsewhere (a spend row, a chart bar): they replace the current
  // ones, and the table is brought into view.
  function setFilters(filters, timeFilter) {
    state.filters = { ...filters };
    state.timeFilter = timeFilter || null;
    firstPage();
    const form = document.getElementById("request-filters");
    for (const name of FILTER_NAMES) form.elements[name].value = state.filters[name] || "";
    refresh();
    document.getElementById("requests").scrollIntoView({ block: "start", behavior: "smooth" });
  }

  function onFilterSubmit(event) {
    event.preventDefault();
    const form = event.target;
    const filters = {};
    for (const name of FILTER_NAMES) {
      const value = form.elements[name].value.trim();
      if (value) filters[name] = value;
    }
    state.filters = filters;
    firstPage();
    refresh();
  }

  function renderRequests() {
    const table = document.getElementById("requests-table");
    const section = document.getElementById("requests");
    const body = state.requests;
    const chip = document.getElementById("time-filter");
    chip.hidden = !state.timeFilter;
    if (state.timeFilter) chip.querySelector("span").textContent = "Between " + clock(state.timeFilter.since, true) + " and " + clock(state.timeFilter.until, true);
    if (!body) {
      fillTable(table, ["Recent requests"], [], "This proxy keeps no recent requests (dashboard.recent_requests).");
      return;
    }
    const records = body.requests || [];
    const names = ["Time", "Model", "User", "Outcome", "Latency", "TTFT", "Tokens", "Cost", "Flags", "Upstream", "Tries"];
    fillTable(table, names, records.map((r) => {
      const tr = document.createElement("tr");
      tr.className = "link " + (r.outcome === "success" ? "ok" : "bad");
      tr.dataset.requestId = r.request_id;
      tr.dataset.outcome = r.outcome;
      const at = Date.parse(r.timestamp) / 1000;
      tr.append(
        cell(isNaN(at) ? "–" : clock(at, true), "num"), cell(r.model || r.response_model || "–", "name"), cell(r.user || "–", "name"),
        cell((r.status_code || "–") + " " + r.outcome), cell(fmtMs(r.latency_ms), "num"), cell(fmtMs(r.ttft_ms), "num"),
        cell(fmtInt(r.total_tokens), "num"), cell(fmtUsd(r.cost_usd), "num"), cell((r.risk_flags || []).join(", ")),
        cell(r.upstream || "–", "name"), cell(fmtInt(r.attempts == null ? 1 : r.attempts), "num"),
      );
      tr.addEventListener("click", () => showDetail(r));
      return tr;
    }), "No request matches these filters");
    const total = body.total == null ? records.length : body.total;
    section.dataset.total = String(total);
    section.dataset.shown = String(records.length);
    const before = state.newer.length * PAGE_SIZE;
    document.getElementById("page-info").textContent = total
      ? (before + 1) + "–" + (before + records.length) + " of " + fmtInt(total) + (state.cursor == null ? " · newest first" : "")
      : "";
    document.getElementById("page-newer").disabled = state.cursor == null;
    document.getElementById("page-older").disabled = body.next == null;
  }

  function showDetail(record) {
    const detail = document.getElementById("request-detail");
    document.getElementById("detail-id").textContent = record.request_id || "";
    document.getElementById("detail-body").textContent = JSON.stringify(record, null, 2);
    detail.dataset.requestId = record.request_id || "";
    detail.hidden = false;
    detail.scrollIntoView({ block: "nearest" });
  }

  async function exportRequests() {
    const headers = {};
    const token = sessionStorage.getItem(TOKEN_KEY);
    if (token) headers.Authorization = "Bearer " + token;
    const query = requestsQuery({ format: "jsonl" });
    const response = await fetch("/pulse/requests?" + query.toString(), { headers, cache: "no-store", credentials: "same-origin" });
    if (!response.ok) {
      setStatus("Export failed: /pulse/requests answered " + response.status, true);
      return;
    }
    const url = URL.createObjectURL(await response.blob());
    const link = document.createElement("a");
    link.href = url;
    link.download = "pulse-requests.jsonl";
    document.body.appendChild(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(url), 1000);
  }

  function wireRequests() {
    document.getElementById("request-filters").addEventListener("submit", onFilterSubmit);
    document.getElementById("filters-clear").addEventListener("click", () => setFilters({}));
    document.getElementById("requests-export").addEventListener("click", () => exportRequests());
    document.querySelector("#time-filter button").addEventListener("click", () => {
      state.timeFilter = null;
      firstPage();
      refresh();
    });
    document.getElementById("page-older").addEventListener("click", () => {
      if (!state.requests || state.requests.next == null) return;
      state.newer.push(state.cursor);
      state.cursor = state.requests.next;
      refresh();
    });
    document.getElementById("page-newer").addEventListener("click", () => {
      state.cursor = state.newer.length ? state.newer.pop() : null;
      refresh();
    });
    document.getElementById("detail-close").addEventListener("click", () => { document.getElementById("request-detail").hidden = true; });
    for (const button of document.querySelectorAll("[data-spend]")) {
      button.addEventListener("click", () => {
        state.spendBy = button.dataset.spend;
        for (const other of document.querySelectorAll("[data-spend]")) other.setAttribute("aria-pressed", String(other === button));
        renderSpend();
      });
    }
  }

  // -- formatting ------------------------------------------------------------------

  const intFormat = new Intl.NumberFormat("en-US", { maximumFractionDigits: 0 });
  const numFormat = new Intl.NumberFormat("en-US", { maximumFractionDigits: 1 });
  const compactFormat = new Intl.NumberFormat("en-US", { notation: "compact", maximumFractionDigits: 1 });

  function fmtInt(v) { return v == null ? "–" : intFormat.format(v); }
  function fmtNum(v) { return v == null ? "–" : (Math.abs(v) >= 100 ? intFormat : numFormat).format(v); }
  function fmtCompact(v) { return v == null ? "–" : compactFormat.format(v); }
  // Prompt bins are powers of two: named as context windows are (128K is 131,072).
  function fmtPow2(v) { return v >= 1048576 ? v / 1048576 + "M" : v >= 1024 ? v / 1024 + "K" : String(v); }
  function fmtPct(v, digits) {
    if (v == null) return "–";
    const d = digits === undefined ? 1 : digits;
    return (v * 100).toFixed(d) + " %";
  }
  function fmtMs(v) {
    if (v == null) return "–";
    if (v >= 10000) return (v / 1000).toFixed(1) + " s";
    return (v >= 100 ? intFormat.format(v) : numFormat.format(v)) + " ms";
  }
  function fmtMsShort(v) {
    if (v >= 1000) return numFormat.format(v / 1000) + "s";
    return (v >= 10 ? intFormat : numFormat).format(v) + "ms";
  }
  function fmtUsd(v) {
    if (v == null) return "–";
    if (v === 0) return "$0";
    return "$" + (v >= 1 ? v.toFixed(2) : v.toPrecision(2));
  }
  function clock(seconds, withSeconds) {
    const d = new Date(seconds * 1000);
    const pad = (n) => String(n).padStart(2, "0");
    return pad(d.getHours()) + ":" + pad(d.getMinutes()) + (withSeconds ? ":" + pad(d.getSeconds()) : "");
  }

  // -- wiring ----------------------------------------------------------------------

  function fillEmptyState() {
    const origin = window.location.origin;
    document.getElementById("empty-env").textContent = "export OPENAI_BASE_URL=" + origin + "/v1";
    document.getElementById("empty-curl").textContent =
      "curl -s " + origin + "/v1/chat/completions \\\n" +
      '  -H "Authorization: Bearer $OPENAI_API_KEY" \\\n' +
      '  -H "Content-Type: application/json" \\\n' +
      '  -d \'{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hello!"}]}\'';
  }

  function selectWindow(name) {
    state.window = name;
    for (const button of document.querySelectorAll("[data-window]")) {
      button.setAttribute("aria-pressed", String(button.dataset.window === name));
    }
    refresh();
  }

  function start() {
    fillEmptyState();
    for (const button of document.querySelectorAll("[data-window]")) {
      button.addEventListener("click", () => selectWindow(button.dataset.window));
    }
    document.getElementById("model-filter").addEventListener("change", (event) => {
      state.model = event.target.value;
      refresh();
    });
    document.getElementById("auth-form").addEventListener("submit", onTokenSubmit);
    wireRequests();
    let resizeTimer = null;
    window.addEventListener("resize", () => {
      clearTimeout(resizeTimer);
      resizeTimer = setTimeout(() => { if (state.series && document.body.dataset.state === "ready") drawCharts(); }, 150);
    });
    refresh();
  }

  document.addEventListener("DOMContentLoaded", start);
})();
