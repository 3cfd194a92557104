"""The projection engine: checkpoints, exactly-once, failures, rebuilds, status, leaders."""

from __future__ import annotations

import asyncio
import collections
import logging
import os
import signal
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from eventstore import EventStore, NewEvent, RecordedEvent
from eventstore.leader import LeaderElection, PostgresLeaderElection
from eventstore.memory import MemoryEventStore
from eventstore.postgres import PostgresEventStore
from eventstore.projection import ProjectionError, TableNames
from eventstore.projection_checkpoints import (
    ACTIVE,
    FAILED,
    NEW,
    STALE,
    projection_status,
    wait_for_checkpoints,
)
from eventstore.projection_runner import IDLE_CHECKPOINT_INTERVAL, ProjectionRunner
from eventstore.rebuild import rebuild, rebuild_many
from eventstore.sqlite import SQLiteEventStore
from eventstore.urls import create_engine

PG_ENV = "STATEMENTS_TEST_DATABASE_URL"
ROOT = Path(__file__).resolve().parents[2]


class Crash(BaseException):
    """Stands in for the process dying: nothing in the runner may catch it."""


class Counts:
    """A tiny projection: events per stream (times ``weight``) in one table."""

    def __init__(
        self,
        name: str = "counts",
        *,
        version: int = 1,
        weight: int = 1,
        types: frozenset[str] | None = None,
        table: str = "stream_counts",
    ) -> None:
        self.name = name
        self.version = version
        self.weight = weight
        self.types = types
        self.tables = (table,)
        self.poison = False  # if set, events with data {"poison": true} raise
        self.applied = 0
        self.batches: list[int] = []
        self.crash_at_batch: int | None = None
        self.block_at_batch: int | None = None
        self.blocked = asyncio.Event()
        self.transient_failures = 0
        self.delay = 0.0  # seconds to linger inside the transaction after writing

    async def create(self, conn: AsyncConnection, tables: TableNames) -> None:
        table = tables[self.tables[0]]
        await conn.execute(
            sa.text(f"CREATE TABLE {table} (stream_id TEXT PRIMARY KEY, n BIGINT NOT NULL)")
        )
        # An index named after the mapped table, as the contract asks, so aside copies coexist.
        await conn.execute(sa.text(f"CREATE INDEX {table}_by_n ON {table} (n)"))

    async def apply(
        self, conn: AsyncConnection, events: Sequence[RecordedEvent], tables: TableNames
    ) -> None:
        if self.transient_failures:
            self.transient_failures -= 1
            raise TimeoutError("the database took too long")
        for event in events:
            if self.poison and event.data.get("poison"):
                raise ValueError(f"poisoned event in {event.stream_id}")
        counts = collections.Counter(event.stream_id for event in events)
        table = tables[self.tables[0]]
        await conn.execute(
            sa.text(
                f"INSERT INTO {table} (stream_id, n) VALUES (:s, :n) "
                "ON CONFLICT (stream_id) DO UPDATE SET n = " + table + ".n + excluded.n"
            ),
            [{"s": s, "n": n * self.weight} for s, n in counts.items()],
        )
        self.batches.append(len(events))
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.crash_at_batch == len(self.batches):
            raise Crash
        if self.block_at_batch == len(self.batches):
            self.blocked.set()
            await asyncio.Event().wait()  # until cancelled, with the rows written
        self.applied += len(events)


# -- environments --------------------------------------------------------------------------


@dataclass
class Env:
    kind: str
    store: EventStore
    engine: AsyncEngine
    _new_store: Callable[[], Awaitable[EventStore]]
    url: str
    schema: str | None
    _stores: list[EventStore] = field(default_factory=list)
    _engines: list[AsyncEngine] = field(default_factory=list)
    _drop_schema: bool = False

    async def new_store(self) -> EventStore:
        """The same log as another process would open it."""
        store = await self._new_store()
        if store is not self.store:
            self._stores.append(store)
        return store

    def new_engine(self) -> AsyncEngine:
        engine = create_engine(self.url, schema=self.schema)
        self._engines.append(engine)
        return engine

    async def close(self) -> None:
        for store in [*self._stores, self.store]:
            await store.close()
        for engine in [*self._engines, self.engine]:
            await engine.dispose()
        if self._drop_schema:
            await _pg_execute(self.url, f'DROP SCHEMA IF EXISTS "{self.schema}" CASCADE')


