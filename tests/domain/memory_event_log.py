"""The real in-memory event store behind the domain's port, with a recorder for assertions.

The store is the project's only fake; this wrapper only counts what the handlers read and lets
a test act as another writer just before an append.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass

from domain.ports import Appended
from eventstore.memory import MemoryEventStore
from eventstore.sql import record_from_row
from graphql_api.service_layer.eventlog import StoreEventLog
from projections.registry import event_registry


@dataclass(frozen=True, slots=True)
class StoredEvent:
    """One appended event with where it went and the metadata stored with it."""

    position: int
    stream_id: str
    version: int
    event_id: str
    event: object
    metadata: Mapping[str, str | None]


class InMemoryEventLog(StoreEventLog):
    """StoreEventLog over a MemoryEventStore that records loads and appends."""

    def __init__(self) -> None:
        super().__init__(MemoryEventStore(), event_registry())
        self.memory: MemoryEventStore = self.store  # type: ignore[assignment]
        self.loads: list[str] = []
        self.events_read: Counter[str] = Counter()
        self.append_calls: list[str] = []
        #: Awaited at the start of every append: tests use it to write "concurrently" or fail.
        self.before_append: Callable[[str], Awaitable[None]] | None = None

    async def load(self, stream_id: str) -> tuple[int, list[object]]:
        self.loads.append(stream_id)
        version, events = await super().load(stream_id)
        self.events_read[stream_id] += len(events)
        return version, events

    async def append(
        self,
        stream_id: str,
        events: Sequence[object],
        expected_version: int | None,
        metadata: Mapping[str, str | None],
        event_ids: Sequence[str] | None = None,
    ) -> Appended:
        await asyncio.sleep(0)
        self.append_calls.append(stream_id)
        if self.before_append is not None:
            await self.before_append(stream_id)
        return await super().append(stream_id, events, expected_version, metadata, event_ids)

    # --- helpers for tests -------------------------------------------------------------------

    async def write(
        self,
        stream_id: str,
        events: Sequence[object],
        expected_version: int | None = None,
        metadata: Mapping[str, str | None] | None = None,
    ) -> Appended:
        """Append as another writer would, bypassing the recorder."""
        return await super().append(stream_id, events, expected_version, metadata or {})

    def stream(self, stream_id: str) -> list[StoredEvent]:
        return [e for e in self.all_events if e.stream_id == stream_id]

    def events(self, stream_id: str) -> list[object]:
        return [e.event for e in self.stream(stream_id)]

    @property
    def all_events(self) -> list[StoredEvent]:
        stored = []
        for row in self.memory.rows:
            record = record_from_row(row)
            stored.append(
                StoredEvent(
                    record.position,
                    record.stream_id,
                    record.version,
                    str(record.event_id),
                    self.registry.decode(record),
                    record.metadata,
                )
            )
        return stored

    @property
    def stream_ids(self) -> list[str]:
        return list(dict.fromkeys(e.stream_id for e in self.all_events))
