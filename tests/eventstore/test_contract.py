"""The event store contract, run against every backend: memory, a SQLite file and PostgreSQL."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from eventstore import (
    ANY,
    NO_STREAM,
    STREAM_EXISTS,
    AppendResult,
    ConcurrencyError,
    DuplicateEventError,
    EventStore,
    InvalidAppendError,
    NewEvent,
)
from eventstore.chain import GENESIS_HASH, record_hash
from eventstore.records import canonical_json

Factory = Callable[..., Awaitable[EventStore]]


def ev(n: int = 0, type_: str = "Happened", **meta: Any) -> NewEvent:
    return NewEvent(type_, {"n": n}, {"actor": "tester", **meta})


async def collect(store: EventStore, after: int = 0, **kwargs: Any) -> list[Any]:
    return [r async for r in store.read_all(after, **kwargs)]


# -- expected versions ---------------------------------------------------------------------


async def test_append_to_new_stream_starts_at_version_one(store: EventStore) -> None:
    result = await store.append("s", [ev(1), ev(2)], NO_STREAM)
    assert (result.first_version, result.last_version) == (1, 2)
    assert (result.first_position, result.last_position) == (1, 2)
    assert await store.stream_version("s") == 2
    assert await store.head_position() == 2


async def test_no_stream_on_existing_stream_conflicts(store: EventStore) -> None:
    await store.append("s", [ev()], NO_STREAM)
    with pytest.raises(ConcurrencyError) as info:
        await store.append("s", [ev()], NO_STREAM)
    assert (info.value.stream_id, info.value.expected, info.value.actual) == ("s", NO_STREAM, 1)


async def test_stream_exists(store: EventStore) -> None:
    with pytest.raises(ConcurrencyError) as info:
        await store.append("s", [ev()], STREAM_EXISTS)
    assert info.value.actual == 0
    await store.append("s", [ev()], ANY)
    result = await store.append("s", [ev()], STREAM_EXISTS)
    assert result.last_version == 2


async def test_exact_version(store: EventStore) -> None:
    await store.append("s", [ev(), ev()], 0)
    result = await store.append("s", [ev()], 2)
    assert result.last_version == 3
    with pytest.raises(ConcurrencyError) as info:
        await store.append("s", [ev()], 2)
    assert (info.value.expected, info.value.actual) == (2, 3)
    assert await store.stream_version("s") == 3


async def test_conflict_writes_nothing(store: EventStore) -> None:
    await store.append("s", [ev()], ANY)
    with pytest.raises(ConcurrencyError):
        await store.append("s", [ev(), ev()], 5)
    assert [r.version for r in await store.load_stream("s")] == [1]
    assert await store.head_position() == 1


async def test_empty_append_changes_nothing(store: EventStore) -> None:
    await store.append("s", [ev()], ANY)
    result = await store.append("s", [], 1)
    assert result.last_version == 1
    assert await store.stream_version("s") == 1
    with pytest.raises(ConcurrencyError):
        await store.append("s", [], 0)


async def test_invalid_requests_are_refused(store: EventStore) -> None:
    with pytest.raises(InvalidAppendError):
        await store.append("", [ev()])
    with pytest.raises(InvalidAppendError):
        await store.append("s", [ev()], -1)
    with pytest.raises(InvalidAppendError, match="not JSON"):
        await store.append("s", [NewEvent("T", {"x": object()})])
    same = uuid.uuid4()
    with pytest.raises(InvalidAppendError, match="twice"):
        await store.append(
            "s", [NewEvent("T", {}, event_id=same), NewEvent("T", {}, event_id=same)]
        )
    assert await store.head_position() == 0


# -- concurrency ---------------------------------------------------------------------------


async def test_concurrent_appends_at_same_version_exactly_one_wins(store: EventStore) -> None:
    await store.append("s", [ev()], NO_STREAM)
    results = await asyncio.gather(
        *(store.append("s", [ev(i)], 1) for i in range(10)), return_exceptions=True
    )
    wins = [r for r in results if not isinstance(r, BaseException)]
    losses = [r for r in results if isinstance(r, ConcurrencyError)]
    assert len(wins) == 1 and len(losses) == 9
    assert await store.stream_version("s") == 2


async def test_concurrent_any_appends_get_contiguous_versions(store: EventStore) -> None:
    results = await asyncio.gather(*(store.append("s", [ev(i)], ANY) for i in range(20)))
    assert sorted(r.last_version for r in results) == list(range(1, 21))
    records = await store.load_stream("s")
    assert [r.version for r in records] == list(range(1, 21))
    assert sorted(r.data["n"] for r in records) == list(range(20))


async def test_concurrent_appends_across_stores_sharing_a_database(store_factory: Factory) -> None:
    first, second = await store_factory(), await store_factory()
    await first.append("s", [ev()], NO_STREAM)
    results = await asyncio.gather(
        *(s.append("s", [ev(i)], 1) for i in range(6) for s in (first, second)),
        return_exceptions=True,
    )
    assert sum(not isinstance(r, BaseException) for r in results) == 1
    assert all(isinstance(r, ConcurrencyError) for r in results if isinstance(r, BaseException))


async def test_two_writers_racing_big_batches_do_not_interleave(store_factory: Factory) -> None:
    first, second = await store_factory(), await store_factory()
    batch_a = [ev(i, "A") for i in range(1000)]
    batch_b = [ev(i, "B") for i in range(1000)]
    ra, rb = await asyncio.gather(first.append("a", batch_a), second.append("b", batch_b))
    for result in (ra, rb):
        assert result.last_position - result.first_position == 999
    records = await collect(first)
    assert [r.position for r in records] == list(range(1, 2001))
    types = [r.type for r in records]
    assert types in (["A"] * 1000 + ["B"] * 1000, ["B"] * 1000 + ["A"] * 1000)


async def test_writers_and_tailing_readers_see_everything_once(store_factory: Factory) -> None:
    writers = [await store_factory() for _ in range(3)]
    reader_store = await store_factory()
    committed: set[str] = set()
    done = asyncio.Event()

    async def write(index: int) -> None:
        store = writers[index % len(writers)]
        for n in range(15):
            events = [ev(n) for _ in range(1 + n % 3)]
            await store.append(f"w{index}", events, ANY)
            committed.update(str(e.event_id) for e in events)

    async def tail() -> list[int]:
        seen: list[int] = []
        position = 0
        while True:
            finished = done.is_set()
            async for record in reader_store.read_all(position):
                seen.append(record.position)
                position = record.position
            if finished:
                return seen
            await asyncio.sleep(0.001)

    readers = [asyncio.create_task(tail()) for _ in range(2)]
    await asyncio.gather(*(write(i) for i in range(10)))
    done.set()
    seen = await asyncio.gather(*readers)
    everything = {str(r.event_id) for r in await collect(reader_store)}
    assert everything == committed
    for positions in seen:
        assert positions == sorted(set(positions)), "a reader saw a duplicate or went backwards"
        assert len(positions) == len(committed)


# -- idempotency ---------------------------------------------------------------------------


async def test_retry_after_lost_ack_returns_original_result(store: EventStore) -> None:
    events = [ev(1), ev(2)]
    original = await store.append("s", events, NO_STREAM)
    await store.append("s", [ev(3)], 2)
    retry = await store.append("s", events, NO_STREAM)
    assert retry == original
    assert await store.stream_version("s") == 3
    assert await store.head_position() == 3


async def test_retry_with_any_is_idempotent(store: EventStore) -> None:
    events = [ev(1)]
    original = await store.append("s", events, ANY)
    assert await store.append("s", events, ANY) == original
    assert await store.head_position() == 1


async def test_concurrent_duplicate_retries_write_once(store: EventStore) -> None:
    events = [ev(1), ev(2)]
    results = await asyncio.gather(*(store.append("s", events, ANY) for _ in range(5)))
    assert len(set(results)) == 1
    assert await store.head_position() == 2


async def test_partial_overlap_is_rejected(store: EventStore) -> None:
    first = ev(1)
    await store.append("s", [first], ANY)
    with pytest.raises(DuplicateEventError, match="partial"):
        await store.append("s", [first, ev(2)], ANY)
    assert await store.head_position() == 1


async def test_same_id_with_other_content_is_rejected(store: EventStore) -> None:
    first = ev(1)
    await store.append("s", [first], ANY)
    changed = NewEvent(first.type, {"n": 99}, first.metadata, event_id=first.event_id)
    with pytest.raises(DuplicateEventError, match="other content"):
        await store.append("s", [changed], ANY)
    with pytest.raises(DuplicateEventError, match="already appended to"):
        await store.append("other", [first], ANY)


# -- records and reads ---------------------------------------------------------------------


async def test_records_hold_every_field(store: EventStore) -> None:
    event = NewEvent(
        "Published",
        {"title": "Привет", "n": 1},
        {"actor": "ed", "correlation_id": "c1"},
        schema_version=2,
    )
    await store.append("s", [event])
    (record,) = await store.load_stream("s")
    assert record.event_id == event.event_id
    assert record.type == "Published" and record.schema_version == 2
    assert record.data == {"title": "Привет", "n": 1}
    assert record.metadata == {"actor": "ed", "correlation_id": "c1"}
    assert record.recorded_at.tzinfo is not None
    expected = record_hash(
        GENESIS_HASH,
        1,
        "s",
        1,
        str(event.event_id),
        "Published",
        2,
        canonical_json(event.data),
        canonical_json(event.metadata),
        record.recorded_at_us,
    )
    assert record.hash == expected


async def test_hash_chain_links_every_record(store: EventStore) -> None:
    for i in range(5):
        await store.append(f"s{i % 2}", [ev(i), ev(i)])
    previous = GENESIS_HASH
    for r in await collect(store):
        assert r.hash == record_hash(
            previous,
            r.position,
            r.stream_id,
            r.version,
            str(r.event_id),
            r.type,
            r.schema_version,
            canonical_json(r.data),
            canonical_json(r.metadata),
            r.recorded_at_us,
        )
        previous = r.hash


async def test_read_stream_ranges_and_backwards(store: EventStore) -> None:
    await store.append("s", [ev(i) for i in range(1, 11)])
    await store.append("other", [ev()])

    async def versions(**kw: Any) -> list[int]:
        return [r.version async for r in store.read_stream("s", page_size=3, **kw)]

    assert await versions() == list(range(1, 11))
    assert await versions(from_version=4, to_version=7) == [4, 5, 6, 7]
    assert await versions(backwards=True) == list(range(10, 0, -1))
    assert await versions(from_version=3, to_version=8, backwards=True) == [8, 7, 6, 5, 4, 3]
    assert [r async for r in store.read_stream("missing")] == []


async def test_read_all_filters_and_pages(store: EventStore) -> None:
    for i in range(7):
        await store.append(f"statement-{i}", [ev(i, "A"), ev(i, "B")])
        await store.append(f"view-{i}", [ev(i, "V")])
    all_records = [r async for r in store.read_all(page_size=4)]
    assert [r.position for r in all_records] == list(range(1, 22))
    assert [r.position for r in await collect(store, 10, limit=5)] == [11, 12, 13, 14, 15]
    only_b = await collect(store, types=["B"])
    assert {r.type for r in only_b} == {"B"} and len(only_b) == 7
    views = await collect(store, stream_prefix="view-")
    assert len(views) == 7 and all(r.stream_id.startswith("view-") for r in views)
    assert [r.position for r in await collect(store, 3, to_position=6)] == [4, 5, 6]
    head = await store.head()
    assert head is not None and head.position == 21


# -- atomicity -----------------------------------------------------------------------------


async def test_failed_batch_leaves_nothing_and_other_requests_succeed(store: EventStore) -> None:
    await store.append("s", [ev()], NO_STREAM)
    good, bad = await asyncio.gather(
        store.append("t", [ev(), ev()], NO_STREAM),
        store.append("s", [ev(), ev(), ev()], NO_STREAM),
        return_exceptions=True,
    )
    assert not isinstance(good, BaseException)
    assert isinstance(bad, ConcurrencyError)
    assert await store.stream_version("s") == 1
    assert await store.stream_version("t") == 2
    assert [r.position for r in await collect(store)] == [1, 2, 3]


# -- subscriptions -------------------------------------------------------------------------


async def test_subscribe_catches_up_then_follows_live(store: EventStore) -> None:
    await store.append("s", [ev(1), ev(2)])
    received: list[int] = []
    three = asyncio.Event()

    async def follow() -> None:
        async for record in store.subscribe(0):
            received.append(record.position)
            if len(received) == 5:
                three.set()
                return

    task = asyncio.create_task(follow())
    await asyncio.sleep(0.05)
    await store.append("s", [ev(3)])
    await store.append("t", [ev(4), ev(5)])
    await asyncio.wait_for(three.wait(), 5)
    await task
    assert received == [1, 2, 3, 4, 5]


async def test_subscribe_from_position_and_types(store: EventStore) -> None:
    await store.append("s", [ev(1, "A"), ev(2, "B"), ev(3, "A")])
    got: list[int] = []

    async def follow() -> None:
        async for record in store.subscribe(1, types=["A"]):
            got.append(record.position)
            if len(got) == 2:
                return

    task = asyncio.create_task(follow())
    await asyncio.sleep(0.02)
    await store.append("s", [ev(4, "B"), ev(5, "A")])
    await asyncio.wait_for(task, 5)
    assert got == [3, 5]


async def test_subscriber_in_other_store_is_woken(store_factory: Factory) -> None:
    writer = await store_factory()
    reader = await store_factory(poll_interval=0.1)
    got: list[int] = []

    async def follow() -> None:
        async for record in reader.subscribe(0):
            got.append(record.position)
            if len(got) == 3:
                return

    task = asyncio.create_task(follow())
    await asyncio.sleep(0.05)
    for i in range(3):
        await writer.append("s", [ev(i)])
    await asyncio.wait_for(task, 5)
    assert got == [1, 2, 3]


async def test_append_many_decides_each_request_alone(store: EventStore) -> None:
    await store.append("taken", [ev(0)], NO_STREAM)
    retried = ev(9)
    await store.append("retried", [retried], NO_STREAM)
    results = await store.append_many(
        [
            ("a", [ev(1), ev(2)], NO_STREAM),
            ("taken", [ev(3)], NO_STREAM),
            ("b", [ev(4)], ANY),
            # The id of an event already stored, for other content: refused as a duplicate.
            ("retried", [NewEvent("Happened", {"n": 5}, {}, retried.event_id)], ANY),
        ]
    )
    a, taken, b, clash = results
    assert isinstance(a, AppendResult) and (a.first_version, a.last_version) == (1, 2)
    assert isinstance(taken, ConcurrencyError)
    assert isinstance(b, AppendResult) and b.last_version == 1
    assert isinstance(clash, DuplicateEventError)
    # The refused requests wrote nothing; the others are in the log, in request order.
    assert [(e.stream_id, e.data["n"]) for e in await collect(store)] == [
        ("taken", 0),
        ("retried", 9),
        ("a", 1),
        ("a", 2),
        ("b", 4),
    ]
    with pytest.raises(InvalidAppendError):
        await store.append_many([("c", [ev(6)], ANY), ("d", [], ANY)])
    assert await store.stream_version("c") == 0


async def test_load_streams_reads_many_streams_at_once(store: EventStore) -> None:
    for n in range(3):
        await store.append("s-1", [ev(n)], ANY)
        await store.append(f"s-{n + 2}", [ev(10 + n)], ANY)
    loaded = await store.load_streams(["s-1", "s-3", "missing", "s-1"])
    assert sorted(loaded) == ["s-1", "s-3"]
    assert [(e.version, e.data["n"]) for e in loaded["s-1"]] == [(1, 0), (2, 1), (3, 2)]
    assert [e.data["n"] for e in loaded["s-3"]] == [11]