def _plain_dsn(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


async def _pg_execute(url: str, statement: str) -> None:
    conn = await asyncpg.connect(_plain_dsn(url))
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


ENVS = ["memory+sqlite", "sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]


async def _make_env(kind: str, tmp_path: Path) -> Env:
    if kind == "memory+sqlite":
        memory = MemoryEventStore()
        url = f"sqlite:///{tmp_path / 'readmodels.db'}"

        async def same() -> EventStore:
            return memory

        return Env(kind, memory, create_engine(url), same, url, None)
    if kind == "sqlite":
        # Events and read models in one file, as deployed: they compete for the write lock.
        url = f"sqlite:///{tmp_path / 'events.db'}"

        async def sqlite_store() -> EventStore:
            store = SQLiteEventStore(url)
            await store.setup()
            return store

        return Env(kind, await sqlite_store(), create_engine(url), sqlite_store, url, None)
    pg_url = os.environ.get(PG_ENV)
    if not pg_url:
        pytest.skip(f"{PG_ENV} is not set: PostgreSQL projection tests skipped")
    # A schema of its own per test, dropped afterwards.
    schema = f"proj_{uuid.uuid4().hex[:12]}"
    await _pg_execute(pg_url, f'CREATE SCHEMA "{schema}"')

    async def pg_store() -> EventStore:
        store = PostgresEventStore(pg_url, schema=schema)
        await store.setup()
        return store

    return Env(
        kind,
        await pg_store(),
        create_engine(pg_url, schema=schema),
        pg_store,
        pg_url,
        schema,
        _drop_schema=True,
    )


@pytest.fixture(params=ENVS)
async def env(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Env]:
    made = await _make_env(request.param, tmp_path)
    yield made
    await made.close()


@pytest.fixture
async def pg_env(tmp_path: Path) -> AsyncIterator[Env]:
    made = await _make_env("postgresql", tmp_path)
    yield made
    await made.close()


@pytest.fixture
async def runners() -> AsyncIterator[Callable[..., ProjectionRunner]]:
    """Makes runners and stops whichever are still running at the end."""
    made: list[ProjectionRunner] = []

    def make(*args: object, **kwargs: object) -> ProjectionRunner:
        runner = ProjectionRunner(*args, **kwargs)  # type: ignore[arg-type]
        made.append(runner)
        return runner

    yield make
    for runner in made:
        await runner.stop()


# -- helpers -------------------------------------------------------------------------------


async def append(
    store: EventStore,
    count: int,
    *,
    streams: int = 7,
    type_: str = "Counted",
    start: int = 0,
    poison_at: int | None = None,
) -> int:
    """Append ``count`` events round-robin over streams; returns the head position."""
    head = 0
    for i in range(start, start + count):
        data = {"i": i, "poison": True} if i == poison_at else {"i": i}
        result = await store.append(f"s-{i % streams}", [NewEvent(type_, data)])
        head = result.position
    return head


async def replay(
    store: EventStore, projection: Counts, *, upto: int | None = None
) -> dict[str, int]:
    """What a full replay of the log gives: the pure in-memory fold."""
    counts: collections.Counter[str] = collections.Counter()
    async for event in store.read_all(0, to_position=upto):
        if projection.types is None or event.type in projection.types:
            counts[event.stream_id] += projection.weight
    return dict(counts)


async def table(engine: AsyncEngine, name: str = "stream_counts") -> dict[str, int]:
    async with engine.connect() as conn:
        rows = (await conn.execute(sa.text(f"SELECT stream_id, n FROM {name}"))).all()
    return {str(s): int(n) for s, n in rows}


async def checkpoint(engine: AsyncEngine, name: str = "counts") -> dict[str, Any]:
    async with engine.connect() as conn:
        row = (
            (
                await conn.execute(
                    sa.text("SELECT * FROM projection_checkpoints WHERE name = :n"), {"n": name}
                )
            )
            .mappings()
            .one()
        )
    return dict(row)


async def table_names(engine: AsyncEngine) -> set[str]:
    async with engine.connect() as conn:
        return set(await conn.run_sync(lambda c: sa.inspect(c).get_table_names()))


async def eventually(check: Callable[[], bool | Awaitable[bool]], timeout: float = 10.0) -> float:
    """Wait for a condition; returns the seconds it took."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    while True:
        result = check()
        if not isinstance(result, bool):
            result = await result
        if result:
            break
        if loop.time() - start > timeout:
            raise AssertionError(f"condition not met within {timeout} s")
        await asyncio.sleep(0.02)
    return loop.time() - start


# -- catch-up and live ---------------------------------------------------------------------


async def test_catch_up_then_live(env: Env, runners: Callable[..., ProjectionRunner]) -> None:
    counts = Counts()
    rare = Counts("rare", types=frozenset({"Rare"}), table="rare_counts")
    head = await append(env.store, 230)
    head = await append(env.store, 3, type_="Rare", start=230)
    runner = runners(env.store, env.engine, [counts, rare], batch_size=50)
    await runner.start()

    assert await runner.wait_for(head, timeout=10)
    assert await table(env.engine) == await replay(env.store, counts)
    assert await table(env.engine, "rare_counts") == await replay(env.store, rare)
    assert len(counts.batches) >= 5  # caught up in batches, not in one go
    assert rare.applied == 3

    # Live: events appended now reach the table, and the projection that ignores them still
    # moves its checkpoint to the head: at once for waiters in this process, and in the
    # checkpoint table within IDLE_CHECKPOINT_INTERVAL (idle projections write it lazily).
    head = await append(env.store, 40, start=233)
    assert await runner.wait_for(head, timeout=10)
    assert await table(env.engine) == await replay(env.store, counts)
    assert (await checkpoint(env.engine))["position"] == head
    for _ in range(100):
        if (await checkpoint(env.engine, "rare"))["position"] == head:
            break
        await asyncio.sleep(IDLE_CHECKPOINT_INTERVAL / 20)
    assert (await checkpoint(env.engine, "rare"))["position"] == head
    assert rare.applied == 3


async def test_checkpoint_is_the_last_event_processed(
    env: Env, runners: Callable[..., ProjectionRunner]
) -> None:
    counts = Counts()
    head = await append(env.store, 25)
    runner = runners(env.store, env.engine, [counts], batch_size=10)
    await runner.start()
    assert await runner.wait_for(head, timeout=10)
    await runner.stop()
    row = await checkpoint(env.engine)
    assert row["position"] == head == 25
    assert row["version"] == 1 and row["status"] == ACTIVE and row["error"] is None
    assert counts.batches == [10, 10, 5]


# -- exactly once --------------------------------------------------------------------------


@pytest.mark.parametrize("how", ["cancel", "crash"])
async def test_exactly_once_across_a_crash(
    env: Env, runners: Callable[..., ProjectionRunner], how: str
) -> None:
    head = await append(env.store, 300)
    dying = Counts()
    if how == "cancel":
        dying.block_at_batch = 4
    else:
        dying.crash_at_batch = 4
    runner = runners(env.store, env.engine, [dying], batch_size=40)
    await runner.start()
    if how == "cancel":
        # The fourth batch's rows are written but not committed when the process goes away.
        await asyncio.wait_for(dying.blocked.wait(), 10)
    else:
        await eventually(lambda: len(dying.batches) >= 4)
        await asyncio.sleep(0.05)
    await runner.stop()
    position = (await checkpoint(env.engine))["position"]
    assert position == 120  # three batches committed, the fourth rolled back
    assert await table(env.engine) == await replay(env.store, dying, upto=120)

    fresh = Counts()
    restarted = runners(env.store, env.engine, [fresh], batch_size=40)
    await restarted.start()
    assert await restarted.wait_for(head, timeout=10)
    assert fresh.applied == head - 120  # resumed where the last commit left off
    assert await table(env.engine) == await replay(env.store, dying)


async def test_two_unsynchronized_runners_never_double_count(
    env: Env, runners: Callable[..., ProjectionRunner]
) -> None:
    # No leader lock at all (as with two processes on SQLite, or a lost lock on PostgreSQL):
    # the compare-and-set on the checkpoint still applies every event once.
    store2 = await env.new_store()
    engine2 = env.new_engine()
    a, b = Counts(), Counts()
    first = runners(env.store, env.engine, [a], batch_size=7, election=LeaderElection())
    second = runners(store2, engine2, [b], batch_size=7, election=LeaderElection())
    await first.start()
    await second.start()
    head = 0
    for start in range(0, 200, 20):
        head = await append(env.store, 20, start=start)
    assert await first.wait_for(head, timeout=20)
    assert await second.wait_for(head, timeout=20)
    assert await table(env.engine) == await replay(env.store, a)
    assert a.applied + b.applied >= head


CHILD = """
import asyncio, sys
from eventstore import open_store
from eventstore.urls import create_engine
from eventstore.projection_runner import ProjectionRunner
from tests.eventstore.test_projection import Counts

async def main(url, schema):
    store = open_store(url, **({"schema": schema} if schema else {}))
    await store.setup()
    engine = create_engine(url, schema=schema or None)
    counts = Counts()
    counts.delay = 0.003
    await ProjectionRunner(store, engine, [counts], batch_size=50).start()
    await asyncio.Event().wait()

asyncio.run(main(sys.argv[1], sys.argv[2]))
"""


@pytest.mark.parametrize("kind", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
async def test_sigkill_during_catch_up_then_restart(
    kind: str, tmp_path: Path, runners: Callable[..., ProjectionRunner]
) -> None:
    env = await _make_env(kind, tmp_path)
    try:
        head = 0
        for start in range(0, 3000, 500):
            head = await append(env.store, 500, start=start, streams=31)
        child = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            CHILD,
            env.url,
            env.schema or "",
            cwd=ROOT,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        try:
            await eventually(lambda: _position_at_least(env.engine, 600), timeout=30)
        finally:
            child.send_signal(signal.SIGKILL)
            await child.wait()
        killed_at = int((await checkpoint(env.engine))["position"])
        assert 600 <= killed_at < head  # killed in the middle of catching up

        survivor = Counts()
        runner = runners(env.store, env.engine, [survivor], batch_size=50)
        await runner.start()
        assert await runner.wait_for(head, timeout=30)
        assert survivor.applied == head - killed_at  # nothing skipped, nothing applied twice
        assert await table(env.engine) == await replay(env.store, survivor)
        await runner.stop()
    finally:
        await env.close()


async def _position_at_least(engine: AsyncEngine, position: int) -> bool:
    try:
        return int((await checkpoint(engine))["position"]) >= position
    except (sa.exc.NoResultFound, sa.exc.OperationalError, sa.exc.ProgrammingError):
        return False  # the child has not created its checkpoint yet


# -- failures ------------------------------------------------------------------------------


async def test_failing_event_stops_only_its_projection(
    env: Env, runners: Callable[..., ProjectionRunner]
) -> None:
    healthy = Counts()
    picky = Counts("picky", table="picky_counts")
    picky.poison = True
    head = await append(env.store, 50, poison_at=22)  # position 23
    runner = runners(env.store, env.engine, [healthy, picky], batch_size=10)
    await runner.start()

    assert await runner.wait_for(head, timeout=10, names=["counts"])
    assert not await runner.wait_for(head, timeout=5, names=["picky"])
    row = await checkpoint(env.engine, "picky")
    assert row["status"] == FAILED
    assert row["error_position"] == 23
    assert row["position"] == 22  # everything before the poisoned event is committed
    assert "ValueError: poisoned event in s-1" in str(row["error"])
    assert await table(env.engine, "picky_counts") == await replay(env.store, picky, upto=22)
    status = {s.name: s for s in await runner.status()}
    assert status["picky"].status == FAILED and status["picky"].error_position == 23
    assert status["picky"].lag_events == head - 22
    assert status["counts"].status == ACTIVE and status["counts"].lag_events == 0

    # The others go on.
    head = await append(env.store, 10, start=50)
    assert await runner.wait_for(head, timeout=10, names=["counts"])
    assert await table(env.engine) == await replay(env.store, healthy)
    assert (await checkpoint(env.engine, "picky"))["position"] == 22

    # Once fixed, a retry resumes from the failing event.
    picky.poison = False
    assert await runner.retry("picky")
    assert await runner.wait_for(head, timeout=10)
    assert await table(env.engine, "picky_counts") == await replay(env.store, picky)
    row = await checkpoint(env.engine, "picky")
    assert row["status"] == ACTIVE and row["error"] is None and row["error_position"] is None


async def test_restart_resumes_a_failed_projection(
    env: Env, runners: Callable[..., ProjectionRunner]
) -> None:
    broken = Counts()
    broken.poison = True
    head = await append(env.store, 30, poison_at=5)
    runner = runners(env.store, env.engine, [broken], batch_size=8)
    await runner.start()
    assert not await runner.wait_for(head, timeout=5)
    await runner.stop()
    assert (await checkpoint(env.engine))["status"] == FAILED

    fixed = Counts()
    restarted = runners(env.store, env.engine, [fixed], batch_size=8)
    await restarted.start()
    assert await restarted.wait_for(head, timeout=10)
    assert fixed.applied == head - 5
    assert await table(env.engine) == await replay(env.store, fixed)


async def test_transient_errors_are_retried_not_recorded(
    env: Env, runners: Callable[..., ProjectionRunner]
) -> None:
    flaky = Counts()
    flaky.transient_failures = 2
    head = await append(env.store, 20)
    runner = runners(env.store, env.engine, [flaky], batch_size=8, error_backoff=(0.05, 0.1))
    await runner.start()
    assert await runner.wait_for(head, timeout=10)
    assert await table(env.engine) == await replay(env.store, flaky)
    assert (await checkpoint(env.engine))["error"] is None


# -- rebuild -------------------------------------------------------------------------------


async def test_rebuild_swaps_without_a_partial_window(
    env: Env, runners: Callable[..., ProjectionRunner]
) -> None:
    v1 = Counts()
    head = await append(env.store, 400)
    runner = runners(env.store, env.engine, [v1], batch_size=50)
    await runner.start()
    assert await runner.wait_for(head, timeout=10)

    reader_engine = env.new_engine()
    seen: set[int] = set()
    stop = asyncio.Event()

    async def read_continuously() -> None:
        # One statement, one snapshot: the table must always be a complete fold up to the
        # checkpoint, with either version's weight, and must never be missing.
        query = sa.text(
            "SELECT (SELECT position FROM projection_checkpoints WHERE name = 'counts'), "
            "(SELECT COALESCE(SUM(n), 0) FROM stream_counts)"
        )
        while not stop.is_set():
            async with reader_engine.connect() as conn:
                position, total = (await conn.execute(query)).one()
            assert total in (position, 2 * position), (position, total)
            seen.add(1 if total == position else 2)
            await asyncio.sleep(0.001)

    async def keep_appending() -> None:
        start = 400
        while not stop.is_set():
            await append(env.store, 5, start=start)
            start += 5
            await asyncio.sleep(0.005)

    reader = asyncio.create_task(read_continuously())
    writer = asyncio.create_task(keep_appending())
    try:
        await asyncio.sleep(0.05)
        v2 = Counts(version=2, weight=2)
        position = await rebuild(env.store, env.engine, v2, batch_size=30)
        await asyncio.sleep(0.05)
    finally:
        stop.set()
        await asyncio.gather(reader, writer)
    assert seen == {1, 2}
    row = await checkpoint(env.engine)
    assert row["version"] == 2 and row["position"] >= position >= head
    leftovers = {t for t in await table_names(env.engine) if "__rb" in t}
    assert not leftovers

    # The v1 runner stands aside (the tables are newer than its code); a v2 runner takes over.
    await runner.stop()
    v2 = Counts(version=2, weight=2)
    upgraded = runners(env.store, env.engine, [v2], batch_size=50)
    await upgraded.start()
    head = await env.store.head_position()
    assert await upgraded.wait_for(head, timeout=10)
    assert await table(env.engine) == await replay(env.store, v2)

    # A second rebuild works too: the aside copy's index names never clash with the live ones.
    await rebuild(env.store, env.engine, Counts(version=2, weight=2), batch_size=100)
    assert await upgraded.wait_for(await env.store.head_position(), timeout=10)
    assert await table(env.engine) == await replay(env.store, v2)


async def test_runner_rebuilds_when_the_version_changes(
    env: Env, runners: Callable[..., ProjectionRunner]
) -> None:
    head = await append(env.store, 120)
    first = runners(env.store, env.engine, [Counts()], batch_size=50)
    await first.start()
    assert await first.wait_for(head, timeout=10)
    await first.stop()

    v2 = Counts(version=2, weight=3)
    statuses = await projection_status(env.store, env.engine, [v2])
    assert statuses[0].status == STALE
    second = runners(env.store, env.engine, [v2], batch_size=50)
    await second.start()
    await eventually(lambda: _version_is(env.engine, 2))
    assert await second.wait_for(head, timeout=10)
    assert await table(env.engine) == await replay(env.store, v2)
    head = await append(env.store, 10, start=120)
    assert await second.wait_for(head, timeout=10)
    assert await table(env.engine) == await replay(env.store, v2)


async def _version_is(engine: AsyncEngine, version: int) -> bool:
    return bool((await checkpoint(engine))["version"] == version)


async def test_rebuild_that_fails_leaves_the_old_tables(env: Env) -> None:
    head = await append(env.store, 40, poison_at=33)
    fine = Counts()
    await rebuild(env.store, env.engine, fine, batch_size=8)
    before = await table(env.engine)
    assert before == await replay(env.store, fine)

    broken = Counts(version=2)
    broken.poison = True
    with pytest.raises(Exception, match="failed at position 34"):
        await rebuild(env.store, env.engine, broken, batch_size=8)
    assert await table(env.engine) == before
    row = await checkpoint(env.engine)
    assert row["version"] == 1 and row["position"] == head
    assert not {t for t in await table_names(env.engine) if "__rb" in t}


async def test_rebuilding_together_fails_on_the_event_and_keeps_every_old_table(
    env: Env,
) -> None:
    head = await append(env.store, 40, poison_at=33)
    fine, other = Counts(), Counts("other", table="other_counts", weight=3)
    assert await rebuild_many(env.store, env.engine, [fine, other], batch_size=8) == {
        "counts": head,
        "other": head,
    }
    before = await table(env.engine)
    assert before == await replay(env.store, fine)
    others = await table(env.engine, "other_counts")
    assert others == {stream: 3 * n for stream, n in before.items()}

    broken = Counts(version=2)
    broken.poison = True
    with pytest.raises(ProjectionError, match="failed at position 34") as caught:
        await rebuild_many(
            env.store,
            env.engine,
            [Counts("other", table="other_counts", weight=5), broken],
            batch_size=8,
        )
    assert caught.value.name == "counts"
    assert await table(env.engine) == before
    assert await table(env.engine, "other_counts") == others
    row = await checkpoint(env.engine)
    assert row["version"] == 1 and row["position"] == head
    assert not {t for t in await table_names(env.engine) if "__rb" in t}


# -- status and read-your-writes -----------------------------------------------------------


async def test_status_reports_lag(env: Env, runners: Callable[..., ProjectionRunner]) -> None:
    counts = Counts()
    never = Counts("never", table="never_counts")
    assert [s.status for s in await projection_status(env.store, env.engine, [never])] == [NEW]
    head = await append(env.store, 10)
    runner = runners(env.store, env.engine, [counts], batch_size=4)
    await runner.start()
    assert await runner.wait_for(head, timeout=10)
    caught_up = (await runner.status())[0]
    assert (caught_up.position, caught_up.head, caught_up.lag_events) == (head, head, 0)
    assert caught_up.lag_seconds == 0 and caught_up.running is True
    await runner.stop()

    await asyncio.sleep(0.3)
    head = await append(env.store, 5, start=10)
    statuses = {s.name: s for s in await projection_status(env.store, env.engine, [never])}
    behind = statuses["counts"]
    assert (behind.position, behind.head, behind.lag_events) == (10, head, 5)
    assert 0.3 <= behind.lag_seconds < 30
    assert behind.status == ACTIVE and behind.error is None and behind.running is None
    assert statuses["never"].status == NEW and statuses["never"].lag_events == head


async def test_wait_for(env: Env, runners: Callable[..., ProjectionRunner]) -> None:
    counts = Counts()
    head = await append(env.store, 5)
    runner = runners(env.store, env.engine, [counts])
    await runner.start()
    assert await runner.wait_for(head, timeout=10)

    loop = asyncio.get_running_loop()
    start = loop.time()
    assert not await runner.wait_for(head + 1, timeout=0.3)
    assert 0.25 <= loop.time() - start < 2

    async def later() -> int:
        await asyncio.sleep(0.1)
        return await append(env.store, 1, start=5)

    waiting = asyncio.create_task(runner.wait_for(head + 1, timeout=10))
    written = await later()
    assert written == head + 1
    assert await waiting

    # Another process, without the runner, polls the checkpoint table.
    other = env.new_engine()
    assert await wait_for_checkpoints(other, head + 1, timeout=5, names=["counts"])
    assert not await wait_for_checkpoints(other, head + 2, timeout=0.2)
    with pytest.raises(KeyError):
        await runner.wait_for(1, timeout=1, names=["nope"])


# -- leaders on PostgreSQL -----------------------------------------------------------------


@pytest.mark.postgres
@pytest.mark.parametrize("how", ["stop", "kill connection"])
async def test_one_leader_per_projection_and_failover(
    pg_env: Env, runners: Callable[..., ProjectionRunner], how: str
) -> None:
    env = pg_env
    store_b = await env.new_store()
    engine_b = env.new_engine()
    a, b = Counts(), Counts()
    runner_a = runners(env.store, env.engine, [a], batch_size=20)
    runner_b = runners(store_b, engine_b, [b], batch_size=20)
    await runner_a.start()
    await eventually(lambda: runner_a.is_leader("counts"))
    await runner_b.start()

    head = await append(env.store, 100)
    assert await runner_a.wait_for(head, timeout=10)
    assert await runner_b.wait_for(head, timeout=10)  # the standby polls the table
    await asyncio.sleep(1.5)  # long enough for the standby to have tried the lock again
    assert (a.applied, b.applied) == (head, 0)
    assert not runner_b.is_leader("counts")
    status_b = (await runner_b.status())[0]
    assert status_b.running is False and status_b.lag_events == 0

    # The leader goes away; the other takes over within seconds.
    if how == "stop":
        await runner_a.stop()
    else:
        election = runner_a.election
        assert isinstance(election, PostgresLeaderElection) and election.backend_pid
        killer = await asyncpg.connect(_plain_dsn(env.url))
        try:
            await killer.execute("SELECT pg_terminate_backend($1)", election.backend_pid)
        finally:
            await killer.close()
    head = await append(env.store, 50, start=100)
    took = await eventually(lambda: runner_b.wait_for(head, timeout=0.1), timeout=10)
    assert took < 5
    assert await table(env.engine) == await replay(env.store, b)
    if how == "stop":
        assert runner_b.is_leader("counts") and b.applied == 50
    else:
        # The old leader noticed its lock was gone; whichever process got it first leads now,
        # and the compare-and-set kept any overlap exactly-once.
        await eventually(lambda: runner_a.is_leader("counts") != runner_b.is_leader("counts"))
        assert a.applied + b.applied == head


@pytest.mark.postgres
async def test_leaders_are_per_projection_and_schema(
    pg_env: Env, tmp_path: Path, runners: Callable[..., ProjectionRunner]
) -> None:
    env = pg_env
    first = runners(env.store, env.engine, [Counts("one", table="one_counts")])
    second = runners(env.store, env.new_engine(), [Counts("two", table="two_counts")])
    elsewhere = await _make_env("postgresql", tmp_path)  # another schema, same database
    try:
        third = runners(elsewhere.store, elsewhere.engine, [Counts("one", table="one_counts")])
        for runner in (first, second, third):
            await runner.start()
        await eventually(
            lambda: first.is_leader("one") and second.is_leader("two") and third.is_leader("one")
        )
        await third.stop()
    finally:
        await elsewhere.close()


@pytest.mark.postgres
async def test_closing_an_election_lets_go_without_a_lost_connection_warning(
    pg_env: Env, caplog: pytest.LogCaptureFixture
) -> None:
    env = pg_env
    caplog.set_level(logging.INFO, logger="eventstore.leader")
    closing = PostgresLeaderElection(env.new_engine(), check_interval=0.05)
    assert await closing.acquire("counts")
    await closing.close()
    assert not closing.holds("counts")
    levels = {r.getMessage(): r.levelno for r in caplog.records}
    assert levels == {"leader election: releasing ['counts']": logging.INFO}

    # The lock is free for another process at once: closing ended the session that held it.
    other = PostgresLeaderElection(env.new_engine(), check_interval=0.05)
    try:
        assert await other.acquire("counts")
        # Losing the connection for real is still a warning, naming what was given up.
        caplog.clear()
        killer = await asyncpg.connect(_plain_dsn(env.url))
        try:
            await killer.execute("SELECT pg_terminate_backend($1)", other.backend_pid)
        finally:
            await killer.close()
        await eventually(lambda: not other.holds("counts"))
        assert [
            (r.levelno, r.getMessage()) for r in caplog.records if "lost" in r.getMessage()
        ] == [(logging.WARNING, "leader election: lost the lock connection; giving up ['counts']")]
    finally:
        await other.close()
