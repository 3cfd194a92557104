"""Tampering with a log behind the store's back, as an operator with the database could: SQL run
with the triggers that refuse UPDATE and DELETE dropped, and a forger who recomputes the chain
and the Merkle tree after changing an event."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from typing import Any

import asyncpg

from eventstore import open_store
from eventstore.audit import row_hash
from eventstore.merkle import TreeBuilder
from eventstore.planning import Row
from eventstore.tree import row_leaf
from tests.conftest import _plain_dsn

Statement = tuple[str, tuple[Any, ...]]


def read_rows(url: str, schema: str | None) -> list[Row]:
    """Every stored row, in position order."""

    async def read() -> list[Row]:
        store = open_store(url, **({"schema": schema} if schema else {}))
        await store.setup()
        try:
            return [row async for row in store.read_rows()]
        finally:
            await store.close()

    return asyncio.run(read())


def run_sql(url: str, schema: str | None, *statements: Statement) -> None:
    """Run statements ('?' placeholders) on the log's database, its append-only triggers dropped."""
    if url.startswith("sqlite"):
        conn = sqlite3.connect(url.split(":///", 1)[1])
        conn.execute("DROP TRIGGER IF EXISTS events_refuse_update")
        conn.execute("DROP TRIGGER IF EXISTS events_refuse_delete")
        for statement, params in statements:
            conn.execute(statement, params)
        conn.commit()
        conn.close()
        return

    async def go() -> None:
        conn = await asyncpg.connect(_plain_dsn(url), server_settings={"search_path": str(schema)})
        try:
            await conn.execute("DROP TRIGGER IF EXISTS events_refuse_change ON events")
            for statement, params in statements:
                numbered = statement
                for n in range(1, len(params) + 1):
                    numbered = numbered.replace("?", f"${n}", 1)
                await conn.execute(numbered, *params)
        finally:
            await conn.close()

    asyncio.run(go())


def swap(rows: list[Row], first: int, second: int) -> list[Statement]:
    """Exchange the stored events at two positions (each keeps its hash: the chain breaks)."""
    a, b = rows[first - 1], rows[second - 1]
    fields = (
        "stream_id = ?, version = ?, event_id = ?, type = ?, data = ?, recorded_at = ?, hash = ?"
    )

    def put(target: int, source: Row) -> Statement:
        values = (source.stream_id, source.version, source.event_id, source.type, source.data)
        return (
            f"UPDATE events SET {fields} WHERE position = ?",
            (*values, source.recorded_at_us, source.hash, target),
        )

    # Ids and stream versions are unique: park the first row's out of the way.
    park = (
        "UPDATE events SET event_id = ?, version = version + 100000 WHERE position = ?",
        ("00000000-0000-7000-8000-000000000000", first),
    )
    return [park, put(second, a), put(first, b)]


def forge(rows: list[Row], position: int, change: Callable[[str], str]) -> list[Statement]:
    """Change the data of the event at ``position``, then recompute the chain from it and the
    whole Merkle tree, and drop the checkpoints made of the true log, as a careful forger
    would: the forged log verifies on its own."""
    forged = list(rows)
    forged[position - 1] = rows[position - 1]._replace(data=change(rows[position - 1].data))
    assert forged[position - 1].data != rows[position - 1].data, "the change changes nothing"
    builder = TreeBuilder()
    previous = rows[position - 2].hash if position > 1 else bytes(32)
    statements: list[Statement] = [
        ("DELETE FROM merkle_nodes", ()),
        ("DELETE FROM eventstore_checkpoints", ()),
    ]
    for row in forged:
        blob = builder.add(row_leaf(row))
        if row.position >= position:
            row = row._replace(hash=row_hash(previous, row))
            previous = row.hash
        statements.append(
            (
                "UPDATE events SET data = ?, hash = ?, tree = ? WHERE position = ?",
                (row.data, row.hash, blob, row.position),
            )
        )
    return statements
