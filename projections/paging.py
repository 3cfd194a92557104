"""Paging of the read models' lists: argument checks, opaque keyset cursors, and the
SQLAlchemy page query that counts and fetches one page in one statement.

A cursor is the (URL-safe base64 JSON) sort key and id of its row, never an offset, so pages
stay stable while statements are published. Input mistakes raise ``ValueError`` with a message
``argument: what is wrong``, the argument named as the GraphQL API names it.
"""

from __future__ import annotations

import base64
import binascii
import functools
import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Final

import sqlalchemy as sa
from sqlalchemy.engine import Row

from projections.rows import Cursors, Page

MAX_PAGE_SIZE: Final = 100
DEFAULT_PAGE_SIZE: Final = 20
#: Ids per call: under the bound-parameter limits of SQLite (32766) and asyncpg (32767), even
#: where a list is bound twice.
MAX_IDS: Final = 10_000
#: The message of a date range that ends before it starts (``from`` and ``to`` arguments).
FROM_AFTER_TO: Final = "from: must not be after to"
MAX_CURSOR_LENGTH: Final = 1000
_MIN_KEY: Final = -(2**63)
_MAX_KEY: Final = 2**63 - 1
#: Each list's cursors start with its tag, so a cursor of one list is refused by another.
PUBLISHED_TAG: Final = "p"
VIEWS_TAG: Final = "v"
RELEVANCE_TAG: Final = "r"
TOPICS_TAG: Final = "t"


# -- arguments -----------------------------------------------------------------------------


def checked_ids(values: Iterable[str], argument: str) -> list[str]:
    if isinstance(values, str | bytes):
        raise ValueError(f"{argument}: must be a list of strings, not a single string")
    unique = list(dict.fromkeys(values))
    if any(not isinstance(v, str) for v in unique):
        raise ValueError(f"{argument}: must contain only strings")
    if len(unique) > MAX_IDS:
        raise ValueError(f"{argument}: at most {MAX_IDS} values")
    return unique


def _count(value: int | None, argument: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{argument}: must be an integer")
    if not 0 <= value <= MAX_PAGE_SIZE:
        raise ValueError(f"{argument}: must be between 0 and {MAX_PAGE_SIZE}, got {value}")
    return value


def required_count(value: int, argument: str) -> int:
    checked = _count(value, argument)
    if checked is None:
        raise ValueError(f"{argument}: is required")
    return checked


# One encoder: json.dumps with options builds a new one per call, a third of a cursor's cost.
_CURSOR_JSON: Final = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)


def _encode_cursor(tag: str, key: Sequence[Any]) -> str:
    raw = _CURSOR_JSON.encode([tag, *key]).encode()
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def published_cursor(key: tuple[int, str]) -> str:
    return _encode_cursor(PUBLISHED_TAG, key)


def decode_cursor(
    cursor: str | None, argument: str, tag: str, types: Sequence[type]
) -> tuple[Any, ...] | None:
    if cursor is None:
        return None
    invalid = f"{argument}: not a valid cursor for this list"
    if not isinstance(cursor, str) or not cursor or len(cursor) > MAX_CURSOR_LENGTH:
        raise ValueError(invalid)
    try:
        raw = base64.b64decode(cursor + "=" * (-len(cursor) % 4), altchars=b"-_", validate=True)
        value = json.loads(raw.decode("utf-8"))
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise ValueError(invalid) from None
    if not isinstance(value, list) or len(value) != len(types) + 1 or value[0] != tag:
        raise ValueError(invalid)
    key = value[1:]
    for item, kind in zip(key, types, strict=True):
        if isinstance(item, bool):
            raise ValueError(invalid)
        if kind is float:
            if not isinstance(item, int | float) or not math.isfinite(item):
                raise ValueError(invalid)
        elif not isinstance(item, kind):
            raise ValueError(invalid)
        elif isinstance(item, int) and not _MIN_KEY <= item <= _MAX_KEY:
            raise ValueError(invalid)  # beyond a BIGINT column: no row could have it
    return tuple(float(k) if t is float else k for k, t in zip(key, types, strict=True))


@dataclass(frozen=True, slots=True)
class Paging:
    limit: int
    backward: bool
    after: tuple[Any, ...] | None
    before: tuple[Any, ...] | None


