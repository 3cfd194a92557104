// GraphiQL against this server: queries and mutations over HTTP POST, subscriptions over
// graphql-transport-ws on the same path. Loaded as a file, so the page's CSP needs no inline script.
"use strict";
(function () {
  const endpoint = location.origin + location.pathname;
  const fetcher = GraphiQL.createFetcher({
    url: endpoint,
    subscriptionUrl: endpoint.replace(/^http/, "ws"),
  });
  const defaultQuery = "# Ctrl-Enter runs the query; the Docs button browses the schema.\n" +
    "{\n  statements(first: 5) {\n    totalCount\n    nodes { title publishedAt minister { name } }\n  }\n}\n";
  ReactDOM.createRoot(document.getElementById("graphiql")).render(
    React.createElement(GraphiQL, { fetcher, defaultQuery, defaultEditorToolsVisibility: true }),
  );
})();
