"""The domain's EventLog port, implemented over the event store; what a request wrote."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field

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


@dataclass
class Writes:
    """The events appended while :func:`recording_writes` was active: (position, stored type).

    Read-your-writes needs to know which read models a command's events affect, and only the
    port that serializes them knows their stored type names.
    """

    events: list[tuple[int, str]] = field(default_factory=list)

    @property
    def position(self) -> int | None:
        """The position of the last event written, None if nothing was."""
        return max((position for position, _type in self.events), default=None)

    def last_of_each_type(self) -> dict[str, int]:
        """The position of the last event of each type written."""
        last: dict[str, int] = {}
        for position, type_ in self.events:
            last[type_] = max(position, last.get(type_, 0))
        return last


_writes: ContextVar[Writes | None] = ContextVar("statements_writes", default=None)


@contextlib.contextmanager
def recording_writes() -> Iterator[Writes]:
    """Collect what the block appends through any :class:`StoreEventLog` (in this task)."""
    writes = Writes()
    token = _writes.set(writes)
    try:
        yield writes
    finally:
        _writes.reset(token)


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
        writes = _writes.get()
        if writes is not None:
            writes.events.extend(
                (result.first_position + i, event.type) for i, event in enumerate(new_events)
            )
        return Appended(stream_id, result.last_version, result.last_position)
