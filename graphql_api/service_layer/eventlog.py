"""The domain's EventLog port, implemented over the event store; what a request wrote."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Collection, Iterator, Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field

from domain.errors import ConcurrencyConflict, DomainError, DuplicateEventId
from domain.ports import Appended, StreamAppend
from eventstore import (
    ANY,
    NO_STREAM,
    AppendResult,
    ConcurrencyError,
    DuplicateEventError,
    EventRegistry,
    EventStore,
    ExpectedVersion,
    NewEvent,
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
        new_events = self._new_events(events, metadata, event_ids)
        try:
            result = await self.store.append(stream_id, new_events, _expected(expected_version))
        except ConcurrencyError as exc:
            raise ConcurrencyConflict(stream_id, expected_version, exc.actual) from exc
        except DuplicateEventError as exc:
            raise DuplicateEventId(stream_id, exc.reason) from exc
        return self._appended(result, new_events)

    async def load_many(self, stream_ids: Collection[str]) -> dict[str, tuple[int, list[object]]]:
        decode = self.registry.decode
        return {
            stream_id: (records[-1].version, [decode(record) for record in records])
            for stream_id, records in (await self.store.load_streams(stream_ids)).items()
        }

    async def append_many(self, appends: Sequence[StreamAppend]) -> list[Appended | DomainError]:
        batches = [
            (append, self._new_events(append.events, append.metadata, append.event_ids))
            for append in appends
        ]
        results = await self.store.append_many(
            [
                (append.stream_id, new_events, _expected(append.expected_version))
                for append, new_events in batches
            ]
        )
        answers: list[Appended | DomainError] = []
        for (append, new_events), result in zip(batches, results, strict=True):
            if isinstance(result, ConcurrencyError):
                answers.append(
                    ConcurrencyConflict(append.stream_id, append.expected_version, result.actual)
                )
            elif isinstance(result, DuplicateEventError):
                answers.append(DuplicateEventId(append.stream_id, result.reason))
            elif isinstance(result, Exception):
                raise result
            else:
                answers.append(self._appended(result, new_events))
        return answers

    def _new_events(
        self,
        events: Sequence[object],
        metadata: Mapping[str, str | None],
        event_ids: Sequence[str] | None,
    ) -> list[NewEvent]:
        ids = [uuid.UUID(i) for i in event_ids] if event_ids is not None else [None] * len(events)
        return [
            self.registry.new_event(event, metadata, event_id)
            for event, event_id in zip(events, ids, strict=True)
        ]

    def _appended(self, result: AppendResult, new_events: list[NewEvent]) -> Appended:
        writes = _writes.get()
        if writes is not None:
            writes.events.extend(
                (result.first_position + i, event.type) for i, event in enumerate(new_events)
            )
        return Appended(result.stream_id, result.last_version, result.last_position)


def _expected(expected_version: int | None) -> ExpectedVersion:
    if expected_version is None:
        return ANY
    if expected_version == 0:
        return NO_STREAM
    return expected_version
