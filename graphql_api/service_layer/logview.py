"""Reading the raw log for auditors: pages of events with cursors, optionally one stream's.

A cursor names an event: its position, and its stream and version, so that paging through one
stream continues from a version (the stream's index) rather than scanning from its start.
Cursors are URL-safe base64 JSON, opaque to clients; ``after`` also takes a bare log position
("123"), so an auditor can start right after a position they know.

Paging is forward only (``first``/``after``); ``hasPreviousPage`` is false, as Relay allows
when it cannot be told cheaply. Events are returned as recorded: stored data and metadata,
before any upcasting, with the schema version they were written with.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from eventstore import EventStore, RecordedEvent
from graphql_api.service_layer.asof import aclose

MAX_PAGE: Final = 100
DEFAULT_PAGE: Final = 20
MAX_TYPES: Final = 50
_TAG: Final = "e"
_MAX_CURSOR: Final = 2_000


@dataclass(frozen=True, slots=True)
class EventCursor:
    position: int
    stream_id: str
    version: int


@dataclass(frozen=True, slots=True)
class EventPage:
    records: list[RecordedEvent]
    cursors: list[str]
    has_next: bool


def event_cursor(record: RecordedEvent) -> str:
    """The cursor of an event."""
    raw = json.dumps([_TAG, record.position, record.stream_id, record.version]).encode()
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def parse_event_cursor(cursor: str) -> EventCursor | int:
    """The event a cursor names, or a bare position; raises ValueError for anything else."""
    invalid = "after: not a valid cursor of events (nor a log position)"
    if cursor.isascii() and cursor.isdigit() and len(cursor) < 20:
        return int(cursor)
    if len(cursor) > _MAX_CURSOR:
        raise ValueError(invalid)
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        value = json.loads(raw.decode("utf-8"))
    except (binascii.Error, ValueError):
        raise ValueError(invalid) from None
    if (
        not isinstance(value, list)
        or len(value) != 4
        or value[0] != _TAG
        or not isinstance(value[2], str)
        or any(isinstance(v, bool) or not isinstance(v, int) or v < 0 for v in value[1::2])
    ):
        raise ValueError(invalid)
    return EventCursor(value[1], value[2], value[3])


def _checked(first: int | None, types: Sequence[str] | None) -> int:
    size = DEFAULT_PAGE if first is None else first
    if not 0 <= size <= MAX_PAGE:
        raise ValueError(f"first: must be between 0 and {MAX_PAGE}, got {size}")
    if types is not None and len(types) > MAX_TYPES:
        raise ValueError(f"types: at most {MAX_TYPES} event types")
    return size


async def read_events(
    store: EventStore,
    *,
    first: int | None = None,
    after: str | None = None,
    stream_id: str | None = None,
    types: Sequence[str] | None = None,
) -> EventPage:
    """A page of events after a cursor: of the whole log, or of one stream; of some types."""
    size = _checked(first, types)
    start = parse_event_cursor(after) if after is not None else None
    position = start if isinstance(start, int) else start.position if start else 0
    wanted = size + 1
    records: list[RecordedEvent] = []
    if stream_id is None:
        async for record in store.read_all(position, limit=wanted, types=types):
            records.append(record)
    else:
        same_stream = isinstance(start, EventCursor) and start.stream_id == stream_id
        from_version = start.version + 1 if isinstance(start, EventCursor) and same_stream else 1
        wanted_types = frozenset(types) if types is not None else None
        stream = store.read_stream(stream_id, from_version, page_size=min(1000, 4 * wanted))
        try:
            async for record in stream:
                if record.position <= position:
                    continue
                if wanted_types is not None and record.type not in wanted_types:
                    continue
                records.append(record)
                if len(records) >= wanted:
                    break
        finally:
            await aclose(stream)
    has_next = len(records) > size
    records = records[:size]
    return EventPage(records, [event_cursor(r) for r in records], has_next)
