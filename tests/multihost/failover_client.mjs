// The real graphql-ws client with the retry policy of docs/API.md, across several API hosts:
//   LIVE_JS_DIR=tests/graphql_api/live_js node failover_client.mjs STATEMENT_ID WS_URL...
// Prints one JSON line per event (connected, value, error); "stop" on stdin ends it.
import { createRequire } from "node:module";

const require = createRequire(`${process.env.LIVE_JS_DIR}/package.json`);
const { createClient } = require("graphql-ws");
const WebSocket = require("ws");

const [statementId, ...hosts] = process.argv.slice(2);
const print = (line) => process.stdout.write(`${JSON.stringify(line)}\n`);

// --- the policy, as docs/API.md shows it --------------------------------------------------
let attempt = 0;
let current = null;
let socket = null;
let pongTimeout = null;
const client = createClient({
  // Each (re)connection tries the next host of the list.
  url: () => {
    current = hosts[attempt % hosts.length];
    attempt += 1;
    return current;
  },
  webSocketImpl: WebSocket,
  retryAttempts: Infinity,
  shouldRetry: () => true,
  // Full jitter: a random wait in [0, min(2 s, 100 ms * 2^retries)].
  retryWait: (retries) =>
    new Promise((resolve) => setTimeout(resolve, Math.random() * Math.min(2000, 100 * 2 ** retries))),
  // A host that vanished closes nothing: ping every second, give up after 3 s without a pong.
  keepAlive: 1000,
  on: {
    connected: (s) => {
      socket = s;
      print({ connected: current, t: Date.now() });
    },
    ping: (received) => {
      if (!received) {
        clearTimeout(pongTimeout);
        pongTimeout = setTimeout(() => socket?.close(4408, "no pong"), 3000);
      }
    },
    pong: (received) => {
      if (received) clearTimeout(pongTimeout);
    },
    closed: () => clearTimeout(pongTimeout),
  },
});
// ------------------------------------------------------------------------------------------

client.subscribe(
  {
    query: "subscription($id: ID!) { viewCount(statementId: $id) { viewCount } }",
    variables: { id: statementId },
  },
  {
    next: (result) =>
      print(
        result.errors
          ? { error: result.errors }
          : { host: current, count: result.data.viewCount.viewCount, t: Date.now() },
      ),
    error: (error) => print({ error: String(error?.reason ?? error) }),
    complete: () => print({ complete: true }),
  },
);

process.stdin.on("data", async (data) => {
  if (String(data).includes("stop")) {
    await client.dispose();
    process.exit(0);
  }
});
