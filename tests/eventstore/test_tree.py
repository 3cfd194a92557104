"""The Merkle tree each backend keeps with its appends: roots and proofs against the events."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import sqlite3
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from eventstore import EventStore, NewEvent
from eventstore.audit import export_file
from eventstore.checkpoints import Checkpointer, NoteSigner, NoteVerifier, parse_checkpoint
from eventstore.errors import EventStoreError
from eventstore.memory import MemoryEventStore
from eventstore.merkle import (
    EMPTY_ROOT,
    TreeBuilder,
    root_from_inclusion_proof,
    verify_consistency,
)
from eventstore.postgres import PostgresEventStore
from eventstore.sqlite import SQLiteEventStore
from eventstore.tree import consistency_proof, export_tree, inclusion_proof, row_leaf, tree_root
from tests.conftest import _plain_dsn


def ev(n: int) -> NewEvent:
    return NewEvent("Happened", {"n": n, "text": "é" * (n % 7)}, {"actor": "tester"})


async def roots_from_rows(store: EventStore) -> list[bytes]:
    """Every prefix's root, recomputed from the stored rows alone."""
    builder = TreeBuilder()
    roots = [EMPTY_ROOT]
    async for row in store.read_rows():
        builder.add(row_leaf(row))
        roots.append(builder.root())
    return roots


async def check_tree(store: EventStore) -> None:
    roots = await roots_from_rows(store)
    head = len(roots) - 1
    assert head == await store.head_position()
    rows = [row async for row in store.read_rows()]
    for size in range(head + 1):
        assert await tree_root(store, size) == roots[size], size
    for size in {1, head // 2 + 1, head}:
        for position in range(1, size + 1):
            proof = await inclusion_proof(store, position, size)
            assert proof.leaf_hash == row_leaf(rows[position - 1])
            got = root_from_inclusion_proof(proof.leaf_index, size, proof.leaf_hash, proof.hashes)
            assert got == roots[size]
    for new in range(head + 1):
        for old in range(new + 1):
            hashes = await consistency_proof(store, old, new)
            verify_consistency(old, new, roots[old], roots[new], hashes)


async def test_the_tree_follows_every_kind_of_append(store_factory: Any) -> None:
    store: EventStore = await store_factory()
    await store.append("a", [ev(1)])
    await store.append("a", [ev(2), ev(3), ev(4)])
    # Concurrent appends: group commits of several requests.
    await asyncio.gather(*(store.append(f"s{i}", [ev(i), ev(i + 1)]) for i in range(9)))
    # Another writer behind this one's back (on the same database): the careful path re-reads
    # the frontier under the lock.
    other: EventStore = await store_factory()
    await other.append("b", [ev(5)])
    await store.append("a", [ev(6)])
    await other.append("b", [ev(7), ev(8)])
    await store.append("c", [ev(9)])
    await check_tree(store)
    await check_tree(other)


async def test_a_restored_log_has_its_tree(store_factory: Any) -> None:
    source = MemoryEventStore()
    for i in range(23):
        await source.append(f"s{i % 4}", [ev(i)])
    rows = [row async for row in source.read_rows()]
    store: EventStore = await store_factory()
    await store.restore(lambda: iter(rows))
    assert await tree_root(store, 23) == await tree_root(source, 23)
    await store.append("after", [ev(99)])
    await check_tree(store)


async def test_checkpoints_are_signed_kept_and_verifiable(store: EventStore) -> None:
    for i in range(5):
        await store.append("s", [ev(i)])
    signer = NoteSigner.generate("example.org/statements")
    checkpointer = Checkpointer(store, signer, "ignored.example/log")
    first = await checkpointer.latest()
    assert (first.origin, first.tree_size, first.signed) == ("example.org/statements", 5, True)
    assert first.root_hash == await tree_root(store, 5)
    parsed = NoteVerifier.from_text(signer.verifier_key()).verify(first.note)
    assert (parsed.origin, parsed.tree_size, parsed.root_hash) == (
        "example.org/statements",
        5,
        first.root_hash,
    )
    assert await checkpointer.latest() == first  # nothing appended: the same checkpoint
    await store.append("s", [ev(9)])
    second = await checkpointer.latest()
    assert second.tree_size == 6
    assert await checkpointer.at(5) == first  # every checkpoint is kept
    assert [c.tree_size for c in await store.checkpoints_at(6)] == [6]
    unsigned = await Checkpointer(store, None, "example.org/unsigned").at(6)
    assert not unsigned.signed
    assert unsigned.note == parse_checkpoint(unsigned.note).body
    assert len(await store.checkpoints_at(6)) == 2


async def test_the_checkpointer_signs_at_most_once_per_interval_and_only_while_the_log_grows(
    store: EventStore,
) -> None:
    interval = 0.2
    signer = NoteSigner.generate("example.org/statements")
    checkpointer = Checkpointer(store, signer, "ignored.example/log", interval)
    task = asyncio.create_task(checkpointer.run())
    try:
        growing = asyncio.get_running_loop().time() + 5 * interval
        n = 0
        while asyncio.get_running_loop().time() < growing:
            await store.append("s", [ev(n)])
            n += 1
            await asyncio.sleep(0.01)
        await asyncio.sleep(interval * 3)  # a round after the last append
        head = await store.head_position()
        made = [c for size in range(head + 1) for c in await store.checkpoints_at(size)]
        await asyncio.sleep(interval * 3)  # an idle log: nothing more to sign
        again = [c for size in range(head + 1) for c in await store.checkpoints_at(size)]
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    assert made == again
    assert all(c.signed for c in made)
    assert made[-1].tree_size == head  # the last round saw the final head
    # One per round at most: five rounds of growth, the round at the start and those after.
    assert 2 <= len(made) <= 8, [c.tree_size for c in made]
    stamps = sorted(c.created_at_us for c in made)
    assert min(b - a for a, b in itertools.pairwise(stamps)) >= interval * 0.9e6


# -- stores that kept no tree, and schema-1 databases --------------------------------------

ON_DISK = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]


