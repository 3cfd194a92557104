"""Read-model rows as the query layer returns them: statement and minister rows decoded from
SQL result rows, the costly fields on first read."""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping, Sequence
from datetime import date, datetime, timedelta, timezone
from typing import Any, Final

import orjson

from eventstore.records import us_to_datetime
from projections.rows import MinisterRow, StatementRow
from projections.statement_sql import STATEMENT_WIDTH

# The Unix epoch in each publication offset seen: an instant in its offset is then one
# addition, not a UTC datetime and an astimezone().
_EPOCHS: dict[int, datetime] = {}


def _published_at(us: int, offset_seconds: int) -> datetime:
    epoch = _EPOCHS.get(offset_seconds)
    if epoch is None:
        zone = timezone(timedelta(seconds=offset_seconds))
        epoch = _EPOCHS[offset_seconds] = us_to_datetime(0).astimezone(zone)
    return epoch + timedelta(microseconds=us)


@functools.lru_cache(maxsize=1024)
def _paragraphs(text: str) -> tuple[str, ...]:
    # Decoding a statement's JSON paragraphs is half the cost of a row, and the same recent
    # statements are read over and over; the text itself is the key, so a revision is a miss.
    return tuple(json.loads(text))


def _as_date(value: Any) -> date:
    # SQLite keeps a Date as ISO text, PostgreSQL returns a date.
    return value if isinstance(value, date) else date.fromisoformat(value)


class _StoredStatementRow(StatementRow):
    """A StatementRow as read: its day, publication instant and paragraphs are decoded when
    first read. Most queries read none of them, and decoding them was half the cost of a row
    (a list of 20 statements with only their titles built every one)."""

    __slots__ = ("_occurred", "_paragraphs_json", "_published_offset", "_published_us")
    _occurred: Any
    _paragraphs_json: str
    _published_offset: int
    _published_us: int

    def __init__(self, r: Sequence[Any], at: int) -> None:
        # Set through an untyped alias: type checkers hold the row's fields read-only.
        me: Any = self
        (
            me.id,
            me.slug,
            me.title,
            me.kind,
            me.minister_id,
            me.minister_name,
            me.minister_title,
            me.location,
            me._occurred,
            me._published_us,
            me._published_offset,
            me._paragraphs_json,
            me.language,
            me.source_url,
            version,
            withdrawn,
            view_count,
        ) = r[at : at + STATEMENT_WIDTH]
        # Exact Python types, as the dataclass declares them on both databases.
        me.version = int(version)
        me.withdrawn = bool(withdrawn)
        me.view_count = int(view_count)
        me.rank = None
        me.snippet = None

    @property
    def occurred_on(self) -> date:
        return _as_date(self._occurred)

    @property
    def published_at(self) -> datetime:
        return _published_at(int(self._published_us), int(self._published_offset))

    @property
    def paragraphs(self) -> tuple[str, ...]:
        return _paragraphs(self._paragraphs_json)


def statement_tuple(r: Sequence[Any], at: int = 0) -> StatementRow:
    """A StatementRow from the ``STATEMENT_SELECT`` columns of a row, starting at ``at``."""
    return _StoredStatementRow(r, at)


STATEMENT_COLUMNS: Final = (
    "id",
    "slug",
    "title",
    "kind",
    "minister_id",
    "minister_name",
    "minister_title",
    "location",
    "occurred_on",
    "published_at_us",
    "published_offset",
    "paragraphs",
    "language",
    "source_url",
    "version",
    "withdrawn",
)


def statement_row(
    m: Mapping[Any, Any], *, rank: float | None = None, snippet: str | None = None
) -> StatementRow:
    return StatementRow(
        id=str(m["id"]),
        slug=str(m["slug"]),
        title=str(m["title"]),
        kind=str(m["kind"]),
        minister_id=str(m["minister_id"]),
        minister_name=str(m["minister_name"]),
        minister_title=str(m["minister_title"]),
        location=m["location"],
        occurred_on=m["occurred_on"],
        published_at=_published_at(int(m["published_at_us"]), int(m["published_offset"])),
        paragraphs=_paragraphs(m["paragraphs"]),
        language=str(m["language"]),
        source_url=m["source_url"],
        view_count=int(m["view_count"]),
        version=int(m["version"]),
        withdrawn=bool(m["withdrawn"]),
        rank=rank,
        snippet=snippet,
    )


def json_array(value: Any) -> list[Any]:
    """A JSON array the server built (asyncpg hands json over as text); [] for NULL."""
    if value is None:
        return []
    found: list[Any] = orjson.loads(value)
    return found


def minister_tuple(r: Sequence[Any]) -> MinisterRow:
    return MinisterRow(r[0], r[1], r[2], int(r[3]))
