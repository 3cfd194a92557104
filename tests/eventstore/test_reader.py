"""eventstore.reader: SQL text in, tuples out, on connections of its own; counted; closed with
the engine; a lost PostgreSQL connection is a retryable fault and the next read reconnects."""

from __future__ import annotations

import asyncio
import sqlite3
import sys
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


# --- the SQLite reader's cache -----------------------------------------------------------------


def _items_db(path: Path) -> str:
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA journal_mode = wal")
    conn.execute("CREATE TABLE items (id TEXT PRIMARY KEY, n INTEGER NOT NULL)")
    conn.executemany("INSERT INTO items VALUES (?, ?)", [("a", 1), ("b", 2), ("c", 3)])
    conn.commit()
    conn.close()
    return str(path)


def _counted(reader: SQLiteReader) -> list[str]:
    seen: list[str] = []
    reader.listen(lambda sql, _params: seen.append(sql))
    return seen


ITEMS = "SELECT id, n FROM items WHERE n >= ? ORDER BY id"


async def test_cache_answers_a_repeated_statement_while_nothing_commits(tmp_path: Path) -> None:
    reader = SQLiteReader(_items_db(tmp_path / "r.db"))
    reader.enable_cache(100)
    seen = _counted(reader)
    try:
        first = await reader.fetch(ITEMS, (2,))
        again = await reader.fetch(ITEMS, (2,))
        other = await reader.fetch(ITEMS, (3,))
        assert first == again == [("b", 2), ("c", 3)] and other == [("c", 3)]
        # Only the statements that ran were counted (and sent to the listeners).
        assert seen == [ITEMS, ITEMS]
        assert (reader.cache_hits, reader.cache_misses) == (1, 2)
        # Each caller gets its own list: changing it changes nothing cached.
        again.clear()
        assert await reader.fetch(ITEMS, (2,)) == [("b", 2), ("c", 3)]
    finally:
        await reader.close()


async def test_cache_sees_every_commit_from_another_connection(tmp_path: Path) -> None:
    path = _items_db(tmp_path / "r.db")
    reader = SQLiteReader(path)
    reader.enable_cache(100)
    writer = sqlite3.connect(path, isolation_level=None)
    try:
        assert await reader.fetch(ITEMS, (3,)) == [("c", 3)]
        writer.execute("INSERT INTO items VALUES ('d', 4)")
        assert await reader.fetch(ITEMS, (3,)) == [("c", 3), ("d", 4)]
        writer.execute("UPDATE items SET n = 0 WHERE id = 'c'")
        assert await reader.fetch(ITEMS, (3,)) == [("d", 4)]
        # A rolled-back write changes nothing, and the cache answers again.
        writer.execute("BEGIN")
        writer.execute("DELETE FROM items")
        writer.execute("ROLLBACK")
        hits = reader.cache_hits
        assert await reader.fetch(ITEMS, (3,)) == [("d", 4)]
        assert reader.cache_hits == hits + 1
    finally:
        writer.close()
        await reader.close()


async def test_cache_sees_a_commit_from_another_process(tmp_path: Path) -> None:
    path = _items_db(tmp_path / "r.db")
    reader = SQLiteReader(path)
    reader.enable_cache(100)
    try:
        assert await reader.fetch(ITEMS, (3,)) == [("c", 3)]
        script = (
            "import sqlite3, sys; c = sqlite3.connect(sys.argv[1]);"
            " c.execute(\"INSERT INTO items VALUES ('e', 5)\"); c.commit()"
        )
        process = await asyncio.create_subprocess_exec(sys.executable, "-c", script, path)
        assert await process.wait() == 0
        assert await reader.fetch(ITEMS, (3,)) == [("c", 3), ("e", 5)]
    finally:
        await reader.close()


async def test_cache_is_bounded_by_rows_and_keeps_the_recently_used(tmp_path: Path) -> None:
    reader = SQLiteReader(_items_db(tmp_path / "r.db"))
    reader.enable_cache(16)  # results of more than 16 / 8 = 2 rows are not kept
    seen = _counted(reader)
    try:
        await reader.fetch(ITEMS, (1,))  # 3 rows: too big to keep
        await reader.fetch(ITEMS, (1,))
        assert len(seen) == 2
        for n in range(20):  # 20 results of one or two rows
            await reader.fetch("SELECT id FROM items WHERE n = ? OR id = 'c'", (n,))
        # 16 rows at most: the oldest were dropped, the newest answer from memory.
        count = len(seen)
        await reader.fetch("SELECT id FROM items WHERE n = ? OR id = 'c'", (19,))
        assert len(seen) == count
        await reader.fetch("SELECT id FROM items WHERE n = ? OR id = 'c'", (0,))
        assert len(seen) == count + 1
        assert reader.cache.rows <= 16
    finally:
        await reader.close()


async def test_cache_is_off_unless_enabled_and_can_be_turned_off(tmp_path: Path) -> None:
    reader = SQLiteReader(_items_db(tmp_path / "r.db"))
    seen = _counted(reader)
    try:
        await reader.fetch(ITEMS, (2,))
        await reader.fetch(ITEMS, (2,))
        assert len(seen) == 2 and reader.cache_hits == 0
        reader.enable_cache(100)
        await reader.fetch(ITEMS, (2,))
        await reader.fetch(ITEMS, (2,))
        assert len(seen) == 3
        reader.enable_cache(0)
        await reader.fetch(ITEMS, (2,))
        assert len(seen) == 4
        with pytest.raises(ValueError, match="max_rows"):
            reader.enable_cache(-1)
    finally:
        await reader.close()
