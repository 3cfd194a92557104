"""Reads from replicas without a streaming replica: a second schema in the test database stands
for one, holding copies of the primary schema's tables made when the test says ("replays").

The multi-host tests (tests/multihost/test_replicas.py) run the same against a real streaming
replica; these are fast and need only the test database.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import asyncpg
import httpx
import pytest
import websockets

from eventstore.urls import create_engine
from graphql_api.settings import Settings
from projections.replicas import PRIMARY, ReplicaReadModels, ReplicaRouter
from tests.conftest import _plain_dsn
from tests.graphql_api.consistency_support import PUBLISH, gql, ok, statement_input
from tests.graphql_api.live_support import live_server
from tests.graphql_api.test_consistency import Running, running

pytestmark = [pytest.mark.postgres]

STATEMENT = """query($id: ID!) { statement(id: $id) { title } }"""


async def replay(url: str, primary: str, replica: str) -> None:
    """Make the replica schema a copy of the primary's tables as they are now."""
    conn = await asyncpg.connect(_plain_dsn(url))
    try:
        tables = await conn.fetch("SELECT tablename FROM pg_tables WHERE schemaname = $1", primary)
        async with conn.transaction(isolation="repeatable_read"):
            await conn.execute(f'DROP SCHEMA IF EXISTS "{replica}" CASCADE')
            await conn.execute(f'CREATE SCHEMA "{replica}"')
            for (table,) in tables:
                await conn.execute(
                    f'CREATE TABLE "{replica}"."{table}" (LIKE "{primary}"."{table}")'
                )
                await conn.execute(
                    f'INSERT INTO "{replica}"."{table}" SELECT * FROM "{primary}"."{table}"'
                )
    finally:
        await conn.close()


async def until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        assert loop.time() < deadline, "timed out"
        await asyncio.sleep(0.02)


async def publish(it: Running, title: str, day: int) -> tuple[str, int]:
    data = ok(
        await gql(it.client, PUBLISH, {"input": statement_input(title, day)}, token=it.editor)
    )
    return str(data["publishStatement"]["statementId"]), int(data["publishStatement"]["position"])


async def rows_at_least(url: str, schema: str, position: int) -> None:
    """Until every checkpoint row of the schema is at ``position`` (idle projections write
    theirs at most once a second)."""
    conn = await asyncpg.connect(_plain_dsn(url))
    try:
        for _ in range(300):
            lowest = await conn.fetchval(
                f'SELECT min(position) FROM "{schema}".projection_checkpoints'
            )
            if lowest is not None and lowest >= position:
                return
            await asyncio.sleep(0.05)
        raise AssertionError(f"checkpoints of {schema} stayed below {position}")
    finally:
        await conn.close()


@contextlib.asynccontextmanager
async def router_over(
    it: Running, url: str, replica_schema: str, **options: float
) -> AsyncIterator[ReplicaRouter]:
    state = it.state
    assert state.read_models is not None and state.watcher is not None
    engine = create_engine(url, schema=replica_schema)
    router = ReplicaRouter(
        state.read_models, state.watcher, [("copy", engine)], interval=0.05, **options
    )
    await router.start()
    try:
        yield router
    finally:
        await router.stop()


async def test_a_query_goes_to_a_replica_that_reaches_its_position(
    pg_schema: tuple[str, str],
) -> None:
    url, schema = pg_schema
    copy = f"{schema}_copy"
    async with running(pg_schema) as it:
        first, at_first = await publish(it, "Before the replay", 1)
        await rows_at_least(url, schema, at_first)
        await replay(url, schema, copy)
        async with router_over(it, url, copy, max_lag=1.0) as router:
            replica = router.replicas[0]
            await until(lambda: replica.healthy)
            assert replica.lag_positions == 0

            chosen = router.choose(at_first)
            assert chosen is replica.read_models
            assert (await chosen.statements_by_ids([first]))[first].title == "Before the replay"
            assert router.choose(None) is replica.read_models

            second, at_second = await publish(it, "After the replay", 2)
            # The copy has not replayed the second statement: read-your-writes goes to the
            # primary, a read at the first position may still use the copy.
            assert router.choose(at_second) is router.primary
            assert router.choose(at_first) is replica.read_models
            assert second not in await replica.read_models.statements_by_ids([second])

            # Left behind for longer than the bound, the copy is left out for every query...
            await until(lambda: not replica.healthy, timeout=5.0)
            assert replica.lag_seconds > 1.0 and replica.lag_positions > 0
            assert router.choose(None) is router.primary
            assert router.choose(at_first) is router.primary

            # ... until it catches up.
            await rows_at_least(url, schema, at_second)
            await replay(url, schema, copy)
            await until(lambda: replica.healthy)
            assert router.choose(at_second) is replica.read_models
            rows = await router.choose(at_second).statements_by_ids([second])
            assert rows[second].title == "After the replay"
            reads = router.reads()
            assert reads == {PRIMARY: 3, "copy": 5}, reads
    await _drop(url, copy)


