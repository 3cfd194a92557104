// The real graphql-ws client against the live server: node client.mjs WS_URL HTTP_URL STATEMENT_ID
import { createClient } from "graphql-ws";
import WebSocket from "ws";

const [wsUrl, httpUrl, statementId] = process.argv.slice(2);
const client = createClient({ url: wsUrl, webSocketImpl: WebSocket, lazy: true, retryAttempts: 0 });

async function recordView() {
  const response = await fetch(httpUrl + "/graphql", {
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

const counts = [];
const subscription = client.iterate({
  query: "subscription($id: ID!) { viewCount(statementId: $id) { statementId viewCount at } }",
  variables: { id: statementId },
});
const timer = setTimeout(() => { console.error("timeout", counts); process.exit(2); }, 15000);
let recorded = false;
for await (const result of subscription) {
  if (result.errors) throw new Error(JSON.stringify(result.errors));
  counts.push(result.data.viewCount.viewCount);
  if (!recorded) {
    recorded = true;
    for (let i = 0; i < 50; i++) await recordView();
  }
  if (counts[counts.length - 1] >= 50) break;
}
clearTimeout(timer);
// A second client with a bad token: the server must refuse it with 4403.
const refused = createClient({
  url: wsUrl, webSocketImpl: WebSocket, retryAttempts: 0,
  connectionParams: { authorization: "Bearer st_invalid" },
});
let closeCode = null;
try {
  for await (const _ of refused.iterate({ query: "subscription { topViewed { rank } }" })) break;
} catch (error) {
  closeCode = error.code ?? null;
}
await client.dispose();
await refused.dispose();
console.log(JSON.stringify({ counts, closeCode }));
