"""eventstore.reader: SQL text in, tuples out, on connections of its own; counted; closed with
the engine; a lost PostgreSQL connection is a retryable fault and the next read reconnects."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from eventstore.errors import StoreUnavailableError
from eventstore.reader import (
    EngineReader,
    PostgresReader,
    SQLiteReader,
    on_statement,
    reader_for,
)
from eventstore.urls import create_engine

READER_BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]


@pytest.fixture(params=READER_BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def engine(database: tuple[str, str]) -> AsyncIterator[AsyncEngine]:
    url, schema = database
    engine = create_engine(url, schema=schema or None)
    async with engine.begin() as conn:
        await conn.exec_driver_sql("CREATE TABLE items (id TEXT PRIMARY KEY, n INTEGER NOT NULL)")
        await conn.exec_driver_sql("INSERT INTO items VALUES ('a', 1), ('b', 2), ('c', 3)")
    yield engine
    await engine.dispose()


def _sql(engine: AsyncEngine, sqlite: str, postgres: str) -> str:
    return postgres if engine.dialect.name == "postgresql" else sqlite


async def test_rows_are_tuples_of_driver_values(engine: AsyncEngine) -> None:
    reader = reader_for(engine)
    sql = _sql(
        engine,
        "SELECT id, n FROM items WHERE n >= ? ORDER BY id",
        "SELECT id, n FROM items WHERE n >= $1 ORDER BY id",
    )
    assert await reader.fetch(sql, (2,)) == [("b", 2), ("c", 3)]
    assert await reader.fetch(sql, (9,)) == []


async def test_one_reader_per_engine_on_its_own_connections(engine: AsyncEngine) -> None:
    reader = reader_for(engine)
    assert reader_for(engine) is reader
    expected = PostgresReader if engine.dialect.name == "postgresql" else SQLiteReader
    assert isinstance(reader, expected)
    # The engine's listeners do not see the reader's statements; the reader's own do.
    engine_seen: list[str] = []
    reader_seen: list[str] = []

    def on_engine(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        engine_seen.append(statement)

    sa.event.listen(engine.sync_engine, "before_cursor_execute", on_engine)
    reader.listen(lambda statement, _params: reader_seen.append(statement))
    await reader.fetch("SELECT count(*) FROM items")
    sa.event.remove(engine.sync_engine, "before_cursor_execute", on_engine)
    assert engine_seen == []
    assert reader_seen == ["SELECT count(*) FROM items"]


async def test_on_statement_sees_engine_and_reader_once_each(engine: AsyncEngine) -> None:
    seen: list[tuple[str, Any]] = []
    stop = on_statement(engine, lambda statement, params: seen.append((statement, params)))
    sql = _sql(engine, "SELECT n FROM items WHERE id = ?", "SELECT n FROM items WHERE id = $1")
    assert await reader_for(engine).fetch(sql, ("a",)) == [(1,)]
    async with engine.connect() as conn:
        await conn.execute(sa.text("SELECT 1"))
    assert [s for s, _ in seen] == [sql, "SELECT 1"]
    assert tuple(seen[0][1]) == ("a",)
    stop()
    await reader_for(engine).fetch(sql, ("a",))
    assert len(seen) == 2


async def test_sees_what_others_commit(engine: AsyncEngine) -> None:
    reader = reader_for(engine)
    assert await reader.fetch("SELECT count(*) FROM items") == [(3,)]
    async with engine.begin() as conn:
        await conn.exec_driver_sql("INSERT INTO items VALUES ('d', 4)")
    assert await reader.fetch("SELECT count(*) FROM items") == [(4,)]


async def test_bad_sql_raises_and_the_reader_goes_on(engine: AsyncEngine) -> None:
    reader = reader_for(engine)
    # The driver's own error: a bug in the SQL is not a retryable fault.
    with pytest.raises((sqlite3.OperationalError, asyncpg.UndefinedColumnError)):
        await reader.fetch("SELECT nope FROM items")
    assert await reader.fetch("SELECT count(*) FROM items") == [(3,)]


async def test_disposing_the_engine_closes_the_reader_and_it_reopens(
    engine: AsyncEngine,
) -> None:
    reader = reader_for(engine)
    await reader.fetch("SELECT count(*) FROM items")
    await engine.dispose()
    if isinstance(reader, SQLiteReader):
        assert reader._conn is None
    elif isinstance(reader, PostgresReader):
        assert reader._idle == []
    assert await reader.fetch("SELECT count(*) FROM items") == [(3,)]


async def test_concurrent_reads_share_a_bounded_pool(engine: AsyncEngine) -> None:
    reader = reader_for(engine)
    sql = _sql(engine, "SELECT n FROM items WHERE id = ?", "SELECT n FROM items WHERE id = $1")
    results = await asyncio.gather(*(reader.fetch(sql, (k,)) for k in "abc" * 20))
    assert results == [[(n,)] for n in (1, 2, 3) * 20]
    if isinstance(reader, PostgresReader):
        assert 1 <= len(reader._idle) <= reader._max_size


async def test_sqlite_reader_refuses_writes(tmp_path: Path) -> None:
    path = tmp_path / "r.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE t (x INTEGER)")
    conn.close()
    reader = SQLiteReader(str(path))
    try:
        with pytest.raises(sqlite3.OperationalError, match="readonly"):
            await reader.fetch("INSERT INTO t VALUES (1)")
        assert await reader.fetch("SELECT count(*) FROM t") == [(0,)]
    finally:
        await reader.close()


async def test_in_memory_sqlite_reads_through_the_engine() -> None:
    engine = create_engine("sqlite:///:memory:")
    try:
        async with engine.begin() as conn:
            await conn.exec_driver_sql("CREATE TABLE t (x INTEGER)")
            await conn.exec_driver_sql("INSERT INTO t VALUES (7)")
        reader = reader_for(engine)
        assert isinstance(reader, EngineReader)
        seen: list[str] = []
        stop = on_statement(engine, lambda statement, _params: seen.append(statement))
        assert await reader.fetch("SELECT x FROM t WHERE x = ?", (7,)) == [(7,)]
        stop()
        assert seen == ["SELECT x FROM t WHERE x = ?"]  # once, not once per listener path
    finally:
        await engine.dispose()


@pytest.mark.postgres
async def test_postgres_reader_uses_the_engines_search_path(
    pg_schema: tuple[str, str],
) -> None:
    url, schema = pg_schema
    engine = create_engine(url, schema=schema)
    try:
        async with engine.begin() as conn:
            await conn.exec_driver_sql("CREATE TABLE only_here (x INTEGER)")
        # Unqualified: found only through the schema the engine sets.
        assert await reader_for(engine).fetch("SELECT count(*) FROM only_here") == [(0,)]
    finally:
        await engine.dispose()


@pytest.mark.postgres
async def test_postgres_lost_connection_is_retryable_and_the_next_read_reconnects(
    pg_schema: tuple[str, str],
) -> None:
    url, schema = pg_schema
    engine = create_engine(url, schema=schema)
    try:
        reader = reader_for(engine)
        assert isinstance(reader, PostgresReader)
        pid = (await reader.fetch("SELECT pg_backend_pid()"))[0][0]
        # The one pooled connection runs a long statement; its server process is killed.
        sleeping = asyncio.ensure_future(reader.fetch("SELECT pg_sleep(10)"))
        await asyncio.sleep(0.2)
        async with engine.connect() as conn:
            await conn.execute(sa.text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
        with pytest.raises(StoreUnavailableError):
            await asyncio.wait_for(sleeping, 5)
        # The dead connection was dropped, not returned to the pool.
        new_pid = (await reader.fetch("SELECT pg_backend_pid()"))[0][0]
        assert new_pid != pid
    finally:
        await engine.dispose()


@pytest.mark.postgres
async def test_postgres_cancelled_read_leaves_a_usable_pool(pg_schema: tuple[str, str]) -> None:
    url, schema = pg_schema
    engine = create_engine(url, schema=schema)
    try:
        reader = reader_for(engine)
        task = asyncio.ensure_future(reader.fetch("SELECT pg_sleep(5)"))
        await asyncio.sleep(0.2)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert await reader.fetch("SELECT 1") == [(1,)]
    finally:
        await engine.dispose()
