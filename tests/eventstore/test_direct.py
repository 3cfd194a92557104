"""Lone appends written from the caller's task, and what cancellation and other writers do to them.

The group committer lets a backend write a lone, uncontended append without the drain task
(eventstore/store.py). These tests pin down the contract that shortcut has to keep: requests
that arrive meanwhile are still batched, a cancelled caller never leaves a write half done or
a lock held, and a writer whose idea of the head has gone stale (another store appended) is
caught by the table's unique keys and decided again, never numbered wrongly.
"""

from __future__ import annotations

import asyncio
import sqlite3
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from eventstore import (
    ANY,
    NO_STREAM,
    ConcurrencyError,
    EventStore,
    NewEvent,
    RecordedEvent,
    StoreUnavailableError,
)
from eventstore.chain import GENESIS_HASH, record_hash
from eventstore.memory import MemoryEventStore
from eventstore.planning import Outcome, PendingAppend
from eventstore.postgres import PostgresEventStore
from eventstore.records import canonical_json
from eventstore.sqlite import SQLiteEventStore
from eventstore.store import DirectWrite

Factory = Callable[..., Awaitable[EventStore]]


def ev(n: int = 0) -> NewEvent:
    return NewEvent("Happened", {"n": n})


class DirectStore(MemoryEventStore):
    """A memory store with a direct write that can be held at a gate, and a log of both paths."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = asyncio.Event()
        self.gate.set()
        self.entered = asyncio.Event()
        self.direct: list[str] = []
        self.batches: list[list[str]] = []

    def _direct_write(self) -> DirectWrite:
        return self._gated_direct

    async def _gated_direct(self, request: PendingAppend) -> Outcome:
        self.direct.append(request.stream_id)
        self.entered.set()
        await self.gate.wait()
        return (await MemoryEventStore._write_batch(self, [request]))[0]

    async def _write_batch(self, batch: list[PendingAppend]) -> list[Outcome]:
        self.batches.append([r.stream_id for r in batch])
        return await super()._write_batch(batch)


def assert_chained(records: list[RecordedEvent]) -> None:
    previous = GENESIS_HASH
    for r in records:
        assert r.hash == record_hash(
            previous,
            r.position,
            r.stream_id,
            r.version,
            str(r.event_id),
            r.type,
            r.schema_version,
            canonical_json(r.data),
            canonical_json(r.metadata),
            r.recorded_at_us,
        )
        previous = r.hash


async def test_sequential_appends_skip_the_queue() -> None:
    store = DirectStore()
    for n in range(5):
        await store.append("s", [ev(n)], n)
    assert store.direct == ["s"] * 5
    assert store.batches == []


async def test_appends_during_a_direct_write_are_batched_until_a_write_has_no_company() -> None:
    store = DirectStore()
    store.gate.clear()
    first = asyncio.create_task(store.append("first", [ev()]))
    await asyncio.wait_for(store.entered.wait(), 5)
    others = [asyncio.create_task(store.append(f"o{i}", [ev(i)])) for i in range(10)]
    await asyncio.sleep(0.01)
    assert store.batches == []  # they wait for the direct write, which holds the writer
    store.gate.set()
    await asyncio.gather(first, *others)
    assert store.batches == [[f"o{i}" for i in range(10)]]
    # The last write had company: the next lone append goes through the queue, and once a
    # write has had none, appends go direct again.
    await store.append("after", [ev()])
    assert store.batches[-1] == ["after"]
    await store.append("alone", [ev()])
    assert store.direct[-1] == "alone"
    assert [r.position for r in store.rows] == list(range(1, 14))


async def test_a_cancelled_direct_caller_does_not_stop_the_queue() -> None:
    store = DirectStore()
    store.gate.clear()
    first = asyncio.create_task(store.append("first", [ev()]))
    await asyncio.wait_for(store.entered.wait(), 5)
    others = [asyncio.create_task(store.append(f"o{i}", [ev(i)])) for i in range(3)]
    await asyncio.sleep(0.01)
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first
    store.gate.set()
    results = await asyncio.gather(*others)
    assert [r.first_position for r in results] == [1, 2, 3]
    assert [r.stream_id for r in store.rows] == ["o0", "o1", "o2"]


# -- SQLite ----------------------------------------------------------------------------------


@pytest.mark.parametrize("writer", ["auto", "thread", "inline"])
async def test_sqlite_lone_appends_are_one_statement_each(tmp_path: Path, writer: str) -> None:
    async with SQLiteEventStore(f"sqlite:///{tmp_path}/e.db", writer=writer) as store:  # type: ignore[arg-type]
        alone = 0
        original = store._insert_at_known_head

        def counted(conn: sqlite3.Connection, batch: list[PendingAppend]) -> list[Outcome] | None:
            nonlocal alone
            outcomes = original(conn, batch)
            alone += outcomes is not None
            return outcomes

        store._insert_at_known_head = counted  # type: ignore[method-assign]
        # The first append reads the head and the stream's version in a transaction; the
        # rest number after what this writer wrote, one autocommit INSERT each.
        for n in range(10):
            await store.append("s", [ev(n)], n)
        assert alone == 9
        assert not store._writer_connection().in_transaction
        records = [r async for r in store.read_all()]
        assert [(r.position, r.version) for r in records] == [(i, i) for i in range(1, 11)]
        assert_chained(records)


async def test_sqlite_cancelled_append_holds_the_lock_until_its_commit(tmp_path: Path) -> None:
    path = tmp_path / "e.db"
    async with SQLiteEventStore(f"sqlite:///{path}", busy_timeout=5) as store:
        await store.append("s", [ev(0)], NO_STREAM)
        # Another connection holds SQLite's write lock, so the writer thread's INSERT waits.
        other = sqlite3.connect(path, isolation_level=None)
        other.execute("BEGIN IMMEDIATE")
        cancelled = asyncio.create_task(store.append("s", [ev(1)], 1))
        await asyncio.sleep(0.1)
        cancelled.cancel()
        with pytest.raises(asyncio.CancelledError):
            await cancelled
        # The write is still in flight on the thread: the process's write lock stays taken,
        # so the next append waits behind it instead of overlapping it.
        following = asyncio.create_task(store.append("s", [ev(2)], ANY))
        await asyncio.sleep(0.1)
        assert not following.done()
        other.execute("ROLLBACK")
        other.close()
        result = await asyncio.wait_for(following, 5)
        # The cancelled append committed first (nothing undid it), whole.
        assert (result.first_position, result.first_version) == (3, 3)
        records = [r async for r in store.read_all()]
        assert [(r.position, r.version, r.data["n"]) for r in records] == [
            (1, 1, 0),
            (2, 2, 1),
            (3, 3, 2),
        ]
        assert not store._writer_connection().in_transaction


async def test_sqlite_batches_to_new_or_known_streams_are_one_statement(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/e.db"
    async with SQLiteEventStore(url) as store, SQLiteEventStore(url) as other:
        statements = 0
        original = store._insert_at_known_head

        def counted(conn: sqlite3.Connection, batch: list[PendingAppend]) -> list[Outcome] | None:
            nonlocal statements
            outcomes = original(conn, batch)
            statements += outcomes is not None
            return outcomes

        store._insert_at_known_head = counted  # type: ignore[method-assign]
        await store.append("first", [ev(0)], NO_STREAM)
        for n in range(3):
            await store.append(f"new-{n}", [ev(i) for i in range(100)], NO_STREAM)
        assert statements == 3
        # A stream the writer has not seen is assumed empty only for NO_STREAM or 0, and a
        # wrong assumption fails on the (stream_id, version) index, writing nothing.
        await other.append("theirs", [ev(1), ev(2)], NO_STREAM)
        with pytest.raises(ConcurrencyError) as info:
            await store.append("theirs", [ev(3)], NO_STREAM)
        assert info.value.actual == 2
        with pytest.raises(ConcurrencyError):
            await store.append("theirs", [ev(3)], 0)
        result = await store.append("theirs", [ev(3)], 2)
        assert (result.first_position, result.first_version) == (304, 3)
        records = [r async for r in store.read_all()]
        assert [r.position for r in records] == list(range(1, 305))
        assert_chained(records)


class FailingCommit:
    """A sqlite3 connection whose next COMMIT fails, as on a full disk."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        self.fail = True

    def __getattr__(self, name: str) -> object:
        return getattr(self.conn, name)

    def execute(self, statement: str, *args: Any) -> sqlite3.Cursor:
        if statement == "COMMIT" and self.fail:
            self.fail = False
            raise sqlite3.OperationalError("database or disk is full")
        return self.conn.execute(statement, *args)


