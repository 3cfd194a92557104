"""The sqlite+inline engine: reads on the loop's thread, writes on a thread, same semantics."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from eventstore.sqlite_inline import InlineConnection, is_read_only
from eventstore.urls import create_engine

metadata = sa.MetaData()
items = sa.Table(
    "items",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("name", sa.String, nullable=False, unique=True),
    sa.Column("thread", sa.Integer),
)


@pytest.mark.parametrize(
    ("statement", "read"),
    [
        ("SELECT 1", True),
        ("  select * from items", True),
        ("WITH x AS (SELECT 1) SELECT * FROM x", True),
        ("WITH x AS (SELECT 1) INSERT INTO items SELECT * FROM x", False),
        ("INSERT INTO items VALUES (1)", False),
        ("UPDATE items SET name = 'a'", False),
        ("BEGIN IMMEDIATE", False),
        ("PRAGMA journal_mode = WAL", False),
        ("PRAGMA journal_mode", True),
        ("PRAGMA busy_timeout = 5000", True),
        ('PRAGMA main.table_info("items")', True),
        ("PRAGMA wal_checkpoint(TRUNCATE)", False),
        ("PRAGMA optimize", False),
        ("/* comment */ SELECT 1", False),
        ("SELECTED", False),
    ],
)
def test_only_plain_reads_count_as_read_only(statement: str, read: bool) -> None:
    assert is_read_only(statement) is read


def _with_thread_function(engine: AsyncEngine) -> None:
    @sa.event.listens_for(engine.sync_engine, "connect")
    def _tid(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.create_function("tid", 0, threading.get_ident)


@pytest.fixture
async def engine(tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(f"sqlite:///{tmp_path / 'inline.db'}", busy_timeout=2.0)
    _with_thread_function(engine)
    async with engine.begin() as conn:
        await conn.run_sync(metadata.create_all)
    yield engine
    await engine.dispose()


async def _names(conn: AsyncConnection) -> list[str]:
    return list((await conn.scalars(sa.select(items.c.name).order_by(items.c.id))).all())


async def test_the_engine_uses_the_inline_dialect_and_keeps_the_pragmas(
    engine: AsyncEngine,
) -> None:
    assert engine.dialect.name == "sqlite"
    assert engine.dialect.driver == "inline"
    async with engine.connect() as conn:
        assert (await conn.exec_driver_sql("PRAGMA journal_mode")).scalar() == "wal"
        assert (await conn.exec_driver_sql("PRAGMA synchronous")).scalar() == 2  # FULL
        assert (await conn.exec_driver_sql("PRAGMA busy_timeout")).scalar() == 2000


async def test_reads_run_on_the_loop_thread_and_writes_on_another(engine: AsyncEngine) -> None:
    loop_thread = threading.get_ident()
    async with engine.begin() as conn:
        await conn.execute(items.insert().values(name="a", thread=sa.func.tid()))
    async with engine.connect() as conn:
        row = (await conn.execute(sa.select(items.c.thread, sa.func.tid()))).one()
    assert row[1] == loop_thread
    assert row[0] != loop_thread


async def test_a_read_only_connection_starts_no_thread(tmp_path: Path) -> None:
    path = tmp_path / "ro.db"
    with contextlib.closing(sqlite3.connect(path)) as setup:
        setup.execute("PRAGMA journal_mode = WAL")  # switching a new file to WAL is a write
    engine = create_engine(f"sqlite:///{path}")
    try:
        async with engine.connect() as conn:
            assert (await conn.execute(sa.text("SELECT 41 + 1"))).scalar_one() == 42
            raw = await conn.get_raw_connection()
            inline = raw.dbapi_connection
            assert isinstance(inline, InlineConnection)
            assert not inline.writer_started
            await conn.exec_driver_sql("CREATE TABLE t (x INTEGER)")
            assert inline.writer_started
    finally:
        await engine.dispose()


async def test_commit_rollback_and_errors_keep_their_semantics(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        await conn.execute(items.insert(), [{"name": "a"}, {"name": "b"}])
    with pytest.raises(RuntimeError):
        async with engine.begin() as conn:
            await conn.execute(items.insert().values(name="c"))
            assert await _names(conn) == ["a", "b", "c"]  # own write visible inside
            raise RuntimeError("roll back")
    with pytest.raises(sa.exc.IntegrityError):
        async with engine.begin() as conn:
            await conn.execute(items.insert().values(name="d"))
            await conn.execute(items.insert().values(name="a"))
    async with engine.connect() as conn:
        assert await _names(conn) == ["a", "b"]
        inserted = await conn.execute(items.insert().values(name="e").returning(items.c.id))
        assert inserted.scalar_one() == 3
        await conn.rollback()
        assert await _names(conn) == ["a", "b"]


async def test_begin_immediate_transactions_commit_and_roll_back(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        await conn.exec_driver_sql("BEGIN IMMEDIATE")
        await conn.execute(items.insert().values(name="kept"))
    with pytest.raises(RuntimeError):
        async with engine.begin() as conn:
            await conn.exec_driver_sql("BEGIN IMMEDIATE")
            await conn.execute(items.insert().values(name="dropped"))
            raise RuntimeError("roll back")
    async with engine.connect() as conn:
        assert await _names(conn) == ["kept"]


async def test_a_writer_waiting_for_the_lock_does_not_block_the_loop(engine: AsyncEngine) -> None:
    """B waits for A's write lock on its thread while A (same loop) goes on and commits."""
    a_holds = asyncio.Event()
    order: list[str] = []

    async def a() -> None:
        async with engine.begin() as conn:
            await conn.exec_driver_sql("BEGIN IMMEDIATE")
            await conn.execute(items.insert().values(name="a"))
            a_holds.set()
            await asyncio.sleep(0.2)  # the loop must keep running while B waits
            order.append("a commits")

    async def b() -> None:
        await a_holds.wait()
        async with engine.begin() as conn:
            await conn.exec_driver_sql("BEGIN IMMEDIATE")
            order.append("b has the lock")
            await conn.execute(items.insert().values(name="b"))

    async def reader() -> list[str]:
        await a_holds.wait()
        async with engine.connect() as conn:
            return await _names(conn)  # WAL: a reader sees the last commit, never waits

    _, _, seen = await asyncio.wait_for(asyncio.gather(a(), b(), reader()), timeout=5)
    assert seen == []
    assert order == ["a commits", "b has the lock"]
    async with engine.connect() as conn:
        assert await _names(conn) == ["a", "b"]