async def _downgrade(backend: str, database: tuple[str, str]) -> None:
    """Make the database look like one written before the tree existed (schema 1)."""
    url, schema = database
    statements = [
        "ALTER TABLE events DROP COLUMN tree",
        "DROP TABLE merkle_nodes",
        "DROP TABLE eventstore_checkpoints",
        "UPDATE eventstore_schema SET version = 1",
    ]
    if backend == "sqlite":
        conn = sqlite3.connect(url.removeprefix("sqlite:///"))
        for statement in statements:
            conn.execute(statement)
        conn.commit()
        conn.close()
        return
    pg = await asyncpg.connect(_plain_dsn(url), server_settings={"search_path": schema})
    try:
        for statement in statements:
            await pg.execute(statement)
    finally:
        await pg.close()


def _open(backend: str, database: tuple[str, str], **options: Any) -> EventStore:
    url, schema = database
    if backend == "sqlite":
        return SQLiteEventStore(url, **options)
    return PostgresEventStore(url, schema=schema, **options)


@pytest.mark.parametrize("backend", ON_DISK)
@pytest.mark.parametrize("gap", ["schema 1", "no tree kept"])
async def test_setup_builds_the_tree_of_older_events(
    backend: str, database: tuple[str, str], gap: str
) -> None:
    old = _open(backend, database, merkle=gap != "no tree kept")
    await old.setup()
    for i in range(37):
        await old.append(f"s{i % 3}", [ev(i)])
    expected = await roots_from_rows(old)
    await old.close()
    if gap == "schema 1":
        await _downgrade(backend, database)
    store = _open(backend, database)
    await store.setup()
    try:
        assert await tree_root(store, 37) == expected[37]
        await store.append("new", [ev(100), ev(101)])
        await check_tree(store)
    finally:
        await store.close()


@pytest.mark.parametrize("processes", [1, 2])
async def test_the_tree_of_an_export_is_the_stores(tmp_path: Path, processes: int) -> None:
    store = MemoryEventStore()
    for i in range(1000):
        await store.append(f"s{i % 7}", [ev(i)])
    export = tmp_path / "log.jsonl"
    await export_file(store, export)
    # Split into many parts, so that pieces of every size meet across the parts.
    size, root = await asyncio.to_thread(export_tree, export, processes)
    assert (size, root) == (1000, await tree_root(store, 1000))
    lines = export.read_bytes().splitlines(keepends=True)
    (tmp_path / "gap.jsonl").write_bytes(b"".join(lines[:500] + lines[501:]))
    with pytest.raises(EventStoreError, match="501"):
        await asyncio.to_thread(export_tree, tmp_path / "gap.jsonl", processes)
