"""Two real app processes on one PostgreSQL schema: a batch recorded on one reaches the live
view counts of subscribers on the other, each statement counting its views in the batch."""

from __future__ import annotations

import asyncio
import os
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
import websockets

from eventstore.urls import create_engine
from graphql_api.security.auth import create_token
from tests.graphql_api.live_support import TRANSPORT_WS, WsClient, gql, live_server, make_tokens
from tests.graphql_api.live_support import publish as publish_statement

pytestmark = pytest.mark.postgres

COUNT = "subscription($id: ID!) { viewCount(statementId: $id) { viewCount } }"
RECORD_VIEWS = """mutation($input: RecordViewsInput!) {
  recordViews(input: $input) { position viewsRecorded } }"""


def _ingest_token(url: str, schema: str) -> str:
    async def make() -> str:
        engine = create_engine(url, schema=schema)
        try:
            token, _ = await create_token(engine, "ingest", f"shipper-{os.getpid()}")
            return token
        finally:
            await engine.dispose()

    return asyncio.run(make())


def test_a_batch_on_one_process_reaches_subscribers_on_another(
    pg_schema: tuple[str, str], tmp_path: Path
) -> None:
    url, schema = pg_schema
    tokens = make_tokens(url, schema)
    ingest = _ingest_token(url, schema)
    real = {"factory": "graphql_api.app:app_from_env", "ready_path": "/readyz"}
    with (
        live_server(url, tmp_path, schema=schema, **real) as a,
        live_server(url, tmp_path, schema=schema, **real) as b,
    ):

        async def scenario() -> None:
            async with httpx.AsyncClient(timeout=10) as http:
                x = await publish_statement(http, a.url, tokens.editor, "Batch across A")
                y = await publish_statement(http, a.url, tokens.editor, "Batch across B")
                async with websockets.connect(a.ws_url, subprotocols=[TRANSPORT_WS]) as ws:  # type: ignore[list-item]
                    client = WsClient(ws)
                    await client.init()
                    await client.subscribe("x", COUNT, {"id": x})
                    await client.subscribe("y", COUNT, {"id": y})
                    first = {}
                    while len(first) < 2:
                        message = await client.recv()
                        first[message["id"]] = message["payload"]["data"]["viewCount"]["viewCount"]
                    assert first == {"x": 0, "y": 0}
                    at = datetime.now(UTC).isoformat()
                    views = [{"statementId": x, "at": at}] * 5 + [{"statementId": y, "at": at}]
                    body = await gql(
                        http,
                        b.url,
                        RECORD_VIEWS,
                        {"input": {"batchId": "across-1", "views": views}},
                        token=ingest,
                    )
                    assert body["data"]["recordViews"]["viewsRecorded"] == 6
                    started = time.monotonic()
                    latest = dict(first)
                    while latest != {"x": 5, "y": 1}:
                        message = await client.recv()
                        count = message["payload"]["data"]["viewCount"]["viewCount"]
                        assert count >= latest[message["id"]]
                        latest[message["id"]] = count
                    # NOTIFY, not the 1 s polling fallback, brought the batch.
                    assert time.monotonic() - started < 0.9

        asyncio.run(scenario())