async def test_a_cancelled_write_does_not_overlap_the_next_call(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        await conn.execute(items.insert(), [{"name": f"n{i}"} for i in range(200)])

    async def slow_write() -> None:
        async with engine.begin() as conn:
            heavy = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c LIMIT 300000)"
            await conn.exec_driver_sql(
                f"{heavy} UPDATE items SET thread = (SELECT count(*) FROM c) WHERE id = 1"
            )

    task = asyncio.create_task(slow_write())
    await asyncio.sleep(0.005)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    async with engine.connect() as conn:
        assert len(await _names(conn)) == 200


async def test_a_memory_database_works(tmp_path: Path) -> None:
    engine = create_engine("sqlite://")
    try:
        async with engine.begin() as conn:
            await conn.run_sync(metadata.create_all)
            await conn.execute(items.insert().values(name="m"))
        async with engine.connect() as conn:
            assert await _names(conn) == ["m"]
    finally:
        await engine.dispose()


async def test_aiosqlite_can_still_be_chosen(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'a.db'}", sqlite_inline=False)
    try:
        assert engine.dialect.driver == "aiosqlite"
        async with engine.connect() as conn:
            assert (await conn.execute(sa.text("SELECT 1"))).scalar_one() == 1
    finally:
        await engine.dispose()
