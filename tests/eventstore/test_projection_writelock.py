"""SQLite: the event store's writer and the projection runner queue on one lock per file.

Without it they met in SQLite's busy handler, which sleeps in steps of up to 100 ms and is not
woken when the lock frees: the tail of the live lag.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from eventstore import NewEvent, RecordedEvent, StoreUnavailableError
from eventstore.projection import TableNames
from eventstore.projection_checkpoints import write_transaction
from eventstore.projection_runner import ProjectionRunner
from eventstore.sqlite import SQLiteEventStore
from eventstore.sqlite_lock import write_lock
from eventstore.urls import create_engine


class StreamCounts:
    """Events per stream, written with an upsert per batch."""

    name = "counts"
    version = 1
    types = None
    tables = ("stream_counts",)

    async def create(self, conn: AsyncConnection, tables: TableNames) -> None:
        await conn.execute(
            sa.text(
                f"CREATE TABLE {tables['stream_counts']} "
                "(stream_id TEXT PRIMARY KEY, n BIGINT NOT NULL)"
            )
        )

    async def apply(
        self, conn: AsyncConnection, events: Sequence[RecordedEvent], tables: TableNames
    ) -> None:
        table = tables["stream_counts"]
        for event in events:
            await conn.execute(
                sa.text(
                    f"INSERT INTO {table} (stream_id, n) VALUES (:s, 1) "
                    f"ON CONFLICT (stream_id) DO UPDATE SET n = {table}.n + 1"
                ),
                {"s": event.stream_id},
            )


def _no_busy_wait(dbapi_connection: Any, _record: Any) -> None:
    # SQLite then reports "database is locked" at once instead of sleeping: any write that
    # finds another of this process's writers inside a transaction fails loudly.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA busy_timeout = 0")
    cursor.close()


async def test_store_and_runner_never_meet_in_the_busy_handler(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    url = f"sqlite:///{tmp_path / 'one.db'}"
    store = SQLiteEventStore(url)
    sa.event.listen(store.engine, "connect", _no_busy_wait)
    await store.setup()
    engine = create_engine(url)
    sa.event.listen(engine.sync_engine, "connect", _no_busy_wait)
    runner = ProjectionRunner(store, engine, [StreamCounts()], batch_size=3)
    caplog.set_level(logging.WARNING, logger="eventstore.projection_runner")
    try:
        await runner.start()

        async def client(n: int) -> int:
            position = 0
            for i in range(20):
                result = await store.append(f"s-{n}", [NewEvent("E", {"i": i})])
                position = result.position
            return position

        # 400 appends from 20 concurrent clients while the runner commits small batches: with
        # no busy wait allowed, one collision would fail an append or make the runner retry.
        head = max(await asyncio.gather(*(client(n) for n in range(20))))
        assert await runner.wait_for(head, timeout=30)
    finally:
        await runner.stop()
    async with engine.connect() as conn:
        rows = (await conn.execute(sa.text("SELECT stream_id, n FROM stream_counts"))).all()
    assert {str(s): int(n) for s, n in rows} == {f"s-{n}": 20 for n in range(20)}
    assert not [r for r in caplog.records if "retrying" in r.getMessage()]
    await engine.dispose()
    await store.close()


async def test_a_writer_held_past_the_busy_timeout_fails_appends_clearly(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'one.db'}"
    async with SQLiteEventStore(url, busy_timeout=0.2) as store:
        await store.append("s", [NewEvent("E", {})])
        engine = create_engine(url)
        try:
            async with write_transaction(engine):
                with pytest.raises(StoreUnavailableError, match="locked"):
                    await store.append("s", [NewEvent("E", {})])
            result = await store.append("s", [NewEvent("E", {})])
            assert result.last_version == 2
        finally:
            await engine.dispose()


async def test_an_append_waits_for_a_projection_transaction_then_proceeds(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path / 'one.db'}"
    async with SQLiteEventStore(url) as store:
        engine = create_engine(url)
        try:
            async with write_transaction(engine):
                append = asyncio.ensure_future(store.append("s", [NewEvent("E", {})]))
                await asyncio.sleep(0.1)
                assert not append.done()  # queued behind the transaction, not failed
            assert (await append).last_version == 1
        finally:
            await engine.dispose()


async def test_one_lock_per_file_whatever_its_spelling(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    absolute = str(tmp_path / "one.db")
    roundabout = str(tmp_path / "sub" / ".." / "one.db")
    link = tmp_path / "link.db"
    os.symlink(absolute, link)
    lock = write_lock(absolute)
    assert lock is not None
    assert write_lock(roundabout) is lock
    assert write_lock(str(link)) is lock
    assert write_lock(str(tmp_path / "other.db")) is not lock
    assert write_lock(":memory:") is None
    assert write_lock(None) is None


async def test_projection_transactions_skip_the_fsync_and_leave_the_pool_durable(
    tmp_path: Path,
) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'one.db'}", pool_size=1, max_overflow=0)
    try:
        async with write_transaction(engine) as conn:
            # NORMAL: read models are rebuilt from the log, whose appends stay FULL.
            assert (await conn.exec_driver_sql("PRAGMA synchronous")).scalar() == 1
            await conn.exec_driver_sql("CREATE TABLE t (x INTEGER)")
        with pytest.raises(RuntimeError):
            async with write_transaction(engine) as conn:
                raise RuntimeError("rolled back")
        async with engine.connect() as conn:  # the same pooled connection, back to FULL
            assert (await conn.exec_driver_sql("PRAGMA synchronous")).scalar() == 2
    finally:
        await engine.dispose()


async def test_dml_under_the_write_lock_runs_on_the_loop_thread(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'one.db'}")

    @sa.event.listens_for(engine.sync_engine, "connect")
    def _tid(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.create_function("tid", 0, threading.get_ident)

    loop_thread = threading.get_ident()
    try:
        async with write_transaction(engine) as conn:
            await conn.exec_driver_sql("CREATE TABLE t (label TEXT, thread INTEGER)")
            await conn.exec_driver_sql("INSERT INTO t VALUES ('locked', tid())")
        async with engine.begin() as conn:  # a deferred transaction may still wait for the lock
            await conn.exec_driver_sql("INSERT INTO t VALUES ('deferred', tid())")
        async with engine.connect() as conn:  # nor is the lock assumed after a COMMIT statement
            await conn.exec_driver_sql("BEGIN IMMEDIATE")
            await conn.exec_driver_sql("COMMIT")
            await conn.exec_driver_sql("BEGIN")
            await conn.exec_driver_sql("INSERT INTO t VALUES ('after commit', tid())")
            await conn.exec_driver_sql("COMMIT")
        async with engine.connect() as conn:
            result = await conn.exec_driver_sql("SELECT label, thread FROM t")
            rows = {str(m["label"]): int(m["thread"]) for m in result.mappings()}
    finally:
        await engine.dispose()
    assert rows["locked"] == loop_thread
    assert rows["deferred"] != loop_thread
    assert rows["after commit"] != loop_thread
