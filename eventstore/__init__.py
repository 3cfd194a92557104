"""A generic, async, append-only event store on SQLAlchemy: memory, SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

from eventstore.errors import (
    ConcurrencyError,
    DuplicateEventError,
    EventStoreError,
    InvalidAppendError,
    SchemaVersionError,
    SerializationError,
    StoreUnavailableError,
)
from eventstore.reader import Reader, on_statement, reader_for
from eventstore.records import (
    ANY,
    NO_STREAM,
    STREAM_EXISTS,
    AppendResult,
    ExpectedVersion,
    NewEvent,
    RecordedEvent,
    StreamState,
)
from eventstore.serialization import EventRegistry
from eventstore.store import EventStore
from eventstore.urls import backend_of

__all__ = [
    "ANY",
    "NO_STREAM",
    "STREAM_EXISTS",
    "AppendResult",
    "ConcurrencyError",
    "DuplicateEventError",
    "EventRegistry",
    "EventStore",
    "EventStoreError",
    "ExpectedVersion",
    "InvalidAppendError",
    "NewEvent",
    "Reader",
    "RecordedEvent",
    "SchemaVersionError",
    "SerializationError",
    "StoreUnavailableError",
    "StreamState",
    "on_statement",
    "open_store",
    "reader_for",
]


def open_store(url: str, **options: Any) -> EventStore:
    """A store for ``memory://``, ``sqlite:///FILE`` or ``postgresql://...``; call setup()."""
    backend = backend_of(url)
    if backend == "memory":
        from eventstore.memory import MemoryEventStore

        return MemoryEventStore(**options)
    if backend == "sqlite":
        from eventstore.sqlite import SQLiteEventStore

        return SQLiteEventStore(url, **options)
    from eventstore.postgres import PostgresEventStore

    return PostgresEventStore(url, **options)