@pytest.mark.parametrize("writer", ["auto", "thread", "inline"])
async def test_sqlite_a_failed_commit_leaves_no_gap(tmp_path: Path, writer: str) -> None:
    async with SQLiteEventStore(f"sqlite:///{tmp_path}/e.db", writer=writer) as store:  # type: ignore[arg-type]
        await store.append("s", [ev(0)], NO_STREAM)
        conn = store._writer_connection()
        store._writer_sqlite = FailingCommit(conn)  # type: ignore[assignment]
        # ANY on a stream the writer has not seen needs a transaction; its COMMIT fails after
        # the batch was planned at position 2.
        with pytest.raises(StoreUnavailableError, match="full"):
            await store.append("t", [ev(1)], ANY)
        assert not conn.in_transaction
        # The next append must be numbered after the committed head, not the planned one.
        result = await store.append("s", [ev(2)], 1)
        assert result.first_position == 2
        records = [r async for r in store.read_all()]
        assert [r.position for r in records] == [1, 2]
        assert_chained(records)


async def test_sqlite_auto_writer_commits_lone_appends_on_the_loop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # What is tested is the path, not the disk: a loaded machine's slow fsyncs would send the
    # appends to the thread, as they should there.
    monkeypatch.setattr("eventstore.sqlite.INLINE_COMMIT_BUDGET", 60.0)
    async with SQLiteEventStore(f"sqlite:///{tmp_path}/e.db") as store:
        assert store.writer_mode == "auto"
        for n in range(5):
            await store.append("s", [ev(n)], n)
        # The first may read the head on the writer thread; every later one is on the loop.
        on_loop = store._loop_commits
        assert on_loop >= 4
        conn = store._loop_connection()
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
        assert conn.execute("PRAGMA busy_timeout").fetchone()[0] == 0
        assert conn.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 0
        # Slow commits (a slow disk) send lone appends back to the writer thread.
        store._commit_seconds = 120.0
        await store.append("s", [ev(5)], 5)
        assert store._loop_commits == on_loop
        records = [r async for r in store.read_all()]
        assert [r.version for r in records] == [1, 2, 3, 4, 5, 6]
        assert_chained(records)