async def test_a_replica_that_is_gone_is_left_out_and_reads_fall_back(
    pg_schema: tuple[str, str],
) -> None:
    url, schema = pg_schema
    copy = f"{schema}_copy"
    async with running(pg_schema) as it:
        sid, position = await publish(it, "Still readable", 3)
        await rows_at_least(url, schema, position)
        await replay(url, schema, copy)
        async with router_over(it, url, copy, max_lag=5.0, timeout=0.5) as router:
            replica = router.replicas[0]
            await until(lambda: replica.healthy)
            # The replica's tables go away between polls: the read is answered by the primary
            # and the next poll leaves the replica out.
            chosen = router.choose(position)
            assert chosen is replica.read_models
            await _drop(url, copy)
            assert (await chosen.statements_by_ids([sid]))[sid].title == "Still readable"
            await until(lambda: not replica.healthy)
            assert replica.error is not None
            assert router.choose(position) is router.primary

        # A replica that cannot be reached at all: its read models still answer (from the
        # primary), and report it lost.
        assert it.state.read_models is not None
        dead = create_engine("postgresql+asyncpg://postgres@127.0.0.1:9/none")
        lost: list[BaseException] = []
        models = ReplicaReadModels(dead, it.state.read_models, lost.append)
        try:
            assert (await models.statements_by_ids([sid]))[sid].title == "Still readable"
            assert lost
        finally:
            await dead.dispose()


async def test_queries_read_the_replica_and_mutations_the_primary(
    pg_schema: tuple[str, str],
) -> None:
    """Through the app, with the primary itself named as the replica (always level)."""
    url, _schema = pg_schema
    async with running(pg_schema, read_replica_urls=(url,), replica_max_lag=2.0) as it:
        router = it.state.replicas
        assert router is not None
        await until(lambda: router.replicas[0].healthy)
        sid, position = await publish(it, "Routed", 4)
        # The router knows the replica's rows as of its last poll.
        await until(lambda: router.reaches(router.replicas[0], position))
        assert router.reads() == {PRIMARY: 0, router.replicas[0].name: 0}
        body = await gql(
            it.client, STATEMENT, {"id": sid}, headers={"x-min-position": str(position)}
        )
        assert ok(body)["statement"]["title"] == "Routed"
        metrics = (await it.client.get("/metrics")).text
        name = router.replicas[0].name
        assert re.search(
            rf'statements_read_target_queries{{target="{re.escape(name)}"}} 1', metrics
        )
        assert re.search(rf'statements_replica_healthy{{replica="{re.escape(name)}"}} 1', metrics)
        assert re.search(r'statements_read_target_queries{target="primary"} 0', metrics)


def test_replica_settings_are_checked() -> None:
    env = {
        "STATEMENTS_READ_REPLICA_URLS": " postgresql://a:5432/db , postgresql+asyncpg://b/db,",
        "STATEMENTS_REPLICA_MAX_LAG": "0.5",
    }
    settings = Settings.from_env(env)
    assert settings.read_replica_urls == ("postgresql://a:5432/db", "postgresql+asyncpg://b/db")
    assert settings.replica_max_lag == 0.5
    assert Settings.from_env({}).read_replica_urls == ()
    with pytest.raises(ValueError, match="STATEMENTS_READ_REPLICA_URLS must list PostgreSQL"):
        Settings.from_env({"STATEMENTS_READ_REPLICA_URLS": "sqlite:///x.db"})
    with pytest.raises(ValueError, match="STATEMENTS_REPLICA_MAX_LAG must be a number"):
        Settings.from_env({"STATEMENTS_REPLICA_MAX_LAG": "soon"})


async def test_replicas_need_a_postgresql_primary(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="read replicas need a PostgreSQL primary"):
        async with running(
            (f"sqlite:///{tmp_path}/{uuid.uuid4().hex}.db", None),
            read_replica_urls=("postgresql://127.0.0.1/none",),
        ):
            pass


async def _drop(url: str, schema: str) -> None:
    conn = await asyncpg.connect(_plain_dsn(url))
    try:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    finally:
        await conn.close()


async def test_websocket_operations_keep_the_primary(
    pg_schema: tuple[str, str], tmp_path: Path
) -> None:
    """A WebSocket's one context serves every operation of the connection, mutations too: its
    queries are not routed; the same query over HTTP is."""
    url, schema = pg_schema
    env = {"STATEMENTS_READ_REPLICA_URLS": url}
    query = "{ statements(first: 1) { totalCount } }"
    with live_server(
        url,
        tmp_path,
        schema=schema,
        env=env,
        factory="graphql_api.app:app_from_env",
        ready_path="/readyz",
    ) as server:
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:

            async def reads() -> tuple[list[float], list[float]]:
                """Queries read on the replica and on the primary, and the replica's health."""
                text = (await http.get("/metrics")).text
                found = dict(
                    re.findall(
                        r'^statements_read_target_queries\{target="([^"]+)"\} (\S+)$', text, re.M
                    )
                )
                healthy = re.findall(r"^statements_replica_healthy\{[^}]+\} (\S+)$", text, re.M)
                targets = [float(n) for t, n in found.items() if t != "primary"]
                targets.append(float(found.get("primary", "0")))
                return targets, [float(n) for n in healthy]

            for _ in range(300):
                if (await reads())[1] == [1.0]:
                    break
                await asyncio.sleep(0.05)
            async with websockets.connect(
                server.ws_url,
                subprotocols=[websockets.Subprotocol("graphql-transport-ws")],
            ) as ws:
                await ws.send(json.dumps({"type": "connection_init"}))
                assert json.loads(await ws.recv())["type"] == "connection_ack"
                await ws.send(
                    json.dumps({"id": "1", "type": "subscribe", "payload": {"query": query}})
                )
                message = json.loads(await ws.recv())
                assert message["type"] == "next" and "errors" not in message["payload"], message
            # The replica's count first, then the primary's.
            assert await reads() == ([0.0, 0.0], [1.0])
            body = (await http.post("/graphql", json={"query": query})).json()
            assert "errors" not in body, body
            assert await reads() == ([1.0, 0.0], [1.0])
