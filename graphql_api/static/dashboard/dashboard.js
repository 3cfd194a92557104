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

  function svg(tag, attrs) {
    const el = document.createElementNS("http://www.w3.org/2000/svg", tag);
    for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
    return el;
  }

  // The total as a line, and the views between two updates as bars.
  function drawChart() {
    const chart = $("chart");
    const W = 600, H = 220, L = 48, B = 20, T = 10;
    chart.replaceChildren();
    if (!points.length) return;
    const t0 = points[0].t, t1 = Math.max(points[points.length - 1].t, t0 + 1000);
    const lo = points[0].n, hi = Math.max(points[points.length - 1].n, lo + 1);
    const x = (t) => L + (W - L - 8) * (t - t0) / (t1 - t0);
    const y = (n) => H - B - (H - B - T) * (n - lo) / (hi - lo);
    let maxDelta = 1;
    for (let i = 1; i < points.length; i++) maxDelta = Math.max(maxDelta, points[i].n - points[i - 1].n);
    for (let i = 1; i < points.length; i++) {
      const d = points[i].n - points[i - 1].n;
      const h = (H - B - T) * 0.4 * d / maxDelta;
      chart.append(svg("rect", { class: "bar", x: x(points[i].t) - 1.5, y: H - B - h, width: 3, height: h }));
    }
    const path = points.map((p, i) => (i ? "L" : "M") + x(p.t).toFixed(1) + " " + y(p.n).toFixed(1)).join(" ");
    chart.append(svg("path", { class: "line", d: path }));
    const label = (text, ax, ay, anchor) => {
      const el = svg("text", { x: ax, y: ay, "text-anchor": anchor });
      el.textContent = text;
      chart.append(el);
    };
    label(String(hi), L - 4, T + 8, "end");
    label(String(lo), L - 4, H - B, "end");
    label(new Date(t0).toLocaleTimeString(), L, H - 4, "start");
    label(new Date(t1).toLocaleTimeString(), W - 8, H - 4, "end");
  }

  $("window").addEventListener("change", startTop);
  $("pick").addEventListener("submit", (event) => {
    event.preventDefault();
    const id = $("statement").value.trim();
    if (id) follow(id, id);
  });
  startTop();
})();
