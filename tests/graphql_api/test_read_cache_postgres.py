"""The PostgreSQL read cache, driven through the API: two app instances on one database.

B answers repeated reads from memory; a write through A reaches B's cache as a checkpoint
notification, which drops the entries of the read models that moved and only those; a read
with ``X-Min-Position`` sees the write at once; a lost LISTEN connection empties the cache and
stops it serving until the checkpoints are read again.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import httpx
import pytest

from eventstore.postgres import PostgresEventStore
from eventstore.reader import PostgresReader, reader_for
from graphql_api.app import AppState, create_app
from graphql_api.settings import Settings
from tests.eventstore.test_projection import _plain_dsn, eventually
from tests.graphql_api.app_client import running_app
from tests.graphql_api.consistency_support import RECORD_VIEW, TAG, gql, ok, publish

pytestmark = pytest.mark.postgres

PAGE = """query($id: ID!) {
  statement(id: $id) { title viewCount topics { slug } related { title } minister { name } } }"""
#: Read from the ministers read model alone (on the reader's path, so cached).
MINISTERS = "{ ministers { name statementCount } }"


@contextlib.asynccontextmanager
async def _second_instance(
    url: str, schema: str
) -> AsyncIterator[tuple[httpx.AsyncClient, AppState]]:
    """Another app on the same database, which runs no projection: every move it hears of
    comes from A, by notification."""
    settings = Settings(database_url=url, database_schema=schema, run_projections=False)
    app = create_app(settings)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://b") as client,
    ):
        yield client, app.state.statements


def _reader(state: AppState) -> PostgresReader:
    assert state.services is not None
    reader = reader_for(state.services.engine)
    assert isinstance(reader, PostgresReader)
    return reader


async def _page(client: httpx.AsyncClient, sid: str, **headers: str) -> dict[str, Any]:
    return ok(await gql(client, PAGE, {"id": sid}, headers=headers))["statement"]  # type: ignore[no-any-return]


async def test_another_instances_writes_drop_the_entries_they_change(
    pg_schema: tuple[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # An idle projection's checkpoint row moves at most once a second with nothing applied,
    # and that move drops its entries too; not while this test runs.
    monkeypatch.setattr("eventstore.projection_runner.IDLE_CHECKPOINT_INTERVAL", 600.0)
    url, schema = pg_schema
    async with running_app(url, schema) as a, _second_instance(url, schema) as (b, state):
        editor = a.tokens["editor"]
        reader = _reader(state)
        sid = await publish(a.client, editor, "Cached on B", 3)
        tagged = ok(await gql(a.client, TAG, {"id": sid, "topics": ["First"]}, token=editor))
        position = str(tagged["tagStatement"]["position"])
        first = await _page(b, sid, **{"x-min-position": position})
        assert [t["slug"] for t in first["topics"]] == ["first"]
        ministers = ok(await gql(b, MINISTERS))

        # Repeated reads are answered from memory, without a statement.
        hits = reader.cache_hits
        assert await _page(b, sid) == first
        assert ok(await gql(b, MINISTERS)) == ministers
        assert reader.cache_hits > hits

        # A view moves the views read model only: the page (its view count) is read again,
        # the ministers are still served from memory.
        viewed = ok(await gql(a.client, RECORD_VIEW, {"id": sid}))["recordView"]
        page = await _page(b, sid, **{"x-min-position": str(viewed["position"])})
        assert page["viewCount"] == first["viewCount"] + 1
        hits = reader.cache_hits
        assert ok(await gql(b, MINISTERS)) == ministers
        assert reader.cache_hits == hits + 1

        # A tag (it adds topics) moves the statements and topics read models. Without
        # X-Min-Position, B shows it as soon as the notification arrives.
        tagged = ok(await gql(a.client, TAG, {"id": sid, "topics": ["Second"]}, token=editor))

        async def shows_second() -> bool:
            return "second" in [t["slug"] for t in (await _page(b, sid))["topics"]]

        await eventually(shows_second, timeout=5)
        assert reader.cache.drops > 0


async def test_a_lost_listen_connection_empties_the_cache_until_it_is_back(
    pg_schema: tuple[str, str],
) -> None:
    url, schema = pg_schema
    async with running_app(url, schema) as a, _second_instance(url, schema) as (b, state):
        editor = a.tokens["editor"]
        reader = _reader(state)
        assert state.services is not None and state.watcher is not None
        store = state.services.store
        assert isinstance(store, PostgresEventStore)
        sid = await publish(a.client, editor, "Cached, then cut off", 4)
        tagged = ok(await gql(a.client, TAG, {"id": sid, "topics": ["Before"]}, token=editor))
        await _page(b, sid, **{"x-min-position": str(tagged["tagStatement"]["position"])})
        await _page(b, sid)
        assert len(reader.cache) > 0 and reader.cache.active

        resets = state.watcher.reloads
        pid = store.listener_pid
        assert pid is not None
        killer = await asyncpg.connect(_plain_dsn(url))
        try:
            await killer.execute("SELECT pg_terminate_backend($1)", pid)
            await eventually(lambda: not reader.cache.active, timeout=5)
            assert len(reader.cache) == 0
            # A write whose notification B may miss while it reconnects.
            ok(await gql(a.client, TAG, {"id": sid, "topics": ["During"]}, token=editor))
        finally:
            await killer.close()

        await eventually(
            lambda: (
                reader.cache.active and state.watcher is not None and state.watcher.reloads > resets
            ),
            timeout=10,
        )
        assert store.listener_pid not in (None, pid)

        async def shows_during() -> bool:
            return "during" in [t["slug"] for t in (await _page(b, sid))["topics"]]

        await eventually(shows_during, timeout=5)
        hits = reader.cache_hits
        await _page(b, sid)
        assert reader.cache_hits > hits  # serving again
        after = ok(await gql(a.client, TAG, {"id": sid, "topics": ["After"]}, token=editor))

        async def shows_after() -> bool:
            return "after" in [t["slug"] for t in (await _page(b, sid))["topics"]]

        await eventually(shows_after, timeout=5)
        assert after["tagStatement"]["position"] > 0
