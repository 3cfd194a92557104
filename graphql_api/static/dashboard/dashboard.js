// The live dashboard: topViewed and viewCount over Server-Sent Events (GET /graphql/stream).
"use strict";
(function () {
  const STREAM = "/graphql/stream";
  const TOP = "subscription Top($first: Int!, $window: ViewWindow!) {" +
    " topViewed(first: $first, window: $window) { rank statementId slug title viewCount } }";
  const COUNT = "subscription Count($id: ID!) { viewCount(statementId: $id) { statementId viewCount at } }";
  const MAX_POINTS = 240;
  const $ = (id) => document.getElementById(id);
  let topSource = null;
  let countSource = null;
  let chosen = null;
  let points = [];

  function subscribe(query, variables, onData) {
    const url = STREAM + "?query=" + encodeURIComponent(query) +
      "&variables=" + encodeURIComponent(JSON.stringify(variables));
    const source = new EventSource(url);
    source.addEventListener("next", (event) => {
      const result = JSON.parse(event.data);
      if (result.errors) { setStatus("error", result.errors[0].message); return; }
      setStatus("live", "live");
      onData(result.data);
    });
    source.addEventListener("complete", () => source.close());
    source.onerror = () => setStatus("error", "reconnecting…");
    return source;
  }

  function setStatus(state, text) {
    const el = $("status");
    el.dataset.state = state;
    el.textContent = text;
  }

  function renderTop(entries) {
    const body = $("top").tBodies[0];
    body.replaceChildren(...entries.map((e) => {
      const row = document.createElement("tr");
      row.dataset.id = e.statementId;
      if (e.statementId === chosen) row.classList.add("chosen");
      for (const [text, cls] of [[e.rank, ""], [e.title, "title"], [e.viewCount, "num views"]]) {
        const cell = document.createElement("td");
        cell.textContent = String(text);
        if (cls) cell.className = cls;
        row.append(cell);
      }
      row.addEventListener("click", () => follow(e.statementId, e.title));
      return row;
    }));
    $("top-updated").textContent = "updated " + new Date().toLocaleTimeString();
    if (chosen === null && entries.length) follow(entries[0].statementId, entries[0].title);
  }

  function startTop() {
    if (topSource) topSource.close();
    topSource = subscribe(TOP, { first: 10, window: $("window").value },
      (data) => renderTop(data.topViewed));
  }

  function follow(id, title) {
    chosen = id;
    points = [];
    $("statement").value = id;
    $("chosen-title").textContent = title || id;
    $("chosen-count").textContent = "–";
    $("chart").replaceChildren();
    for (const row of $("top").tBodies[0].rows) row.classList.toggle("chosen", row.dataset.id === id);
    if (countSource) countSource.close();
    countSource = subscribe(COUNT, { id }, (data) => {
      const update = data.viewCount;
      $("chosen-count").textContent = String(update.viewCount);
      points.push({ t: Date.now(), n: update.viewCount });
      if (points.length > MAX_POINTS) points.shift();
      drawChart();
    });
  }

  function svg(tag, attrs, text) {
    const el = document.createElementNS("http://www.w3.org/2000/svg", tag);
    for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
    if (text !== undefined) el.textContent = text;
    return el;
  }

  // Round tick steps (1, 2 or 5 times a power of ten) giving about `count` ticks over `span`.
  function step(span, count, integer) {
    const raw = span / count;
    const power = Math.pow(10, Math.floor(Math.log10(raw)));
    const f = raw / power;
    const s = (f <= 1 ? 1 : f <= 2 ? 2 : f <= 5 ? 5 : 10) * power;
    return integer ? Math.max(1, Math.round(s)) : s;
  }

  function ticks(lo, hi, by) {
    const out = [];
    for (let v = Math.ceil(lo / by) * by; v <= hi + by * 1e-9; v += by) out.push(+v.toFixed(6));
    return out;
  }

  const TIME_STEPS = [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600].map((s) => s * 1000);
  const count = new Intl.NumberFormat();
  const rate = new Intl.NumberFormat(undefined, { maximumFractionDigits: 1 });
  const clock = (t) => new Date(t).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit" });

  // Total views as a line on the left axis; the views per second between two updates as bars
  // on the right axis, each as wide as its interval (so a bar's area is its number of views).
  function drawChart() {
    const chart = $("chart");
    const W = 600, H = 260, L = 58, R = 54, T = 34, B = 40;
    const bottom = H - B, right = W - R;
    chart.replaceChildren();
    if (!points.length) return;
    const t0 = points[0].t, t1 = Math.max(points[points.length - 1].t, t0 + 10000);
    const nMin = points[0].n, nMax = points[points.length - 1].n;
    const nStep = step(Math.max(nMax - nMin, 1), 4, true);
    const lo = Math.floor(nMin / nStep) * nStep;
    const hi = Math.max(Math.ceil(nMax / nStep) * nStep, lo + nStep);
    const bars = [];
    for (let i = 1; i < points.length; i++) {
      const seconds = Math.max((points[i].t - points[i - 1].t) / 1000, 0.001);
      bars.push({ from: points[i - 1].t, to: points[i].t, r: (points[i].n - points[i - 1].n) / seconds });
    }
    const rStep = step(Math.max(1, ...bars.map((b) => b.r)), 4, false);
    const rMax = Math.max(Math.ceil(Math.max(1, ...bars.map((b) => b.r)) / rStep) * rStep, rStep);
    const x = (t) => L + (right - L) * (t - t0) / (t1 - t0);
    const y = (n) => bottom - (bottom - T) * (n - lo) / (hi - lo);
    const yr = (r) => bottom - (bottom - T) * r / rMax;

    const grid = svg("g", { class: "grid" });
    const xAxis = svg("g", { class: "axis x" });
    const yAxis = svg("g", { class: "axis y" });
    const rAxis = svg("g", { class: "axis y2" });
    xAxis.append(svg("line", { class: "domain", x1: L, x2: right, y1: bottom, y2: bottom }));
    yAxis.append(svg("line", { class: "domain", x1: L, x2: L, y1: T, y2: bottom }));
    rAxis.append(svg("line", { class: "domain", x1: right, x2: right, y1: T, y2: bottom }));
    const tStep = TIME_STEPS.find((s) => (t1 - t0) / s <= 6) || 3600000;
    for (const t of ticks(t0, t1, tStep)) {
      const tick = svg("g", { class: "tick" });
      tick.append(svg("line", { x1: x(t), x2: x(t), y1: bottom, y2: bottom + 4 }),
        svg("text", { x: x(t), y: bottom + 15, "text-anchor": "middle" }, clock(t)));
      xAxis.append(tick);
    }
    for (const n of ticks(lo, hi, nStep)) {
      const tick = svg("g", { class: "tick" });
      tick.append(svg("line", { x1: L - 4, x2: L, y1: y(n), y2: y(n) }),
        svg("text", { x: L - 6, y: y(n) + 4, "text-anchor": "end" }, count.format(n)));
      yAxis.append(tick);
      grid.append(svg("line", { x1: L, x2: right, y1: y(n), y2: y(n) }));
    }
    for (const r of ticks(0, rMax, rStep)) {
      const tick = svg("g", { class: "tick" });
      tick.append(svg("line", { x1: right, x2: right + 4, y1: yr(r), y2: yr(r) }),
        svg("text", { x: right + 6, y: yr(r) + 4, "text-anchor": "start" }, rate.format(r)));
      rAxis.append(tick);
    }
    xAxis.append(svg("text", { class: "axis-title", x: (L + right) / 2, y: H - 6, "text-anchor": "middle" },
      "time (local clock)"));
    yAxis.append(svg("text", { class: "axis-title", "text-anchor": "middle",
      transform: `translate(14 ${(T + bottom) / 2}) rotate(-90)` }, "views (total)"));
    rAxis.append(svg("text", { class: "axis-title", "text-anchor": "middle",
      transform: `translate(${W - 8} ${(T + bottom) / 2}) rotate(-90)` }, "new views / s"));

    const plot = svg("g", { class: "plot" });
    for (const b of bars) {
      const left = x(b.from), width = Math.max(x(b.to) - left - 1, 1);
      plot.append(svg("rect", { class: "bar", x: left + 0.5, y: yr(b.r), width, height: bottom - yr(b.r) }));
    }
    const path = points.map((p, i) => (i ? "L" : "M") + x(p.t).toFixed(1) + " " + y(p.n).toFixed(1)).join(" ");
    const last = points[points.length - 1];
    plot.append(svg("path", { class: "line", d: path }),
      svg("circle", { class: "dot", cx: x(last.t), cy: y(last.n), r: 3 }));

    const legend = svg("g", { class: "legend", transform: `translate(${L} 12)` });
    const lineKey = svg("g", { class: "legend-item" });
    lineKey.append(svg("line", { class: "line", x1: 0, x2: 18, y1: 0, y2: 0 }),
      svg("text", { x: 24, y: 4 }, "total views (left axis)"));
    const barKey = svg("g", { class: "legend-item", transform: "translate(200 0)" });
    barKey.append(svg("rect", { class: "bar", x: 0, y: -6, width: 18, height: 12 }),
      svg("text", { x: 24, y: 4 }, "new views per second (right axis)"));
    legend.append(lineKey, barKey);

    chart.append(grid, plot, xAxis, yAxis, rAxis, legend);
  }

  $("window").addEventListener("change", startTop);
  $("pick").addEventListener("submit", (event) => {
    event.preventDefault();
    const id = $("statement").value.trim();
    if (id) follow(id, id);
  });
  startTop();
})();
