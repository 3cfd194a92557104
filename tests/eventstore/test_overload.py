"""Overload: the group-commit queue is bounded and refuses fast, with a retryable error."""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest

from eventstore.errors import StoreUnavailableError
from eventstore.memory import MemoryEventStore
from eventstore.planning import Outcome, PendingAppend
from eventstore.records import NewEvent
from eventstore.store import DEFAULT_MAX_PENDING_EVENTS


class GatedStore(MemoryEventStore):
    """A memory store whose writes wait for a gate: a database slower than the load."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = asyncio.Event()
        self.writing = asyncio.Event()

    async def _write_batch(self, batch: list[PendingAppend]) -> list[Outcome]:
        self.writing.set()
        await self.gate.wait()
        return await super()._write_batch(batch)


def event(n: int = 0) -> NewEvent:
    return NewEvent(type="Happened", data={"n": n}, event_id=uuid.uuid4())


def test_default_bound() -> None:
    store = MemoryEventStore()
    assert store.max_pending_events == DEFAULT_MAX_PENDING_EVENTS == 100_000
    with pytest.raises(ValueError):
        store.max_pending_events = 0


async def test_appends_beyond_the_bound_fail_fast_and_the_rest_commit() -> None:
    store = GatedStore()
    store.max_pending_events = 100
    first = asyncio.create_task(store.append("s-first", [event()]))
    await store.writing.wait()  # the first batch is in the database, the gate holds it there

    tasks = [asyncio.create_task(store.append(f"s-{i}", [event(i)])) for i in range(150)]
    await asyncio.sleep(0)  # every task runs up to its submit
    rejected = [t for t in tasks if t.done()]
    assert len(rejected) == 50
    for task in rejected:
        error = task.exception()
        assert isinstance(error, StoreUnavailableError)
        assert str(error).startswith("overloaded: 100 events already wait for a commit")
    assert store.pending_events == 100

    store.gate.set()
    accepted = [t for t in tasks if t not in rejected]
    results = await asyncio.gather(first, *accepted)
    assert len(results) == 101
    assert store.pending_events == 0
    assert await store.head_position() == 101
    positions = sorted(r.last_position for r in results)
    assert positions == list(range(1, 102))
    # Once the queue drained, appends are accepted again.
    assert (await store.append("s-after", [event()])).last_position == 102
    await store.close()


async def test_an_append_larger_than_the_bound_is_accepted_when_nothing_waits() -> None:
    store = MemoryEventStore()
    store.max_pending_events = 5
    result = await store.append("big", [event(i) for i in range(20)])
    assert result.last_position == 20
    await store.close()


async def test_sustained_overload_keeps_memory_bounded_and_rejects_in_microseconds() -> None:
    store = GatedStore()
    store.max_pending_events = 1000
    blocker = asyncio.create_task(store.append("blocker", [event()]))
    await store.writing.wait()
    accepted: list[asyncio.Task[object]] = []
    rejections = 0
    worst = 0.0
    for i in range(20_000):
        started = time.perf_counter()
        try:
            # Submitting directly measures the refusal itself, not task scheduling.
            coro = store.append(f"s-{i}", [event(i)])
            task = asyncio.ensure_future(coro)
            await asyncio.sleep(0)
            if task.done() and isinstance(task.exception(), StoreUnavailableError):
                rejections += 1
                worst = max(worst, time.perf_counter() - started)
            else:
                accepted.append(task)  # type: ignore[arg-type]
        finally:
            assert store.pending_events <= 1000
    assert len(accepted) == 1000
    assert rejections == 19_000
    assert worst < 0.05
    store.gate.set()
    await asyncio.gather(blocker, *accepted)
    assert await store.head_position() == 1001
    await store.close()
