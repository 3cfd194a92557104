// The real graphql-ws client meets bad documents, then authenticates with a header:
// node errors.mjs WS_URL AUDITOR_TOKEN
import { createClient } from "graphql-ws";
import WebSocket from "ws";

const [wsUrl, auditorToken] = process.argv.slice(2);
const timer = setTimeout(() => { console.error("timeout"); process.exit(2); }, 30000);

// Node's `ws` takes headers for the handshake, as server-side clients can (browsers cannot).
function withAuthorization(value) {
  return class extends WebSocket {
    constructor(address, protocols) {
      super(address, protocols, { headers: { Authorization: value } });
    }
  };
}

function watched(options) {
  const events = { connected: 0, closed: [] };
  const client = createClient({
    url: wsUrl, webSocketImpl: WebSocket, retryAttempts: 0, lazy: false, ...options,
    on: {
      connected: () => { events.connected += 1; },
      closed: (event) => { events.closed.push({ code: event.code, reason: event.reason }); },
    },
  });
  return { client, events };
}

// The first result of a subscription, or what it was refused with.
async function first(client, query, variables) {
  try {
    for await (const result of client.iterate({ query, variables })) return { result };
    return { completed: true };
  } catch (error) {
    return { refused: Array.isArray(error) ? error : { code: error.code, reason: error.reason } };
  }
}

const { client, events } = watched({});
const syntax = await first(client, "subscription { topViewed(first: 1) {");
const validation = await first(client, "subscription { topViewed { rank nope } }");
// The same socket still serves.
const after = await first(client, "subscription { topViewed(first: 1) { rank } }");
const audit = "subscription { eventAppended(afterPosition: 0) { position } }";
const anonymous = await first(client, audit);
const closedBefore = [...events.closed];
await client.dispose();

const authed = watched({ webSocketImpl: withAuthorization(`Bearer ${auditorToken}`) });
const auditor = await first(authed.client, audit);
await authed.client.dispose();

const bad = watched({ webSocketImpl: withAuthorization("Bearer st_invalid") });
const badHeader = await first(bad.client, audit);
await bad.client.dispose();

clearTimeout(timer);
console.log(JSON.stringify({
  syntax, validation, after, anonymous, auditor, badHeader,
  connected: events.connected, closedBefore,
}));
