// Apollo Client's normalized InMemoryCache against the live server:
//   node apollo.mjs HTTP_URL TOKEN < queries.json     ([{name, query, variables}, ...])
// Each query goes through the client with fetchPolicy "network-only", so each one reaches the
// server. A link in front of the HTTP link keeps the server's raw answer; the client's answer is
// what it read back from its cache after writing the response into it. Once every query has
// run, each is read from the cache again (later answers may have overwritten its records).
// Prints one JSON line: {"results": [{name, server, returned, cached}, ...]}.
import { readFileSync } from "node:fs";
import { ApolloClient, ApolloLink, HttpLink, InMemoryCache, gql } from "@apollo/client";
import { map } from "rxjs";

const [url, token] = process.argv.slice(2);
const queries = JSON.parse(readFileSync(0, "utf8"));
const server = new Map();

const keepRaw = new ApolloLink((operation, forward) =>
  forward(operation).pipe(
    map((result) => {
      server.set(operation.operationName, structuredClone(result.data ?? null));
      return result;
    }),
  ),
);
const cache = new InMemoryCache();
const client = new ApolloClient({
  cache,
  link: ApolloLink.from([
    keepRaw,
    new HttpLink({ uri: url + "/graphql", headers: { authorization: `Bearer ${token}` } }),
  ]),
});

const results = [];
for (const { name, query, variables } of queries) {
  const document = gql(query);
  const answer = await client.query({ query: document, variables, fetchPolicy: "network-only" });
  if (answer.error) throw new Error(`${name}: ${answer.error}`);
  results.push({ name, document, variables, returned: structuredClone(answer.data ?? null) });
}
for (const result of results) {
  const cached = cache.readQuery({ query: result.document, variables: result.variables });
  result.cached = structuredClone(cached ?? null);
  result.server = server.get(result.name) ?? null;
  delete result.document;
}
console.log(JSON.stringify({ results }));