async def test_sqlite_auto_writer_never_waits_for_a_lock_on_the_loop(tmp_path: Path) -> None:
    path = tmp_path / "e.db"
    async with SQLiteEventStore(f"sqlite:///{path}", busy_timeout=5) as store:
        await store.append("s", [ev(0)], NO_STREAM)
        other = sqlite3.connect(path, isolation_level=None)
        other.execute("BEGIN IMMEDIATE")
        append = asyncio.create_task(store.append("s", [ev(1)], 1))
        started = asyncio.get_running_loop().time()
        await asyncio.sleep(0.05)
        # The loop ran on time: the append waits for the lock on the writer thread.
        assert asyncio.get_running_loop().time() - started < 0.5
        assert not append.done()
        other.execute("ROLLBACK")
        other.close()
        result = await asyncio.wait_for(append, 5)
        assert result.last_version == 2
        assert store._loop_commits == 0


async def test_sqlite_auto_writer_shares_the_loop_and_checkpoints_on_the_thread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("eventstore.sqlite._CHECKPOINT_PAGES", 30)  # about every 10 appends
    # Deterministic whatever the disk: every commit on the loop (however slow), and a turn
    # for the loop after every commit that follows one without a turn.
    monkeypatch.setattr("eventstore.sqlite.INLINE_COMMIT_BUDGET", 60.0)
    monkeypatch.setattr("eventstore.sqlite._MAX_LOOP_HOLD", 0.0)
    async with SQLiteEventStore(f"sqlite:///{tmp_path}/e.db") as store:
        checkpoints = 0
        original = store._checkpoint_sync

        def counted() -> None:
            nonlocal checkpoints
            original()
            checkpoints += 1

        store._checkpoint_sync = counted  # type: ignore[method-assign]
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0)

        other_task = asyncio.create_task(ticker())
        # A client appending in a tight loop: commits on the loop's thread never suspend it,
        # so the store has to give the loop a turn now and then.
        for n in range(60):
            await store.append("s", [ev(n)], n)
        other_task.cancel()
        assert store._loop_commits == 59
        assert ticks >= 25
        assert checkpoints >= 3
        assert [r.version async for r in store.read_all()] == list(range(1, 61))


