"""The values that go into and come out of an event store."""

from __future__ import annotations

import enum
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final, NamedTuple
from uuid import UUID

import orjson

from eventstore.ids import uuid7


class StreamState(enum.Enum):
    """Symbolic expected versions of an append."""

    ANY = "any"
    NO_STREAM = "no_stream"
    STREAM_EXISTS = "stream_exists"

    def __str__(self) -> str:
        return self.name


ANY: Final = StreamState.ANY
NO_STREAM: Final = StreamState.NO_STREAM
STREAM_EXISTS: Final = StreamState.STREAM_EXISTS

#: An exact version (0 means "the stream has no events") or one of the symbolic states.
ExpectedVersion = int | StreamState


def canonical_json(value: Mapping[str, Any]) -> str:
    """Encode a mapping as the one JSON text the store keeps and hashes.

    Compact, keys sorted, UTF-8 unescaped. orjson writes it ten times faster than json; the
    rare value it refuses (an integer beyond 64 bits) falls back to json, which writes the
    same text for everything else.
    """
    try:
        return orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode("utf-8")
    except orjson.JSONEncodeError:
        return json.dumps(value, ensure_ascii=False, sort_keys=True, separators=(",", ":"))


@dataclass(frozen=True, slots=True)
class NewEvent:
    """An event to append: its type, JSON data and metadata (actor, correlation_id, ...)."""

    type: str
    data: Mapping[str, Any]
    metadata: Mapping[str, Any] = field(default_factory=dict)
    event_id: UUID = field(default_factory=uuid7)
    schema_version: int = 1


class RecordedEvent(NamedTuple):
    """An event as stored: its global position, stream version and chain hash."""

    # A named tuple, not a frozen dataclass: reads build one per row, and a tuple is built
    # several times faster.

    position: int
    stream_id: str
    version: int
    event_id: UUID
    type: str
    schema_version: int
    data: dict[str, Any]
    metadata: dict[str, Any]
    recorded_at: datetime
    hash: bytes

    @property
    def recorded_at_us(self) -> int:
        return datetime_to_us(self.recorded_at)


@dataclass(frozen=True, slots=True)
class AppendResult:
    """What an append wrote: the stream's new version and the positions of its events."""

    stream_id: str
    first_version: int
    last_version: int
    first_position: int
    last_position: int

    @property
    def version(self) -> int:
        return self.last_version

    @property
    def position(self) -> int:
        return self.last_position


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def datetime_to_us(value: datetime) -> int:
    delta = value - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def us_to_datetime(value: int) -> datetime:
    return _EPOCH + timedelta(microseconds=value)
