"""Two server processes on one PostgreSQL schema: a view recorded on one reaches subscribers
of the other (the store's subscription wakes through LISTEN/NOTIFY)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx
import pytest
import websockets

from tests.graphql_api.live_support import (
    TRANSPORT_WS,
    WsClient,
    live_server,
    make_tokens,
    publish,
    record_view,
)

pytestmark = pytest.mark.postgres

COUNT = "subscription($id: ID!) { viewCount(statementId: $id) { viewCount } }"


def test_a_view_on_one_process_reaches_subscribers_on_another(
    pg_schema: tuple[str, str], tmp_path: Path
) -> None:
    url, schema = pg_schema
    tokens = make_tokens(url, schema)
    env = {"LIVE_TICK": "0.1"}
    with (
        live_server(url, tmp_path, schema=schema, env=env) as a,
        live_server(url, tmp_path, schema=schema, env=env) as b,
    ):

        async def scenario() -> None:
            async with httpx.AsyncClient(timeout=10) as http:
                sid = await publish(http, a.url, tokens.editor, "Across processes")
                await record_view(http, a.url, sid)
                async with websockets.connect(a.ws_url, subprotocols=[TRANSPORT_WS]) as ws:  # type: ignore[list-item]
                    client = WsClient(ws)
                    await client.init()
                    await client.subscribe("1", COUNT, {"id": sid})
                    first = (await client.recv())["payload"]["data"]["viewCount"]["viewCount"]
                    assert first == 1
                    for _ in range(3):
                        await asyncio.gather(*(record_view(http, b.url, sid) for _ in range(10)))
                        started = time.monotonic()
                        await record_view(http, b.url, sid)
                    count, counts = first, []
                    while count < 34:
                        count = (await client.recv())["payload"]["data"]["viewCount"]["viewCount"]
                        counts.append(count)
                    assert count == 34 and counts == sorted(counts)
                    # NOTIFY, not the 1 s polling fallback, brought the last view.
                    assert time.monotonic() - started < 0.9

        asyncio.run(scenario())
