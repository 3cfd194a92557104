// The archive site in headless Chromium: node site.mjs BASE_URL STATEMENT_PATH PAGE_PATH...
// Opens STATEMENT_PATH as a reader does, reads what the page shows, reloads it and reads the count
// again; then runs axe-core on STATEMENT_PATH and every PAGE_PATH. Prints the findings as JSON,
// with every request that left this machine.
import { createRequire } from "node:module";
import { chromium } from "playwright-core";

const require = createRequire(import.meta.url);
const AXE = require.resolve("axe-core/axe.min.js");
const [base, statementPath, ...pages] = process.argv.slice(2);
const LOOPBACK = new Set(["127.0.0.1", "localhost", "[::1]"]);
const isLocal = (url) => {
  const { protocol, hostname } = new URL(url);
  return ["data:", "blob:", "about:"].includes(protocol) || LOOPBACK.has(hostname);
};
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--no-first-run"],
});
try {
  const context = await browser.newContext();
  const offHost = [];
  await context.route((url) => !isLocal(url.href), (route) => {
    offHost.push(route.request().url());
    return route.abort("internetdisconnected");
  });
  const page = await context.newPage();
  const read = async () => ({
    status: null,
    title: await page.title(),
    heading: await page.locator("h1").innerText(),
    minister: await page.locator(".minister").innerText(),
    meta: await page.locator("article .meta").innerText(),
    count: await page.locator("#view-count").innerText(),
    print: await page.locator("a.print").getAttribute("href"),
    paragraphs: await page.locator("article .body p").count(),
    lang: await page.locator("html").getAttribute("lang"),
  });
  const first = await page.goto(base + statementPath, { waitUntil: "load" });
  const opened = { ...(await read()), status: first.status() };
  const again = await page.reload({ waitUntil: "load" });
  const reloaded = { ...(await read()), status: again.status() };

  const accessibility = {};
  for (const path of [statementPath, ...pages]) {
    const response = await page.goto(base + path, { waitUntil: "load" });
    await page.addScriptTag({ path: AXE });
    const results = await page.evaluate(() => window.axe.run(document, { resultTypes: ["violations"] }));
    accessibility[path] = {
      status: response.status(),
      violations: results.violations.map((v) => ({ id: v.id, impact: v.impact, nodes: v.nodes.length })),
    };
  }
  console.log(JSON.stringify({ opened, reloaded, accessibility, offHost }));
} finally {
  await browser.close();
}
