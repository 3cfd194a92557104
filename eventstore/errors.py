"""Errors raised by the event store."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from eventstore.records import ExpectedVersion


class EventStoreError(Exception):
    """Base class of every error the event store raises."""


class ConcurrencyError(EventStoreError):
    """The stream's actual version did not match the expected version of an append."""

    def __init__(self, stream_id: str, expected: ExpectedVersion, actual: int) -> None:
        self.stream_id = stream_id
        self.expected = expected
        self.actual = actual
        super().__init__(
            f"stream {stream_id!r}: expected version {expected}, actual version {actual}"
        )


class DuplicateEventError(EventStoreError):
    """An append reused event ids in a way that is not a faithful retry of an earlier append."""

    def __init__(self, stream_id: str, reason: str) -> None:
        self.stream_id = stream_id
        self.reason = reason
        super().__init__(f"stream {stream_id!r}: {reason}")


class InvalidAppendError(EventStoreError):
    """An append request was malformed (empty stream id, bad payload, duplicate ids in it)."""


class SerializationError(EventStoreError):
    """An event could not be encoded or decoded (unknown type, missing upcaster, bad data)."""


class SchemaVersionError(EventStoreError):
    """The database holds a newer event store schema than this code knows."""


class StoreUnavailableError(EventStoreError):
    """The database could not be reached or is locked; the operation may be retried."""
