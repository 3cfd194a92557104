// Headless Chromium on /dashboard: node dashboard.mjs BASE_URL STATEMENT_ID
import { chromium } from "playwright-core";

const [base, statementId] = process.argv.slice(2);
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
  await recordViews(3);
  await page.waitForFunction((n) => Number(document.getElementById("chosen-count").textContent) >= n, after + 3, { timeout: 10000 });
  const chosen = Number(await page.textContent("#chosen-count"));
  const bars = await page.locator("#chart path.line").count();
  console.log(JSON.stringify({ before, after, chosen, chartLines: bars, errors }));
} finally {
  await browser.close();
}
