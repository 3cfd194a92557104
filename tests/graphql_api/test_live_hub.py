"""The live hub in-process, with the feed driven by hand: orderings that a real server only
hits under load, made deterministic."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import pytest

from eventstore import RecordedEvent
from eventstore.memory import MemoryEventStore
from eventstore.urls import create_engine
from graphql_api.service_layer.live_hub import CountUpdate, LiveHub

SID = "s-1"


class _Hub(LiveHub):
    """A hub whose read model says "0 views, checkpoint 0" and that runs a hook right after a
    count is loaded, in the same step, before any waiting subscriber has resumed."""

    after_load: Callable[[], None] | None = None

    async def _snapshot(self, statement_id: str) -> tuple[int, int]:
        return 0, 0

    async def _load(self, tracked: object) -> None:
        await super()._load(tracked)  # type: ignore[arg-type]
        if self.after_load is not None:
            self.after_load()


def _record(
    position: int, type_: str, data: dict[str, Any], schema_version: int = 1
) -> RecordedEvent:
    return RecordedEvent(
        position=position,
        stream_id=f"statement-{SID}",
        version=position,
        event_id=uuid.uuid4(),
        type=type_,
        schema_version=schema_version,
        data=data,
        metadata={},
        recorded_at=datetime.now(UTC),
        hash=b"",
    )


def _viewed(position: int) -> RecordedEvent:
    return _record(position, "Viewed", {"statement_id": SID})


@pytest.fixture
async def hub(tmp_path: Path) -> AsyncIterator[_Hub]:
    engine = create_engine(f"sqlite:///{tmp_path / 'unused.db'}")  # _snapshot never reads it
    hub = _Hub(MemoryEventStore(), engine, tick=3600)  # ticks only when the test flushes
    await hub.start()
    try:
        yield hub
    finally:
        await hub.stop()
        await engine.dispose()


async def test_a_count_published_before_the_first_value_is_not_sent_after_it(hub: _Hub) -> None:
    def tick_then_view() -> None:
        # The subscriber is woken but has not run yet: a tick publishes 1 into its
        # mailbox, then one more view makes the count 2 before it takes its first value.
        hub.apply(_viewed(1))
        hub.publish_counts()
        hub.apply(_viewed(2))

    hub.after_load = tick_then_view
    updates = cast(AsyncGenerator[CountUpdate, None], hub.view_counts(SID))
    first = await anext(updates)
    assert first.view_count == 2
    following = asyncio.ensure_future(anext(updates))
    for _ in range(5):
        await asyncio.sleep(0)
    assert not following.done(), f"sent after 2: {following.result()}"
    hub.apply(_viewed(3))
    hub.publish_counts()
    update: CountUpdate = await asyncio.wait_for(following, 5)
    assert update.view_count == 3
    await updates.aclose()
    assert hub.stats()["subscribers"] == 0


async def test_views_imported_add_their_count_as_the_views_projection_does(hub: _Hub) -> None:
    updates = cast(AsyncGenerator[CountUpdate, None], hub.view_counts(SID))
    assert (await anext(updates)).view_count == 0
    hub.apply(_viewed(1))
    hub.apply(_record(2, "ViewsImported", {"statement_id": SID, "count": 40, "source": "old"}))
    hub.publish_counts()
    update = await asyncio.wait_for(anext(updates), 5)
    assert (update.view_count, update.position) == (41, 2)
    await updates.aclose()


async def test_a_statement_published_at_schema_version_1_is_upcast_for_the_feed(hub: _Hub) -> None:
    published = hub.published()
    following = asyncio.ensure_future(anext(published))
    await asyncio.sleep(0)
    v1 = {
        "statement_id": SID,
        "slug": "a-statement",
        "title": "A statement",
        "kind": "PRESS_RELEASE",
        "minister": {"id": "m-1", "name": "A. Minister", "title": "Minister of Things"},
        "location": None,
        "occurred_on": "2026-01-02",
        "published_at": "2026-01-02T10:00:00+00:00",
        "body": "First paragraph.\n\nSecond paragraph.",
    }
    hub.apply(_record(1, "StatementPublished", v1, schema_version=1))
    item = await asyncio.wait_for(following, 5)
    assert (item.statement_id, item.title, item.minister_name, item.position) == (
        SID,
        "A statement",
        "A. Minister",
        1,
    )
    assert item.published_at == datetime(2026, 1, 2, 10, tzinfo=UTC)
    await published.aclose()  # type: ignore[attr-defined]
