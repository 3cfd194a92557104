"""How requests arrive: HTTP, websockets, SSE, persisted queries, CORS, GraphiQL, dashboard."""
