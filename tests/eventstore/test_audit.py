"""Tampering made directly in the database is found at the right position; export round-trips."""

from __future__ import annotations

import sqlite3
from collections.abc import Awaitable, Callable
from pathlib import Path

import asyncpg
import pytest

from eventstore import EventStore, NewEvent
from eventstore.audit import Anchor, RestoreError, export_file, restore_file, verify
from eventstore.postgres import PostgresEventStore
from eventstore.sqlite import SQLiteEventStore

Factory = Callable[..., Awaitable[EventStore]]
BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]


async def _fill(store: EventStore) -> Anchor:
    for i in range(10):
        await store.append(f"s{i % 3}", [NewEvent("E", {"i": i, "text": "Привет"}, {"actor": "a"})])
    verification = await verify(store)
    assert verification.ok and verification.checked == 10
    return verification.head


async def _tamper(store: EventStore, *statements: str) -> None:
    """Run SQL as a superuser would, with the append-only triggers out of the way."""
    if isinstance(store, SQLiteEventStore):
        conn = sqlite3.connect(store.path, isolation_level=None)
        conn.execute("DROP TRIGGER events_refuse_update")
        conn.execute("DROP TRIGGER events_refuse_delete")
        for statement in statements:
            conn.execute(statement)
        conn.close()
        return
    assert isinstance(store, PostgresEventStore)
    url = store.engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
    conn = await asyncpg.connect(url, server_settings={"search_path": store.schema})
    try:
        await conn.execute("SET session_replication_role = replica")
        for statement in statements:
            await conn.execute(statement)
    finally:
        await conn.close()


FLIP = {
    "sqlite": "UPDATE events SET data = replace(data, '\"i\":4', '\"i\":5') WHERE position = 5",
    "postgresql": "UPDATE events SET data = replace(data, '\"i\":4', '\"i\":5') WHERE position = 5",
}


@pytest.mark.parametrize("backend", BACKENDS)
async def test_flipped_byte_in_data_is_altered(store_factory: Factory, backend: str) -> None:
    store = await store_factory()
    await _fill(store)
    await _tamper(store, FLIP[backend])
    result = await verify(store)
    assert (result.ok, result.position, result.problem) == (False, 5, "altered")
    assert result.checked == 4


@pytest.mark.parametrize("backend", BACKENDS)
async def test_deleted_row_is_missing(store_factory: Factory) -> None:
    store = await store_factory()
    await _fill(store)
    await _tamper(store, "DELETE FROM events WHERE position = 6")
    result = await verify(store)
    assert (result.position, result.problem) == (6, "missing")


@pytest.mark.parametrize("backend", BACKENDS)
async def test_swapped_rows_are_reordered(store_factory: Factory) -> None:
    store = await store_factory()
    await _fill(store)
    await _tamper(
        store,
        "UPDATE events SET position = -1 WHERE position = 5",
        "UPDATE events SET position = 5 WHERE position = 6",
        "UPDATE events SET position = 6 WHERE position = -1",
    )
    result = await verify(store)
    assert (result.position, result.problem) == (5, "reordered")
    assert "belongs at position 5" in result.detail


@pytest.mark.parametrize("backend", BACKENDS)
async def test_truncated_tail_against_expected_head(store_factory: Factory) -> None:
    store = await store_factory()
    head = await _fill(store)
    await _tamper(store, "DELETE FROM events WHERE position > 7")
    assert (await verify(store)).ok, "a truncated chain is sound on its own"
    result = await verify(store, expect_head=head)
    assert (result.position, result.problem) == (8, "truncated")


@pytest.mark.parametrize("backend", BACKENDS)
async def test_altered_metadata_is_found(store_factory: Factory) -> None:
    store = await store_factory()
    await _fill(store)
    await _tamper(store, 'UPDATE events SET metadata = \'{"actor":"mallory"}\' WHERE position = 3')
    result = await verify(store)
    assert (result.position, result.problem) == (3, "altered")


@pytest.mark.parametrize("backend", BACKENDS)
async def test_verify_a_range_and_a_forged_head(store_factory: Factory) -> None:
    store = await store_factory()
    head = await _fill(store)
    assert (await verify(store, 4, 8)).checked == 5
    forged = Anchor(head.position, bytes(32))
    result = await verify(store, expect_head=forged)
    assert (result.ok, result.problem) == (False, "altered")


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("suffix", [".jsonl", ".jsonl.gz"])
async def test_export_import_export_is_byte_identical(
    store_factory: Factory, database: tuple[str, str], tmp_path: Path, suffix: str
) -> None:
    source = await store_factory()
    await _fill(source)
    first, second = tmp_path / f"one{suffix}", tmp_path / f"two{suffix}"
    assert await export_file(source, first) == 10
    target = SQLiteEventStore(f"sqlite:///{tmp_path / 'restored.db'}")
    await target.setup()
    try:
        assert await restore_file(target, first) == 10
        assert (await verify(target)).ok
        assert await export_file(target, second) == 10
    finally:
        await target.close()
    assert first.read_bytes() == second.read_bytes()


async def test_restore_refuses_a_corrupt_file_and_writes_nothing(tmp_path: Path) -> None:
    source = SQLiteEventStore(f"sqlite:///{tmp_path / 'source.db'}")
    await source.setup()
    await _fill(source)
    export = tmp_path / "log.jsonl"
    await export_file(source, export)
    await source.close()
    lines = export.read_text(encoding="utf-8").splitlines(keepends=True)
    lines[7] = lines[7].replace('\\"i\\":7', '\\"i\\":8')
    export.write_text("".join(lines), encoding="utf-8")
    target = SQLiteEventStore(f"sqlite:///{tmp_path / 'target.db'}")
    await target.setup()
    try:
        with pytest.raises(RestoreError, match="line 8: position 8: hash mismatch"):
            await restore_file(target, export)
        assert await target.head_position() == 0
        export.write_text("not json\n", encoding="utf-8")
        with pytest.raises(RestoreError, match="line 1"):
            await restore_file(target, export)
    finally:
        await target.close()
