"""Commands: what a user or a process asks the statements domain to do.

Every command carries its metadata (stored with the events it causes) and an optional expected
version: None lets the handler reload and retry on a conflict, a number makes a conflict an
error for the caller to resolve.
"""

from dataclasses import dataclass
from datetime import date, datetime
from typing import TypeAlias

from domain.events import MinisterRef, ViewAt


@dataclass(frozen=True, slots=True)
class CommandMetadata:
    """Who asked (actor) and why (correlation and causation ids), stored with every event."""

    actor: str
    correlation_id: str
    causation_id: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class PublishStatement:
    """Publish a new statement; ``slug`` defaults to one made from the title."""

    statement_id: str
    title: str
    kind: str
    minister: MinisterRef | None
    occurred_on: date
    published_at: datetime
    paragraphs: tuple[str, ...]
    location: str | None = None
    language: str = "en"
    source_url: str | None = None
    slug: str | None = None
    meta: CommandMetadata
    expected_version: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ReviseStatement:
    """Correct fields of a statement; None leaves a field alone, location "" removes it."""

    statement_id: str
    reason: str
    title: str | None = None
    kind: str | None = None
    minister: MinisterRef | None = None
    location: str | None = None
    occurred_on: date | None = None
    paragraphs: tuple[str, ...] | None = None
    meta: CommandMetadata
    expected_version: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class WithdrawStatement:
    """Withdraw a statement for a reason; it then takes no further commands."""

    statement_id: str
    reason: str
    meta: CommandMetadata
    expected_version: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class TagStatement:
    """Tag a statement with topics given by display name; topics it already has are skipped."""

    statement_id: str
    topics: tuple[str, ...]
    meta: CommandMetadata
    expected_version: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class UntagStatement:
    """Remove a topic, given by display name or slug, from a statement."""

    statement_id: str
    topic: str
    meta: CommandMetadata
    expected_version: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class LinkRelated:
    """Link a statement to an existing related statement."""

    statement_id: str
    related_id: str
    meta: CommandMetadata
    expected_version: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class UnlinkRelated:
    """Remove the link from a statement to a related statement."""

    statement_id: str
    related_id: str
    meta: CommandMetadata
    expected_version: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class RecordView:
    """Record one view of a statement."""

    statement_id: str
    meta: CommandMetadata
    expected_version: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class RecordViews:
    """Record a batch of views of any statements at once, named ``batch_id`` by its sender.

    ``received_at`` is when the batch arrived: no view may be later than that (plus a small
    clock skew). Retrying with the same ``batch_id`` and views records nothing twice.
    """

    batch_id: str
    views: tuple[ViewAt, ...]
    received_at: datetime
    meta: CommandMetadata


@dataclass(frozen=True, slots=True, kw_only=True)
class ImportViews:
    """Import a view count from a source; each statement takes one import per source."""

    statement_id: str
    count: int
    source: str
    meta: CommandMetadata
    expected_version: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class RequestRelatedLink:
    """Ask for ``requested_by`` to be linked to ``statement_id`` once that one exists."""

    statement_id: str
    requested_by: str
    meta: CommandMetadata
    expected_version: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class RenameTopic:
    """Give the topic whose slug is ``topic`` a new display name (the slug stays)."""

    topic: str
    name: str
    meta: CommandMetadata


StatementCommand: TypeAlias = (
    PublishStatement
    | ReviseStatement
    | WithdrawStatement
    | TagStatement
    | UntagStatement
    | LinkRelated
    | UnlinkRelated
    | RecordView
    | ImportViews
)
Command: TypeAlias = StatementCommand | RequestRelatedLink
