// Cross-origin fetch from pages on other local ports, in headless Chromium:
// node cors.mjs API_URL TOKEN ORIGIN_PORT...
// Serves an empty page on each port (http://127.0.0.1:PORT) and, from each, calls API_URL/graphql
// with a POST that needs a preflight (JSON, Authorization, X-Request-ID) and with a plain GET.
import http from "node:http";
import { chromium } from "playwright-core";

const [api, token, ...ports] = process.argv.slice(2);
const QUERY = "{ statements(first: 1) { totalCount } }";
const servers = await Promise.all(ports.map((port) => new Promise((resolve, reject) => {
  const server = http.createServer((req, res) => {
    res.writeHead(200, { "content-type": "text/html" });
    res.end("<!doctype html><title>another origin</title>");
  });
  server.once("error", reject);
  server.listen(Number(port), "127.0.0.1", () => resolve(server));
})));
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--no-first-run"],
});
try {
  const results = {};
  for (const port of ports) {
    const origin = `http://127.0.0.1:${port}`;
    const page = await browser.newPage();
    await page.goto(origin + "/");
    results[origin] = await page.evaluate(async ([api, token, query]) => {
      const outcome = (promise) => promise.then(
        (value) => ({ ok: true, ...value }),
        (error) => ({ ok: false, error: String(error) }));
      const read = async (response) => ({
        status: response.status,
        requestId: response.headers.get("x-request-id"),
        body: await response.json(),
      });
      const post = await outcome(fetch(api + "/graphql", {
        method: "POST",
        headers: {
          "content-type": "application/json",
          authorization: "Bearer " + token,
          "x-request-id": "cors-test-1",
        },
        body: JSON.stringify({ query }),
      }).then(read));
      const get = await outcome(
        fetch(api + "/graphql?query=" + encodeURIComponent(query)).then(read));
      return { post, get };
    }, [api, token, QUERY]);
    await page.close();
  }
  console.log(JSON.stringify(results));
} finally {
  await browser.close();
  for (const server of servers) server.close();
}
