"""The values the query layer returns and takes: read-only slotted dataclasses and enums."""

from __future__ import annotations

import enum
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, Final, Generic, TypeVar, dataclass_transform, overload

T = TypeVar("T")


@dataclass_transform(frozen_default=True)
def value(cls: type[T]) -> type[T]:
    """A slotted, hashable dataclass that type checkers hold read-only.

    Not ``frozen=True`` at run time: a frozen dataclass sets each field through
    ``object.__setattr__``, which made building a 17-field row 7x slower (1.9 against 0.25 us),
    and a list request builds hundreds of rows. Assignments are refused by mypy instead.
    """
    return dataclass(slots=True, unsafe_hash=True)(cls)


@value
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


@value
class MinisterRow:
    """A minister and the number of their live statements."""

    id: str
    name: str
    title: str
    statement_count: int


@value
class TopicRow:
    """A topic and the number of live statements that carry it."""

    slug: str
    name: str
    statement_count: int


@dataclass(frozen=True, slots=True)
class StatementPage:
    """A statement with what its page shows, read at once: its minister (None until the
    ministers read model has them), its topics in tagging order, and its live related
    statements, oldest link first, each with its minister."""

    statement: StatementRow
    minister: MinisterRow | None
    topics: tuple[TopicRow, ...]
    related: tuple[tuple[StatementRow, MinisterRow | None], ...]


@value
class MinisterTopicRow:
    """A topic of a minister's: the topic itself (its overall count), and how many of the
    minister's live statements carry it."""

    minister_id: str
    topic: TopicRow
    statement_count: int


@value
class ArchiveMonthRow:
    """A month of the archive (local publication month) and its live statement count."""

    year: int
    month: int
    count: int


@value
class DayCount:
    """Views of one statement on one UTC day."""

    day: date
    count: int


@value
class Page(Generic[T]):
    """One page of a connection: items with their keyset cursors, and where it stands."""

    items: list[T]
    cursors: Sequence[str]
    has_next: bool
    has_previous: bool
    total_count: int


class Cursors(Sequence[str]):
    """A page's cursors, each encoded from its sort key when first read.

    Most queries read none of them (no ``cursor``, no ``pageInfo``) or two; encoding one (JSON
    then base64) cost more than building its row.
    """

    __slots__ = ("_encode", "_keys", "_made")

    def __init__(self, encode: Callable[[Any], str], keys: Sequence[Any]) -> None:
        self._encode = encode
        self._keys = keys
        self._made: list[str | None] = [None] * len(keys)

    def __len__(self) -> int:
        return len(self._keys)

    @overload
    def __getitem__(self, index: int) -> str: ...

    @overload
    def __getitem__(self, index: slice) -> list[str]: ...

    def __getitem__(self, index: int | slice) -> str | list[str]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self._keys)))]
        made = self._made[index]
        if made is None:
            made = self._made[index] = self._encode(self._keys[index])
        return made

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Sequence) and not isinstance(other, str):
            return list(self) == list(other)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return repr(list(self))


#: The page of a parent that has no items (a read model answers every parent asked for).
EMPTY_PAGE: Final[Page[Any]] = Page([], [], False, False, 0)


class StatementOrder(enum.Enum):
    """How a list of statements is sorted; ties are broken by statement id."""

    PUBLISHED_DESC = "published_desc"
    PUBLISHED_ASC = "published_asc"
    MOST_VIEWED = "most_viewed"
    RELEVANCE = "relevance"  # needs StatementFilter.search


@value
class StatementFilter:
    """Conditions on a statement list; None means "any". Dates are local publication dates."""

    minister_id: str | None = None
    topic: str | None = None  # a topic slug
    from_date: date | None = None  # inclusive
    to_date: date | None = None  # inclusive
    kind: str | None = None
    search: str | None = None  # free text: every word must occur in the title or body
