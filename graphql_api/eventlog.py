"""The domain's EventLog port, implemented over the event store."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence

from domain.errors import ConcurrencyConflict, DuplicateEventId
from domain.ports import Appended
from eventstore import (
    ANY,
    NO_STREAM,
    ConcurrencyError,
    DuplicateEventError,
    EventRegistry,
    EventStore,
    ExpectedVersion,
)


class StoreEventLog:
    """Decodes streams into domain events and appends them with the domain's version rules."""

    def __init__(self, store: EventStore, registry: EventRegistry) -> None:
        self.store = store
        self.registry = registry

    async def load(self, stream_id: str) -> tuple[int, list[object]]:
        decode = self.registry.decode
        events: list[object] = []
        version = 0
        async for record in self.store.read_stream(stream_id):
            events.append(decode(record))
            version = record.version
        return version, events

    async def append(
        self,
        stream_id: str,
        events: Sequence[object],
        expected_version: int | None,
        metadata: Mapping[str, str | None],
        event_ids: Sequence[str] | None = None,
    ) -> Appended:
        expected: ExpectedVersion
        if expected_version is None:
            expected = ANY
        elif expected_version == 0:
            expected = NO_STREAM
        else:
            expected = expected_version
        ids = [uuid.UUID(i) for i in event_ids] if event_ids is not None else [None] * len(events)
        new_events = [
            self.registry.new_event(event, metadata, event_id)
            for event, event_id in zip(events, ids, strict=True)
        ]
        try:
            result = await self.store.append(stream_id, new_events, expected)
        except ConcurrencyError as exc:
            raise ConcurrencyConflict(stream_id, expected_version, exc.actual) from exc
        except DuplicateEventError as exc:
            raise DuplicateEventId(stream_id, exc.reason) from exc
        return Appended(stream_id, result.last_version, result.last_position)
