"""The per-file write lock: FIFO order and a bounded wait, also on its uncontended fast path."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from eventstore.errors import StoreUnavailableError
from eventstore.sqlite_lock import sqlite_write_lock, write_lock


async def test_a_newcomer_does_not_jump_a_woken_waiter(tmp_path: Path) -> None:
    database = str(tmp_path / "one.db")
    order: list[str] = []

    async def writer(name: str) -> None:
        async with sqlite_write_lock(database, 5.0):
            order.append(name)
            await asyncio.sleep(0)

    first = sqlite_write_lock(database, 5.0)
    await first.__aenter__()
    waiting = asyncio.ensure_future(writer("waiting"))
    await asyncio.sleep(0.01)  # now queued on the lock
    await first.__aexit__(None, None, None)
    # The lock is free but its woken waiter has not run yet: a newcomer queues behind it.
    newcomer = asyncio.ensure_future(writer("newcomer"))
    await asyncio.gather(waiting, newcomer)
    assert order == ["waiting", "newcomer"]


async def test_a_newcomer_behind_a_woken_waiter_still_times_out(tmp_path: Path) -> None:
    database = str(tmp_path / "one.db")
    lock = write_lock(database)
    assert lock is not None
    holder = sqlite_write_lock(database, 5.0)
    await holder.__aenter__()
    released = asyncio.Event()

    async def slow() -> None:
        async with sqlite_write_lock(database, 5.0):
            await released.wait()  # keeps the lock past the newcomer's timeout

    slow_task = asyncio.ensure_future(slow())
    await asyncio.sleep(0.01)
    await holder.__aexit__(None, None, None)
    assert not lock.locked()  # handed to ``slow``, which has not run yet
    with pytest.raises(StoreUnavailableError, match=r"waited 0\.05 s"):
        async with sqlite_write_lock(database, 0.05):
            pass
    released.set()
    await slow_task
    async with sqlite_write_lock(database, 0.05):
        assert lock.locked()
    assert not lock.locked()


async def test_the_lock_is_released_when_the_block_raises(tmp_path: Path) -> None:
    database = str(tmp_path / "one.db")
    with pytest.raises(RuntimeError):
        async with sqlite_write_lock(database, 1.0):
            raise RuntimeError("boom")
    lock = write_lock(database)
    assert lock is not None and not lock.locked()
