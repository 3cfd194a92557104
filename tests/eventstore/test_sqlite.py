"""SQLite specifics: durable settings, schema versioning, the append-only guard, a locked file."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from eventstore import NewEvent, SchemaVersionError, StoreUnavailableError
from eventstore.sqlite import SQLiteEventStore


async def test_wal_and_full_sync_by_default(tmp_path: Path) -> None:
    async with SQLiteEventStore(f"sqlite:///{tmp_path}/e.db") as store:
        await store.append("s", [NewEvent("E", {})])
        conn = store._writer_connection()

        def pragmas() -> tuple[str, int]:
            return (
                conn.execute("PRAGMA journal_mode").fetchone()[0],
                conn.execute("PRAGMA synchronous").fetchone()[0],
            )

        assert await store._writer.run(pragmas) == ("wal", 2)


async def test_newer_schema_is_refused(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/e.db"
    async with SQLiteEventStore(url):
        pass
    with sqlite3.connect(tmp_path / "e.db") as conn:
        conn.execute("UPDATE eventstore_schema SET version = 99")
    store = SQLiteEventStore(url)
    with pytest.raises(SchemaVersionError, match="schema 99"):
        await store.setup()
    await store.close()


async def test_updates_and_deletes_are_refused(tmp_path: Path) -> None:
    async with SQLiteEventStore(f"sqlite:///{tmp_path}/e.db") as store:
        await store.append("s", [NewEvent("E", {})])
    with sqlite3.connect(tmp_path / "e.db") as conn:
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            conn.execute("UPDATE events SET data = '{}'")
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            conn.execute("DELETE FROM events")


async def test_locked_database_gives_a_clear_error_and_recovers(tmp_path: Path) -> None:
    async with SQLiteEventStore(f"sqlite:///{tmp_path}/e.db", busy_timeout=0.2) as store:
        await store.append("s", [NewEvent("E", {})])
        other = sqlite3.connect(tmp_path / "e.db", isolation_level=None)
        other.execute("BEGIN IMMEDIATE")
        with pytest.raises(StoreUnavailableError, match="locked"):
            await store.append("s", [NewEvent("E", {})])
        other.execute("ROLLBACK")
        other.close()
        await asyncio.sleep(0)
        result = await store.append("s", [NewEvent("E", {})])
        assert result.last_version == 2
