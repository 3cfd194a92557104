"""create_app wires everything: health, readiness, GraphQL with read-your-writes, metrics."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx

from eventstore.urls import create_engine
from graphql_api.app import create_app
from graphql_api.security.auth import create_token
from graphql_api.settings import Settings

PUBLISH = """
mutation Publish($input: PublishStatementInput!) {
  publishStatement(input: $input) { statementId position statement { title topics { slug } } }
}"""


async def test_not_ready_while_the_read_models_have_no_tables(tmp_path: Path) -> None:
    # Without a runner (another process runs the projections, and has not started yet) there
    # are no read-model tables: a query would fail, so the app is not ready.
    url = f"sqlite:///{tmp_path / 'app.db'}"
    app = create_app(Settings(database_url=url, run_projections=False))
    transport = httpx.ASGITransport(app=app)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://test") as client,
    ):
        ready = await client.get("/readyz")
        assert ready.status_code == 503
        body = ready.json()
        assert body["status"] == "not ready" and "statements" in body["starting"]


async def test_the_app_end_to_end(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'app.db'}"
    app = create_app(Settings(database_url=url))
    transport = httpx.ASGITransport(app=app)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://test") as client,
    ):
        assert (await client.get("/healthz")).json() == {"status": "ok"}
        # Ready once every projection has made its tables (a moment after start).
        for _ in range(100):
            ready = await client.get("/readyz")
            if ready.status_code == 200 or ready.json()["failed"]:
                break
            assert ready.json()["starting"], ready.json()
            await asyncio.sleep(0.05)
        assert ready.status_code == 200 and ready.json()["status"] == "ready"
        engine = create_engine(url)
        try:
            bearer, _ = await create_token(engine, "editor", "desk")
        finally:
            await engine.dispose()
        variables = {
            "input": {
                "title": "Comment on the talks",
                "body": "First paragraph.\n\nSecond paragraph.",
                "kind": "comment",
                "ministerName": "Sergey Lavrov",
                "location": "Beijing",
                "occurredOn": "2014-11-08",
                "publishedAt": "2014-11-17T16:58:00+03:00",
                "topics": ["Middle East"],
            }
        }
        listing = {"query": "{ statements(first: 5) { totalCount } archive { count } }"}
        # Read (and cached by the reader) before the write: the write must show through.
        empty = (await client.post("/graphql", json=listing)).json()["data"]
        assert empty == {"statements": {"totalCount": 0}, "archive": []}
        anonymous = await client.post("/graphql", json={"query": PUBLISH, "variables": variables})
        assert anonymous.json()["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
        response = await client.post(
            "/graphql",
            json={"query": PUBLISH, "variables": variables},
            headers={"Authorization": f"Bearer {bearer}"},
        )
        payload = response.json()["data"]["publishStatement"]
        # The payload waited for the read models: the statement is already there.
        assert payload["statement"] == {
            "title": "Comment on the talks",
            "topics": [{"slug": "middle-east"}],
        }
        for _ in range(2):
            listed = (await client.post("/graphql", json=listing)).json()["data"]
            assert listed == {"statements": {"totalCount": 1}, "archive": [{"count": 1}]}
        metrics = (await client.get("/metrics")).text
        # The second read of the list ran no SQL (unless the runner committed in between).
        assert 'statements_read_cache_statements{result="hit"}' in metrics
        assert 'statements_read_cache_statements{result="hit"} 0' not in metrics
        assert "statements_read_cache_drops{scope=" in metrics
        assert 'graphql_requests_total{operation="Publish",status="200"}' in metrics
        assert "statements_projection_lag_events" in metrics
