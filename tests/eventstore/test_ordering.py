"""A transaction held open must never let a tailing reader pass it (SQLite and PostgreSQL)."""

from __future__ import annotations

import asyncio
import sqlite3
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
import pytest

from eventstore import EventStore, NewEvent
from eventstore.audit import verify
from eventstore.chain import GENESIS_HASH, record_encoding, record_hash
from eventstore.merkle import append_leaf, leaf_hash
from eventstore.postgres import PostgresEventStore
from eventstore.sqlite import SQLiteEventStore
from eventstore.store import now_us

Factory = Callable[..., Awaitable[EventStore]]


def _row(position: int, previous: bytes, frontier: list[bytes]) -> tuple[Any, ...]:
    """The row another writer appends after ``position - 1``, with its chain link and its
    Merkle nodes (``frontier``: the tree's, at the head)."""
    event_id = str(uuid.uuid4())
    stamp = now_us()
    fields = (position, "held", 1, event_id, "Held", 1, "{}", "{}", stamp)
    digest = record_hash(previous, *fields)
    nodes = append_leaf(frontier, position - 1, leaf_hash(record_encoding(*fields)))
    return (*fields, digest, nodes)


_INSERT = (
    "INSERT INTO events (position, stream_id, version, event_id, type, schema_version, data, "
    "metadata, recorded_at, hash, tree) VALUES "
)


async def _hold_sqlite(store: SQLiteEventStore) -> tuple[Callable[[], Awaitable[None]], int]:
    conn = sqlite3.connect(store.path, isolation_level=None, check_same_thread=False)
    conn.execute("BEGIN IMMEDIATE")
    head = conn.execute(
        "SELECT position, hash, tree FROM events ORDER BY position DESC LIMIT 1"
    ).fetchone()
    assert head[0] == 1  # one event before: the tree's frontier is its leaf
    position = head[0] + 1
    conn.execute(f"{_INSERT} (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", _row(position, head[1], [head[2]]))

    async def commit() -> None:
        conn.execute("COMMIT")
        conn.close()

    return commit, position


async def _hold_postgres(store: PostgresEventStore) -> tuple[Callable[[], Awaitable[None]], int]:
    url = store.engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
    conn = await asyncpg.connect(url, server_settings={"search_path": store.schema})
    transaction = conn.transaction()
    await transaction.start()
    # The same lock every append takes first; the row is numbered under it.
    head = await conn.fetchrow(
        "SELECT * FROM eventstore_begin_append($1, $2::text[])", store._lock_key, ["held"]
    )
    position = (head["head_position"] or 0) + 1
    assert position == 2  # one event before: the tree's frontier is its leaf
    previous = bytes(head["head_hash"]) if head["head_hash"] is not None else GENESIS_HASH
    leaf = bytes(await conn.fetchval("SELECT tree FROM events WHERE position = 1"))
    row = list(_row(position, previous, [leaf]))
    row[3] = uuid.UUID(row[3])
    await conn.execute(f"{_INSERT} ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)", *row)

    async def commit() -> None:
        await transaction.commit()
        await conn.close()

    return commit, position


@pytest.mark.parametrize(
    "backend", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
)
async def test_reader_does_not_pass_a_transaction_held_open(store_factory: Factory) -> None:
    store = await store_factory(poll_interval=0.05)
    await store.append("before", [NewEvent("E", {})])
    if isinstance(store, SQLiteEventStore):
        commit, held_position = await _hold_sqlite(store)
    else:
        assert isinstance(store, PostgresEventStore)
        commit, held_position = await _hold_postgres(store)

    seen: list[tuple[int, str]] = []

    async def tail() -> None:
        async for record in store.subscribe(0):
            seen.append((record.position, record.stream_id))
            if record.stream_id == "after":
                return

    reader = asyncio.create_task(tail())
    # The second writer queues behind the held transaction; nothing may appear meanwhile.
    writer = asyncio.create_task(store.append("after", [NewEvent("E", {})]))
    await asyncio.sleep(0.5)
    assert seen == [(1, "before")]
    assert not writer.done()
    await commit()
    result = await asyncio.wait_for(writer, 10)
    await asyncio.wait_for(reader, 10)
    assert result.first_position == held_position + 1
    assert seen == [(1, "before"), (held_position, "held"), (held_position + 1, "after")]
    # The writer that queued behind the held one followed its tree too.
    assert (await verify(store)).ok