# -- every backend ---------------------------------------------------------------------------


async def test_a_stale_writer_is_caught_and_decided_again(store_factory: Factory) -> None:
    first, second = await store_factory(), await store_factory()
    await first.append("s", [ev(1)], NO_STREAM)
    await first.append("t", [ev(2)], NO_STREAM)
    # The second store appends behind the first one's back: the first still believes the head
    # is 2 and "s" is at version 1.
    await second.append("s", [ev(3)], 1)
    with pytest.raises(ConcurrencyError) as info:
        await first.append("s", [ev(4)], 1)
    assert (info.value.expected, info.value.actual) == (1, 2)
    await second.append("u", [ev(5)], NO_STREAM)
    result = await first.append("t", [ev(6)], 1)  # "t" is unchanged, but the head moved
    assert (result.first_position, result.first_version) == (5, 2)
    result = await first.append("s", [ev(7)], ANY)
    assert (result.first_position, result.first_version) == (6, 3)
    records = [r async for r in first.read_all()]
    assert [r.position for r in records] == [1, 2, 3, 4, 5, 6]
    assert_chained(records)


async def test_a_retry_on_the_fast_path_returns_the_original_result(store: EventStore) -> None:
    event = NewEvent("Happened", {"n": 1}, event_id=uuid.uuid4())
    await store.append("s", [ev(0)], NO_STREAM)  # the writer now knows the head and "s"
    original = await store.append("s", [event], ANY)
    assert await store.append("s", [event], ANY) == original
    assert await store.append("s", [event], 1) == original
    assert await store.head_position() == 2


# -- PostgreSQL ------------------------------------------------------------------------------


@pytest.mark.postgres
async def test_postgres_cancelled_append_ends_its_session_and_the_log_stays_whole(
    pg_schema: tuple[str, str],
) -> None:
    url, schema = pg_schema
    async with PostgresEventStore(url, schema=schema) as store:
        await store.append("s", [ev(0)], NO_STREAM)
        await store.append("s", [ev(1)], 1)
        assert store._writer_conn is not None
        writer_pid = store._writer_conn[1].get_server_pid()
        # Another session holds the append lock, so the one-statement append waits on it.
        dsn = store.engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
        holder = await asyncpg.connect(dsn, server_settings={"search_path": schema})
        transaction = holder.transaction()
        await transaction.start()
        await holder.execute("SELECT pg_advisory_xact_lock($1)", store._lock_key)
        cancelled = asyncio.create_task(store.append("s", [ev(2)], 2))
        await asyncio.sleep(0.2)
        cancelled.cancel()
        with pytest.raises(asyncio.CancelledError):
            await cancelled
        assert store._writer_conn is None  # that session is abandoned, not reused
        following = asyncio.create_task(store.append("s", [ev(3)], ANY))
        await asyncio.sleep(0.2)
        assert not following.done()  # it waits for the lock like everybody else
        await transaction.rollback()
        await holder.close()
        result = await asyncio.wait_for(following, 10)
        # The abandoned statement may have committed before it noticed, or not: either way
        # the log is contiguous and the later append numbered after whatever is there.
        records = [r async for r in store.read_all()]
        assert [r.position for r in records] == list(range(1, len(records) + 1))
        assert [r.version for r in records] == list(range(1, len(records) + 1))
        assert records[-1].data["n"] == 3 and result.last_position == len(records)
        assert [r.data["n"] for r in records[:2]] == [0, 1]
        assert len(records) in (3, 4)
        assert_chained(records)
        assert store._writer_conn is not None
        assert store._writer_conn[1].get_server_pid() != writer_pid