def paging_of(
    first: int | None,
    after: str | None,
    last: int | None,
    before: str | None,
    tag: str,
    types: Sequence[type],
) -> Paging:
    first = _count(first, "first")
    last = _count(last, "last")
    if first is not None and last is not None:
        raise ValueError("first: cannot be combined with last")
    after_key = decode_cursor(after, "after", tag, types)
    before_key = decode_cursor(before, "before", tag, types)
    if last is not None:
        return Paging(last, True, after_key, before_key)
    return Paging(DEFAULT_PAGE_SIZE if first is None else first, False, after_key, before_key)


# A sort order: (column name in the base query, descending?) pairs, the last being the id.
_Sort = Sequence[tuple[str, bool]]


def order_by(table: sa.FromClause, sort: _Sort, reverse: bool = False) -> list[Any]:
    clauses = []
    for name, descending in sort:
        column = table.c[name]
        clauses.append(column.desc() if descending != reverse else column.asc())
    return clauses


def _beyond(columns: Any, sort: _Sort, key: Sequence[Any], forward: bool) -> Any:
    """Rows strictly after ``key`` in ``sort`` (``forward``) or strictly before it.

    ``columns`` maps the sort's names to columns (a ``.c`` collection or a dict).
    """
    alternatives = []
    for index, (name, descending) in enumerate(sort):
        equal = [columns[n] == k for (n, _), k in zip(sort[:index], key[:index], strict=True)]
        column = columns[name]
        later = (column < key[index]) if descending == forward else (column > key[index])
        alternatives.append(sa.and_(*equal, later))
    return sa.or_(*alternatives)


def _count_if(condition: Any, label: str) -> Any:
    return sa.func.coalesce(sa.func.sum(sa.case((condition, 1), else_=0)), 0).label(label)


@dataclass(frozen=True, slots=True)
class _PageQuery:
    counts: sa.Subquery  # one row: x_total, x_head, x_tail
    page: sa.Subquery  # up to limit + 1 rows of the base, in fetch order
    sort: _Sort
    paging: Paging


def page_query(base: sa.CTE, sort: _Sort, paging: Paging, with_total: bool = True) -> _PageQuery:
    after = None if paging.after is None else _beyond(base.c, sort, paging.after, True)
    before = None if paging.before is None else _beyond(base.c, sort, paging.before, False)
    counts = sa.select(
        sa.func.count().label("x_total") if with_total else sa.literal(-1).label("x_total"),
        _count_if(sa.not_(after), "x_head") if after is not None else sa.literal(0).label("x_head"),
        _count_if(sa.not_(before), "x_tail")
        if before is not None
        else sa.literal(0).label("x_tail"),
    )
    if with_total or after is not None or before is not None:
        # An aggregate over the base: one row, whatever the base holds.
        counts = counts.select_from(base)
    # Else only constants: selected from the base they would make one row per base row (none
    # for an empty base), and the page, joined to them, would repeat or vanish.
    window = [c for c in (after, before) if c is not None]
    page = (
        sa.select(base)
        .where(*window)
        .order_by(*order_by(base, sort, reverse=paging.backward))
        .limit(paging.limit + 1)
    )
    return _PageQuery(counts.subquery("c"), page.subquery("p"), sort, paging)


def finish_page(
    rows: Sequence[Row[Any]],
    query: _PageQuery,
    tag: str,
    item: Any,
) -> Page[Any]:
    paging = query.paging
    first = rows[0]._mapping
    total = int(first["x_total"])
    head = int(first["x_head"])
    tail = int(first["x_tail"])
    present = [r for r in rows if r._mapping["p_id"] is not None]
    more = len(present) > paging.limit
    present = present[: paging.limit]
    if paging.backward:
        present.reverse()
    keys = [name for name, _ in query.sort]
    items = [item(r._mapping) for r in present]
    cursors = Cursors(
        functools.partial(_encode_cursor, tag),
        [[r._mapping[f"p_{k}"] for k in keys] for r in present],
    )
    if paging.backward:
        has_next, has_previous = tail > 0, more or head > 0
    else:
        has_next, has_previous = more or tail > 0, head > 0
    return Page(items, cursors, has_next, has_previous, total)


def month_key(month: tuple[int, int]) -> int:
    if (
        not isinstance(month, tuple)
        or len(month) != 2
        or any(isinstance(v, bool) or not isinstance(v, int) for v in month)
    ):
        raise ValueError("months: each month must be a (year, month) pair of integers")
    year, number = month
    if not 1 <= year <= 9999 or not 1 <= number <= 12:
        raise ValueError(f"months: {year}-{number} is not a valid month")
    return year * 100 + number
