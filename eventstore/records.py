"""The values that go into and come out of an event store."""

from __future__ import annotations

import enum
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final
from uuid import UUID

import orjson

from eventstore.ids import uuid7, uuid_from_text


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


class RecordedEvent:
    """An event as stored: its global position, stream version and chain hash."""

    # Reads build one of these per row, and most readers never look at every field: the JSON,
    # the UUID and the timestamp are decoded on first access (a third of the cost of a read).
    __slots__ = (
        "_data",
        "_event_id",
        "_metadata",
        "_recorded_at",
        "hash",
        "position",
        "schema_version",
        "stream_id",
        "type",
        "version",
    )

    position: int
    stream_id: str
    version: int
    type: str
    schema_version: int
    hash: bytes

    def __init__(
        self,
        position: int,
        stream_id: str,
        version: int,
        event_id: UUID | str,
        type: str,
        schema_version: int,
        data: dict[str, Any] | str,
        metadata: dict[str, Any] | str,
        recorded_at: datetime | int,
        hash: bytes,
    ) -> None:
        self.position = position
        self.stream_id = stream_id
        self.version = version
        self._event_id = event_id
        self.type = type
        self.schema_version = schema_version
        self._data = data
        self._metadata = metadata
        self._recorded_at = recorded_at
        self.hash = hash

    @property
    def event_id(self) -> UUID:
        value = self._event_id
        if isinstance(value, str):
            value = self._event_id = uuid_from_text(value)
        return value

    @property
    def data(self) -> dict[str, Any]:
        value = self._data
        if isinstance(value, str):
            value = self._data = orjson.loads(value)
        return value

    @property
    def metadata(self) -> dict[str, Any]:
        value = self._metadata
        if isinstance(value, str):
            value = self._metadata = orjson.loads(value)
        return value

    @property
    def raw_data(self) -> str:
        """The data as the stored JSON text (what the chain and the Merkle leaf hash)."""
        value = self._data
        # Once decoded, the canonical encoding gives the stored text back.
        return value if isinstance(value, str) else canonical_json(value)

    @property
    def raw_metadata(self) -> str:
        """The metadata as the stored JSON text."""
        value = self._metadata
        return value if isinstance(value, str) else canonical_json(value)

    @property
    def recorded_at(self) -> datetime:
        value = self._recorded_at
        if isinstance(value, int):
            value = self._recorded_at = us_to_datetime(value)
        return value

    @property
    def recorded_at_us(self) -> int:
        value = self._recorded_at
        return value if isinstance(value, int) else datetime_to_us(value)

    def _key(self) -> tuple[Any, ...]:
        return (
            self.position,
            self.stream_id,
            self.version,
            self.event_id,
            self.type,
            self.schema_version,
            self.data,
            self.metadata,
            self.recorded_at_us,
            self.hash,
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, RecordedEvent):
            return NotImplemented
        return self._key() == other._key()

    def __hash__(self) -> int:
        return hash((self.position, self.stream_id, self.version, self.hash))

    def __repr__(self) -> str:
        return (
            f"RecordedEvent(position={self.position}, stream_id={self.stream_id!r}, "
            f"version={self.version}, type={self.type!r}, event_id={self.event_id})"
        )


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


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """A tree head the store committed to (``eventstore.checkpoints``); ``note`` is the signed
    note, or the bare checkpoint body when the store has no signing key."""

    origin: str
    tree_size: int
    root_hash: bytes
    note: str
    signed: bool
    created_at_us: int
