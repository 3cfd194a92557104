"""The values the query layer returns and takes: frozen, slotted dataclasses and enums."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, Final, Generic, TypeVar

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class StatementRow:
    """A statement as its page shows it; ``rank``/``snippet`` are set only on search results.

    ``published_at`` is tz-aware, in the offset the statement was published with. ``rank`` is
    "higher is better" on both databases (FTS5's bm25 negated, PostgreSQL's ts_rank) and only
    comparable within one query. ``snippet`` is the matching excerpt with the matched words
    between ``SNIPPET_START`` and ``SNIPPET_END``; the text is not HTML-escaped.
    """

    id: str
    slug: str
    title: str
    kind: str
    minister_id: str
    minister_name: str
    minister_title: str
    location: str | None
    occurred_on: date
    published_at: datetime
    paragraphs: tuple[str, ...]
    language: str
    source_url: str | None
    view_count: int
    version: int
    withdrawn: bool
    rank: float | None = None
    snippet: str | None = None


@dataclass(frozen=True, slots=True)
class MinisterRow:
    """A minister and the number of their live statements."""

    id: str
    name: str
    title: str
    statement_count: int


@dataclass(frozen=True, slots=True)
class TopicRow:
    """A topic and a number of live statements (overall, or one minister's, by context)."""

    slug: str
    name: str
    statement_count: int


@dataclass(frozen=True, slots=True)
class ArchiveMonthRow:
    """A month of the archive (local publication month) and its live statement count."""

    year: int
    month: int
    count: int


@dataclass(frozen=True, slots=True)
class DayCount:
    """Views of one statement on one UTC day."""

    day: date
    count: int


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    """One page of a connection: items with their keyset cursors, and where it stands."""

    items: list[T]
    cursors: list[str]
    has_next: bool
    has_previous: bool
    total_count: int


#: The page of a parent that has no items (a read model answers every parent asked for).
EMPTY_PAGE: Final[Page[Any]] = Page([], [], False, False, 0)


class StatementOrder(enum.Enum):
    """How a list of statements is sorted; ties are broken by statement id."""

    PUBLISHED_DESC = "published_desc"
    PUBLISHED_ASC = "published_asc"
    MOST_VIEWED = "most_viewed"
    RELEVANCE = "relevance"  # needs StatementFilter.search


@dataclass(frozen=True, slots=True)
class StatementFilter:
    """Conditions on a statement list; None means "any". Dates are local publication dates."""

    minister_id: str | None = None
    topic: str | None = None  # a topic slug
    from_date: date | None = None  # inclusive
    to_date: date | None = None  # inclusive
    kind: str | None = None
    search: str | None = None  # free text: every word must occur in the title or body
