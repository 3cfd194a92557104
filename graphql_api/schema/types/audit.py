"""The audit types (auditor role): the log's head, a verification, raw events and their pages.

Hashes are lower-case hex SHA-256 (64 digits), as ``statements verify`` prints them; a head
``position:hash`` can be passed back as ``verifyLog(expectHead:)``. A raw event is shown as
recorded: its stored data and metadata (before any upcasting) with its schema version.
"""

from __future__ import annotations

import enum
from datetime import datetime

import strawberry
from strawberry.scalars import JSON

from eventstore import RecordedEvent
from eventstore.audit import Anchor
from eventstore.audit import Verification as StoreVerification
from eventstore.chain import GENESIS_HASH
from graphql_api.schema.types.connection import Edge, PageInfo
from graphql_api.service_layer.logview import EventPage


@strawberry.type(description="The end of the hash chain: the log's last event.")
class LogHead:
    position: int = strawberry.field(description="The last position (0 for an empty log).")
    hash: str = strawberry.field(description="Its chain hash, hex (64 zeros for an empty log).")
    recorded_at: datetime | None = strawberry.field(description="When it was recorded.")

    @classmethod
    def of(cls, record: RecordedEvent | None) -> LogHead:
        if record is None:
            return cls(position=0, hash=GENESIS_HASH.hex(), recorded_at=None)
        return cls(position=record.position, hash=record.hash.hex(), recorded_at=record.recorded_at)


@strawberry.type(description="A position of the log and the chain hash it has.")
class LogAnchor:
    position: int
    hash: str

    @classmethod
    def of(cls, anchor: Anchor) -> LogAnchor:
        return cls(position=anchor.position, hash=anchor.hash.hex())


@strawberry.enum(description="What is wrong with the log at the first bad position.")
class VerificationProblem(enum.Enum):
    ALTERED = "altered"
    MISSING = "missing"
    REORDERED = "reordered"
    TRUNCATED = "truncated"
    TREE = "tree"


@strawberry.type(description="The result of recomputing the hash chain over a range.")
class Verification:
    ok: bool = strawberry.field(description="Whether every record checked is sound.")
    checked: int = strawberry.field(description="How many records were checked.")
    head: LogAnchor = strawberry.field(description="The last sound position and its hash.")
    position: int | None = strawberry.field(description="The first bad position, if any.")
    problem: VerificationProblem | None
    detail: str
    summary: str = strawberry.field(description="One line, as `statements verify` prints it.")

    @classmethod
    def of(cls, result: StoreVerification) -> Verification:
        return cls(
            ok=result.ok,
            checked=result.checked,
            head=LogAnchor.of(result.head),
            position=result.position,
            problem=VerificationProblem(result.problem) if result.problem else None,
            detail=result.detail,
            summary=result.describe(),
        )


@strawberry.type(description="An event as recorded in the log, with its metadata.")
class RawEvent:
    position: int = strawberry.field(description="Its global position in the log.")
    stream_id: str
    version: int = strawberry.field(description="Its version within its stream.")
    event_id: strawberry.ID
    type: str
    schema_version: int
    data: JSON = strawberry.field(description="The stored data, as recorded.")
    metadata: JSON = strawberry.field(description="The stored metadata, as recorded.")
    actor: str | None = strawberry.field(description="Who caused it (a token's name).")
    correlation_id: str | None = strawberry.field(description="The request that caused it.")
    causation_id: str | None = strawberry.field(description="The event that caused it.")
    recorded_at: datetime
    hash: str = strawberry.field(description="Its chain hash, hex.")

    @classmethod
    def of(cls, record: RecordedEvent) -> RawEvent:
        metadata = record.metadata
        return cls(
            position=record.position,
            stream_id=record.stream_id,
            version=record.version,
            event_id=strawberry.ID(str(record.event_id)),
            type=record.type,
            schema_version=record.schema_version,
            data=JSON(record.data),
            metadata=JSON(metadata),
            actor=_text(metadata.get("actor")),
            correlation_id=_text(metadata.get("correlation_id")),
            causation_id=_text(metadata.get("causation_id")),
            recorded_at=record.recorded_at,
            hash=record.hash.hex(),
        )


@strawberry.type(description="A page of raw events (forward paging only).")
class RawEventConnection:
    edges: list[Edge[RawEvent]]
    nodes: list[RawEvent]
    page_info: PageInfo

    @classmethod
    def of(cls, page: EventPage) -> RawEventConnection:
        nodes = [RawEvent.of(record) for record in page.records]
        return cls(
            edges=Edge.each(page.cursors, nodes),
            nodes=nodes,
            page_info=PageInfo.of(page.cursors, page.has_next, False),
        )


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None
