"""The checkpoint watcher: one per process, it knows how far every projection's tables reach.

"Another process" is a second store and engine on the same database, with a watcher and no
runner: what a server process that does not lead a projection has.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import asyncpg
import pytest
import sqlalchemy as sa

from eventstore.postgres import PostgresEventStore
from eventstore.projection_checkpoints import FAILED
from eventstore.projection_runner import ProjectionRunner
from eventstore.watcher import CheckpointWatcher
from tests.eventstore.test_projection import (
    ENVS,
    Counts,
    Env,
    _make_env,
    _plain_dsn,
    append,
    checkpoint,
    eventually,
)


@pytest.fixture(params=[e for e in ENVS if e != "memory+sqlite"])
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
async def closing() -> AsyncIterator[Callable[..., object]]:
    """Stops whatever runners and watchers a test made, in reverse order."""
    made: list[ProjectionRunner | CheckpointWatcher] = []

    def keep(thing: ProjectionRunner | CheckpointWatcher) -> object:
        made.append(thing)
        return thing

    yield keep
    for thing in reversed(made):
        await thing.stop()


def _projections() -> tuple[Counts, Counts]:
    return Counts(), Counts("rare", types=frozenset({"Rare"}), table="rare_counts")


async def _other_process(env: Env, **options: float) -> CheckpointWatcher:
    store = await env.new_store()
    counts, rare = _projections()
    watcher = CheckpointWatcher(store, env.new_engine(), [counts, rare], **options)
    await watcher.start()
    return watcher


async def test_an_idle_projection_reaches_a_position_its_checkpoint_row_lags(
    env: Env, closing: Callable[..., object], monkeypatch: pytest.MonkeyPatch
) -> None:
    # The idle projection's checkpoint row is not written while this test runs.
    monkeypatch.setattr("eventstore.projection_runner.IDLE_CHECKPOINT_INTERVAL", 600.0)
    counts, rare = _projections()
    first = await append(env.store, 3, type_="Rare")
    runner = ProjectionRunner(env.store, env.engine, [counts, rare])
    closing(runner)
    await runner.start()
    assert await runner.wait_for(first, timeout=10)
    head = await append(env.store, 20, start=3)
    assert await runner.wait_for(head, timeout=10)

    watcher = await _other_process(env)
    closing(watcher)
    assert (await checkpoint(env.engine, "rare"))["position"] < head
    loop = asyncio.get_running_loop()
    started = loop.time()
    result = await watcher.wait(head, ["rare"], timeout=5)
    assert result.ok and result.reached >= head
    assert loop.time() - started < 1
    assert watcher.scans >= 1

    # An event of its types that it has not applied yet is found, and waited for.
    await runner.stop()
    head = await append(env.store, 1, type_="Rare", start=23)
    later = await append(env.store, 5, start=24)
    scans = watcher.scans
    missed = await watcher.wait(later, ["rare"], timeout=0.3)
    assert not missed.ok and missed.behind == ("rare",) and missed.reached == head - 1
    assert missed.position == later and missed.failed == ()
    assert watcher.scans > scans
    waiting = asyncio.create_task(watcher.wait(later, ["rare"], timeout=10))
    await asyncio.sleep(0.1)
    runner = ProjectionRunner(
        env.store, env.engine, [Counts(), Counts("rare", types=rare.types, table="rare_counts")]
    )
    closing(runner)
    await runner.start()
    assert (await waiting).ok


async def test_waiting_without_a_scan_waits_for_the_checkpoint(
    env: Env, closing: Callable[..., object]
) -> None:
    watcher = await _other_process(env)
    closing(watcher)
    head = await append(env.store, 5)
    # Nothing runs the projections: a waiter that wrote an event of their types waits.
    result = await watcher.wait_each({"counts": head}, timeout=0.3, scan=False)
    assert not result.ok and watcher.scans == 0
    runner = ProjectionRunner(env.store, env.engine, list(_projections()))
    closing(runner)
    await runner.start()
    assert (await watcher.wait_each({"counts": head}, timeout=10, scan=False)).ok


async def test_a_failed_projection_ends_the_wait_at_once(
    env: Env, closing: Callable[..., object]
) -> None:
    broken, rare = _projections()
    broken.poison = True
    head = await append(env.store, 10, poison_at=5)
    runner = ProjectionRunner(env.store, env.engine, [broken, rare])
    closing(runner)
    await runner.start()
    await eventually(lambda: _status(env, "counts", FAILED))
    watcher = await _other_process(env)
    closing(watcher)
    for waiting in (runner.watcher, watcher):
        loop = asyncio.get_running_loop()
        started = loop.time()
        result = await waiting.wait(head, timeout=10)
        assert loop.time() - started < 2
        assert not result.ok and result.failed == ("counts",) and result.reached == 5
    # Short of the failing event, it is reached.
    assert (await watcher.wait(4, ["counts"], timeout=5)).ok


async def _status(env: Env, name: str, status: str) -> bool:
    try:
        return bool((await checkpoint(env.engine, name))["status"] == status)
    except sa.exc.NoResultFound:  # not started yet
        return False


async def test_listeners_hear_of_every_move(env: Env, closing: Callable[..., object]) -> None:
    watcher = await _other_process(env)
    closing(watcher)
    moves: list[tuple[str, int]] = []
    resets: list[int] = []
    remove = watcher.add_listener(
        lambda name, reach: moves.append((name, reach)), lambda: resets.append(1)
    )
    runner = ProjectionRunner(env.store, env.engine, list(_projections()))
    closing(runner)
    await runner.start()
    head = await append(env.store, 10)
    assert (await watcher.wait(head, timeout=10)).ok
    reached = [reach for name, reach in moves if name == "counts"]
    assert reached and reached == sorted(reached) and reached[-1] == head
    remove()
    count = len(moves)
    head = await append(env.store, 3, start=10)
    assert (await watcher.wait(head, ["counts"], timeout=10)).ok
    assert len(moves) == count


@pytest.mark.postgres
async def test_notifications_carry_checkpoints_across_processes(
    pg_env: Env, closing: Callable[..., object]
) -> None:
    env = pg_env
    # No polling: only NOTIFY can tell the other process in time.
    watcher = await _other_process(env, fallback_interval=600.0)
    closing(watcher)
    runner = ProjectionRunner(env.store, env.engine, list(_projections()))
    closing(runner)
    await runner.start()
    for start in (0, 10, 20):
        head = await append(env.store, 10, start=start)
        result = await watcher.wait_each({"counts": head}, timeout=5, scan=False)
        assert result.ok
    assert watcher.scans == 0

    # A lost LISTEN connection: the reconnection reads the table again and tells the
    # listeners that moves may have been missed.
    resets: list[int] = []
    watcher.add_listener(lambda _n, _r: None, lambda: resets.append(1))
    store = watcher.store
    assert isinstance(store, PostgresEventStore) and store.listener_pid is not None
    reloads = watcher.reloads
    killer = await asyncpg.connect(_plain_dsn(env.url))
    try:
        await killer.execute("SELECT pg_terminate_backend($1)", store.listener_pid)
    finally:
        await killer.close()
    await eventually(lambda: watcher.reloads > reloads and bool(resets), timeout=10)
    head = await append(env.store, 10, start=30)
    assert (await watcher.wait_each({"counts": head}, timeout=5, scan=False)).ok
