// Headless Chromium on /dashboard: node dashboard.mjs BASE_URL STATEMENT_ID [SCREENSHOT]
import { chromium } from "playwright-core";

const [base, statementId, screenshot] = process.argv.slice(2);
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--no-first-run"],
});
async function recordViews(n) {
  for (let i = 0; i < n; i++) {
    const response = await fetch(base + "/graphql", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({
        query: "mutation($id: ID!) { recordView(input: {statementId: $id}) { position } }",
        variables: { id: statementId },
      }),
    });
    const body = await response.json();
    if (body.errors) throw new Error(JSON.stringify(body.errors));
  }
}
const views = async (page) => page.evaluate((id) => {
  const row = document.querySelector(`#top tbody tr[data-id="${id}"] td.views`);
  return row ? Number(row.textContent) : null;
}, statementId);
try {
  const page = await browser.newPage();
  const errors = [];
  page.on("pageerror", (e) => errors.push(String(e)));
  await page.goto(base + "/dashboard");
  await page.waitForFunction(() => document.getElementById("status").dataset.state === "live", null, { timeout: 10000 });
  await page.waitForFunction((id) => document.querySelector(`#top tbody tr[data-id="${id}"]`), statementId, { timeout: 10000 });
  const before = await views(page);
  await recordViews(5);
  await page.waitForFunction(([id, n]) => {
    const cell = document.querySelector(`#top tbody tr[data-id="${id}"] td.views`);
    return cell && Number(cell.textContent) >= n;
  }, [statementId, before + 5], { timeout: 10000 });
  const after = await views(page);
  await page.click(`#top tbody tr[data-id="${statementId}"]`);
  // The first count of the followed statement, then three views: at least two points.
  await page.waitForFunction(() => /^\d+$/.test(document.getElementById("chosen-count").textContent),
    null, { timeout: 10000 });
  const first = Number(await page.textContent("#chosen-count"));
  await recordViews(3);
  await page.waitForFunction((n) => Number(document.getElementById("chosen-count").textContent) >= n, first + 3, { timeout: 10000 });
  const chosen = Number(await page.textContent("#chosen-count"));
  // The chart is redrawn on every update: read it once it shows the count above.
  await page.waitForFunction(() => document.querySelectorAll("#chart .plot rect.bar").length > 0,
    null, { timeout: 10000 });
  const chart = await page.evaluate(() => {
    const texts = (selector) => [...document.querySelectorAll(selector)].map((e) => e.textContent);
    const axis = (name) => ({
      ticks: texts(`#chart g.axis.${name} g.tick text`),
      title: texts(`#chart g.axis.${name} .axis-title`).join(""),
    });
    return {
      lines: document.querySelectorAll("#chart .plot path.line").length,
      bars: document.querySelectorAll("#chart .plot rect.bar").length,
      x: axis("x"),
      y: axis("y"),
      y2: axis("y2"),
      legend: texts("#chart g.legend .legend-item text"),
      legendKeys: [...document.querySelectorAll("#chart g.legend .legend-item")]
        .map((item) => item.firstElementChild.getAttribute("class")),
    };
  });
  if (screenshot) await page.locator("#chart").screenshot({ path: screenshot });
  console.log(JSON.stringify({ before, after, chosen, chart, errors }));
} finally {
  await browser.close();
}
