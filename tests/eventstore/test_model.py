"""A Hypothesis state machine compares each backend with a model of a few lines."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import uuid
from typing import Any

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from eventstore import (
    ANY,
    NO_STREAM,
    STREAM_EXISTS,
    AppendResult,
    ConcurrencyError,
    DuplicateEventError,
    EventStore,
    ExpectedVersion,
    NewEvent,
)
from eventstore.memory import MemoryEventStore
from eventstore.merkle import TreeBuilder
from eventstore.postgres import PostgresEventStore
from eventstore.sqlite import SQLiteEventStore
from eventstore.tree import row_leaf, tree_root

STREAMS = ["a", "b", "c"]


class StoreMachine(RuleBasedStateMachine):
    """Model: a list of (stream, event id, data) in log order."""

    make_store: Any = None

    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.store: EventStore = self.loop.run_until_complete(self.make_store())
        self.log: list[tuple[str, str, dict[str, Any]]] = []
        self.appends: list[tuple[str, list[NewEvent], ExpectedVersion, AppendResult]] = []

    def run(self, coro: Any) -> Any:
        return self.loop.run_until_complete(coro)

    def version(self, stream: str) -> int:
        return sum(1 for s, _, _ in self.log if s == stream)

    @rule(
        stream=st.sampled_from(STREAMS),
        count=st.integers(0, 3),
        mode=st.sampled_from(["any", "no_stream", "exists", "exact", "wrong"]),
        value=st.integers(0, 5),
    )
    def append(self, stream: str, count: int, mode: str, value: int) -> None:
        current = self.version(stream)
        expected: ExpectedVersion = {
            "any": ANY,
            "no_stream": NO_STREAM,
            "exists": STREAM_EXISTS,
            "exact": current,
            "wrong": current + 1 + value,
        }[mode]
        ok = {
            "any": True,
            "no_stream": current == 0,
            "exists": current > 0,
            "exact": True,
            "wrong": False,
        }[mode]
        events = [NewEvent("E", {"v": value, "i": i}) for i in range(count)]
        if not ok:
            with pytest.raises(ConcurrencyError) as info:
                self.run(self.store.append(stream, events, expected))
            assert info.value.actual == current
            return
        result = self.run(self.store.append(stream, events, expected))
        assert result.last_version == current + count
        if count:
            assert result.first_position == len(self.log) + 1
            self.log.extend((stream, str(e.event_id), e.data) for e in events)
            self.appends.append((stream, events, expected, result))

    @rule(index=st.integers(0, 1000))
    def retry(self, index: int) -> None:
        if not self.appends:
            return
        stream, events, expected, original = self.appends[index % len(self.appends)]
        assert self.run(self.store.append(stream, events, expected)) == original

    @rule(index=st.integers(0, 1000), other=st.sampled_from(STREAMS))
    def reuse_id_elsewhere(self, index: int, other: str) -> None:
        if not self.appends:
            return
        stream, events, _, _ = self.appends[index % len(self.appends)]
        if other == stream:
            events = [*events, NewEvent("E", {"extra": True})]
        with pytest.raises(DuplicateEventError):
            self.run(self.store.append(other, events, ANY))

    @invariant()
    def matches_model(self) -> None:
        records = self.run(_all(self.store))
        assert [(r.stream_id, str(r.event_id), r.data) for r in records] == self.log
        assert [r.position for r in records] == list(range(1, len(self.log) + 1))
        assert self.run(self.store.head_position()) == len(self.log)
        for stream in STREAMS:
            assert self.run(self.store.stream_version(stream)) == self.version(stream)
        # The Merkle tree the store kept is the one its rows make, whatever path wrote them.
        assert self.run(self._tree_is_the_rows())

    async def _tree_is_the_rows(self) -> bool:
        builder = TreeBuilder()
        async for row in self.store.read_rows():
            builder.add(row_leaf(row))
        return await tree_root(self.store, builder.size) == builder.root()

    def teardown(self) -> None:
        self.run(self.store.close())
        self.loop.close()


async def _all(store: EventStore) -> list[Any]:
    return [r async for r in store.read_all(page_size=2)]


async def _memory() -> EventStore:
    return MemoryEventStore()


def _sqlite_factory() -> Any:
    async def make() -> EventStore:
        folder = tempfile.mkdtemp(prefix="statements-model-")
        store = SQLiteEventStore(f"sqlite:///{folder}/events.db", synchronous="OFF")
        await store.setup()
        original_close = store.close

        async def close() -> None:
            await original_close()
            shutil.rmtree(folder, ignore_errors=True)

        store.close = close  # type: ignore[method-assign]
        return store

    return make


def test_memory_store_matches_model() -> None:
    machine = type("MemoryMachine", (StoreMachine,), {"make_store": staticmethod(_memory)})
    settings(max_examples=60, stateful_step_count=25, deadline=None)(machine).TestCase().runTest()


def test_sqlite_store_matches_model() -> None:
    machine = type(
        "SQLiteMachine", (StoreMachine,), {"make_store": staticmethod(_sqlite_factory())}
    )
    settings(max_examples=25, stateful_step_count=20, deadline=None)(machine).TestCase().runTest()


@pytest.mark.postgres
def test_postgres_store_matches_model(pg_database: str) -> None:
    import asyncpg

    async def make() -> EventStore:
        schema = f"m_{uuid.uuid4().hex[:10]}"
        dsn = pg_database.replace("postgresql+asyncpg", "postgresql")
        conn = await asyncpg.connect(dsn)
        await conn.execute(f'CREATE SCHEMA "{schema}"')
        await conn.close()
        store = PostgresEventStore(pg_database, schema=schema)
        await store.setup()
        return store

    machine = type("PostgresMachine", (StoreMachine,), {"make_store": staticmethod(make)})
    settings(max_examples=10, stateful_step_count=15, deadline=None)(machine).TestCase().runTest()
