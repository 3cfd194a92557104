// GraphiQL in headless Chromium with no network but this machine's loopback:
// node graphiql.mjs BASE_URL QUERY... [--screenshot FILE]
// Loads BASE_URL/graphql, types each QUERY into the editor, runs it and records what the response
// pane shows; prints those with every request the page made and every CSP violation and error.
// A subscription stays open (its button then stops it), so it can only be the last QUERY.
import { chromium } from "playwright-core";

const args = process.argv.slice(2);
const at = args.indexOf("--screenshot");
const screenshot = at >= 0 ? args.splice(at, 2)[1] : null;
const [base, ...queries] = args;
const LOOPBACK = new Set(["127.0.0.1", "localhost", "[::1]"]);
const isLocal = (url) => {
  const { protocol, hostname } = new URL(url);
  return ["data:", "blob:", "about:"].includes(protocol) || LOOPBACK.has(hostname);
};
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--no-first-run",
         // No name but loopback resolves: a CDN could not be reached even past the route below.
         "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE localhost, EXCLUDE 127.0.0.1"],
});
try {
  const context = await browser.newContext();
  const requests = [];
  const offHost = [];
  context.on("request", (request) => requests.push(request.url()));
  // Anything not on loopback (IP literals skip the resolver rules) is refused and recorded.
  await context.route((url) => !isLocal(url.href), (route) => {
    offHost.push(route.request().url());
    return route.abort("internetdisconnected");
  });
  const page = await context.newPage();
  page.on("websocket", (ws) => requests.push(ws.url()));
  const errors = [];
  page.on("pageerror", (e) => errors.push(String(e)));
  page.on("console", (m) => { if (m.type() === "error") errors.push(m.text()); });
  await page.addInitScript(() => {
    window.__cspViolations = [];
    document.addEventListener("securitypolicyviolation",
      (e) => window.__cspViolations.push(`${e.violatedDirective} ${e.blockedURI}`));
  });
  const response = await page.goto(base + "/graphql", { waitUntil: "load" });
  const csp = response.headers()["content-security-policy"] ?? null;
  const editor = page.locator(".graphiql-query-editor .CodeMirror");
  await editor.waitFor({ timeout: 15000 });
  const runs = [];
  for (const query of queries) {
    await editor.click();
    await page.keyboard.press("Control+A");
    await page.keyboard.press("Delete");
    // insertText types the query as one input; key by key, CodeMirror would close brackets.
    await page.keyboard.insertText(query);
    const typed = await page.evaluate(
      () => document.querySelector(".graphiql-query-editor .CodeMirror").CodeMirror.getValue());
    // GraphiQL parses the editor (which tells a subscription from a query) 100 ms after the
    // last edit, in the step that also stores it: wait for that rather than for a time.
    await page.waitForFunction((text) => localStorage.getItem("graphiql:query") === text, typed);
    await page.evaluate(() => {
      document.querySelector(".graphiql-response .CodeMirror").CodeMirror.setValue("");
    });
    await page.click(".graphiql-execute-button");
    const shown = await page.waitForFunction(() => {
      const text = document.querySelector(".graphiql-response .CodeMirror").CodeMirror.getValue();
      return text.trim().startsWith("{") ? text : null;
    }, null, { timeout: 15000 });
    runs.push({ typed, result: JSON.parse(await shown.jsonValue()) });
  }
  if (screenshot) await page.screenshot({ path: screenshot });
  const cspViolations = await page.evaluate(() => window.__cspViolations);
  console.log(JSON.stringify({ runs, csp, requests, offHost, cspViolations, errors }));
} finally {
  await browser.close();
}
