"""The events of the statements domain: frozen, past-tense facts made of codec-friendly values.

Field types are limited to str, int, float, bool, None, date, tz-aware datetime, tuples and
nested frozen dataclasses (and ``X | None`` of those) so that a generic dataclass/JSON codec can
store them. Annotations are real types here (no postponed evaluation) for the same reason.
"""

from dataclasses import dataclass
from datetime import date, datetime
from typing import Final, TypeAlias


@dataclass(frozen=True, slots=True)
class MinisterRef:
    """The minister a statement is by: a stable slug id, a display name and an official title."""

    id: str
    name: str
    title: str


@dataclass(frozen=True, slots=True)
class TextChange:
    """A text field's value before and after a revision."""

    old: str
    new: str


@dataclass(frozen=True, slots=True)
class OptionalTextChange:
    """An optional text field's value before and after a revision (None means absent)."""

    old: str | None
    new: str | None


@dataclass(frozen=True, slots=True)
class DateChange:
    """A date field's value before and after a revision."""

    old: date
    new: date


@dataclass(frozen=True, slots=True)
class MinisterChange:
    """The minister before and after a revision."""

    old: MinisterRef
    new: MinisterRef


@dataclass(frozen=True, slots=True)
class ParagraphsChange:
    """The body paragraphs before and after a revision."""

    old: tuple[str, ...]
    new: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class StatementPublished:
    """A statement was published."""

    statement_id: str
    slug: str
    title: str
    kind: str
    minister: MinisterRef
    location: str | None
    occurred_on: date
    published_at: datetime
    paragraphs: tuple[str, ...]
    language: str
    source_url: str | None


@dataclass(frozen=True, slots=True)
class StatementRevised:
    """A published statement was corrected; each non-None field holds its old and new value."""

    statement_id: str
    reason: str
    title: TextChange | None = None
    kind: TextChange | None = None
    minister: MinisterChange | None = None
    location: OptionalTextChange | None = None
    occurred_on: DateChange | None = None
    paragraphs: ParagraphsChange | None = None


@dataclass(frozen=True, slots=True)
class StatementWithdrawn:
    """A statement was withdrawn; it takes no further commands."""

    statement_id: str
    reason: str


@dataclass(frozen=True, slots=True)
class Tagged:
    """A statement was tagged with a topic."""

    statement_id: str
    topic_slug: str
    topic_name: str


@dataclass(frozen=True, slots=True)
class Untagged:
    """A topic was removed from a statement."""

    statement_id: str
    topic_slug: str


@dataclass(frozen=True, slots=True)
class LinkedRelated:
    """A statement was linked to a related statement."""

    statement_id: str
    related_id: str


@dataclass(frozen=True, slots=True)
class UnlinkedRelated:
    """A related statement was unlinked from a statement."""

    statement_id: str
    related_id: str


@dataclass(frozen=True, slots=True)
class Viewed:
    """A statement was viewed once."""

    statement_id: str


@dataclass(frozen=True, slots=True)
class ViewsImported:
    """A number of views of a statement was imported from another source."""

    statement_id: str
    count: int
    source: str


@dataclass(frozen=True, slots=True)
class ViewAt:
    """One view in a batch: which statement was viewed, and when (UTC)."""

    statement_id: str
    at: datetime


@dataclass(frozen=True, slots=True)
class ViewsRecorded:
    """A batch of views, sent at once by a site or log shipper, was recorded.

    ``batch_id`` is the sender's name for the batch; each view counts on the UTC day of ``at``.
    """

    batch_id: str
    views: tuple[ViewAt, ...]


@dataclass(frozen=True, slots=True)
class SlugReserved:
    """A slug was reserved for a statement; the first reservation of a slug wins."""

    slug: str
    statement_id: str


@dataclass(frozen=True, slots=True)
class TopicRenamed:
    """A topic's display name was changed; its slug, which tagging finds it by, stays."""

    topic_slug: str
    name: str


@dataclass(frozen=True, slots=True)
class RelatedLinkRequested:
    """A statement asked to be linked to ``statement_id`` once that statement exists."""

    statement_id: str
    requested_by: str


StatementEvent: TypeAlias = (
    StatementPublished
    | StatementRevised
    | StatementWithdrawn
    | Tagged
    | Untagged
    | LinkedRelated
    | UnlinkedRelated
)
ViewEvent: TypeAlias = Viewed | ViewsImported | ViewsRecorded
Event: TypeAlias = StatementEvent | ViewEvent | SlugReserved | RelatedLinkRequested | TopicRenamed

STATEMENT_EVENT_TYPES: Final = (
    StatementPublished,
    StatementRevised,
    StatementWithdrawn,
    Tagged,
    Untagged,
    LinkedRelated,
    UnlinkedRelated,
)
VIEW_EVENT_TYPES: Final = (Viewed, ViewsImported, ViewsRecorded)

#: Every event class; the composition root registers them with the serializer by class name.
EVENT_TYPES: Final[tuple[type, ...]] = (
    *STATEMENT_EVENT_TYPES,
    *VIEW_EVENT_TYPES,
    SlugReserved,
    RelatedLinkRequested,
    TopicRenamed,
)

#: Value objects nested inside events, for codecs that want them registered too.
VALUE_TYPES: Final[tuple[type, ...]] = (
    MinisterRef,
    TextChange,
    OptionalTextChange,
    DateChange,
    MinisterChange,
    ParagraphsChange,
    ViewAt,
)
