"""The query layer over the read models: every method issues exactly one SQL statement.

The GraphQL layer counts statements (a query of depth d may issue at most d + 1), so every
method is batch-shaped: it takes lists of ids and answers for all of them at once, nested
connections included (one statement for all parents: per parent, an index range scan that
stops after the page). A method called with an empty list answers without touching the
database.

The hot methods (lookups by id, a statement's topics, relations and views, nested pages, the
unfiltered list) run SQL text written once per dialect on the engine's
:func:`~eventstore.reader.reader_for` reader, with one parameter per id list; statement
construction and a pool checkout through SQLAlchemy cost more than those queries themselves.
The others (filters, search, most viewed, topics, views per day) are SQLAlchemy Core.

Pagination is keyset-based: a cursor is the opaque (URL-safe base64 JSON) sort key and id of its
row, never an offset, so pages stay stable while statements are published. ``total_count`` and
the "is there more before/after" flags are computed inside the same statement; the total, which
reads every matching index entry where the page reads ``first + 1``, can be left out with
``with_total=False`` (``total_count`` is then -1).

Lists (``statements``, nested connections, ``topics``, ``ministers``, ``archive``,
``most_viewed``, ``related_of``) leave withdrawn statements out; ``statements_by_ids`` and
``statements_by_slugs`` return them with ``withdrawn=True`` so a page can say so.

Input mistakes raise ``ValueError`` with a message ``argument: what is wrong``, the argument
named as the GraphQL API names it (``from``, ``orderBy``, ``first``); the API turns it into
BAD_USER_INPUT. Only bound parameters reach SQL, and search text is reduced to its
words, each quoted, so any user text is a valid full-text query.

Search relevance is FTS5's ``bm25()`` on both databases: on PostgreSQL the same formula is
computed from the same inputs (each term's occurrences, counted by ``ts_rank_cd``, the
statement's length in words, the number of statements and words from ``search_stats``, and
each term's number of matching statements), so both rank a result list alike.
"""

from __future__ import annotations

import base64
import binascii
import functools
import json
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from typing import Any, Final

import orjson
import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import DOUBLE_PRECISION, TSQUERY
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.sql.elements import ColumnElement

from eventstore.projection import checkpoints
from eventstore.read_cache import models_of, table_owners
from eventstore.reader import Reader, reader_for
from eventstore.records import us_to_datetime
from projections import archive, ministers, search, statements, topics, views
from projections.rows import (
    ArchiveMonthRow,
    Cursors,
    DayCount,
    MinisterRow,
    MinisterTopicRow,
    Page,
    StatementFilter,
    StatementOrder,
    StatementPage,
    StatementRow,
    TopicRow,
)
from projections.search_text import (
    MAX_SEARCH_LENGTH,
    MAX_SEARCH_WORDS,
    TS_CONFIG,
    SearchTerms,
    fts5_query,
    search_terms,
    term_operands,
)

__all__ = [
    "DEFAULT_PAGE_SIZE",
    "FROM_AFTER_TO",
    "MAX_IDS",
    "MAX_PAGE_SIZE",
    "MAX_SEARCH_LENGTH",
    "MAX_SEARCH_WORDS",
    "SNIPPET_END",
    "SNIPPET_START",
    "ReadModels",
    "SearchTerms",
    "StatementFilter",
    "StatementOrder",
    "fts5_query",
    "search_terms",
]

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
SNIPPET_START: Final = "<mark>"
SNIPPET_END: Final = "</mark>"
_SNIPPET_ELLIPSIS: Final = "…"
_SNIPPET_TOKENS: Final = 32  # FTS5 allows at most 64
_HEADLINE_OPTIONS: Final = (
    f"StartSel={SNIPPET_START}, StopSel={SNIPPET_END}, MaxWords=35, MinWords=15, "
    f'MaxFragments=2, FragmentDelimiter=" {_SNIPPET_ELLIPSIS} "'
)
#: bm25 weights of the FTS5 columns (statement_id, title, body): a title hit counts tenfold.
_BM25_WEIGHTS: Final = (0.0, 10.0, 1.0)
#: FTS5's bm25 parameters (fixed in its source).
_BM25_K1: Final = "1.2"
_BM25_B: Final = "0.75"
# ts_rank_cd sums the weights of a term's occurrences, {D, C, B, A} with the title under A and the
# body under B; a weight may not exceed 1, so these are the bm25 weights over _TF_SCALE.
_TF_SCALE: Final = max(_BM25_WEIGHTS)
_TF_WEIGHTS: Final = (
    f"'{{0,0,{_BM25_WEIGHTS[2] / _TF_SCALE},{_BM25_WEIGHTS[1] / _TF_SCALE}}}'::real[]"
)

_PUBLISHED_TAG: Final = "p"
_NO_FILTER: Final = StatementFilter()
_PUBLISHED_ORDERS: Final = (StatementOrder.PUBLISHED_DESC, StatementOrder.PUBLISHED_ASC)
_VIEWS_TAG: Final = "v"
_RELEVANCE_TAG: Final = "r"
_TOPICS_TAG: Final = "t"


def _checkpoint_of(projection: str) -> sa.Select[Any]:
    return sa.select(checkpoints.c.position).where(checkpoints.c.name == projection)


def _live_names(owned: Iterable[str]) -> dict[str, str]:
    return {name: name for name in owned}


# -- arguments -----------------------------------------------------------------------------


def _ids(values: Iterable[str], argument: str) -> list[str]:
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


def _required_count(value: int, argument: str) -> int:
    checked = _count(value, argument)
    if checked is None:
        raise ValueError(f"{argument}: is required")
    return checked


# One encoder: json.dumps with options builds a new one per call, a third of a cursor's cost.
_CURSOR_JSON: Final = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)


def _encode_cursor(tag: str, key: Sequence[Any]) -> str:
    raw = _CURSOR_JSON.encode([tag, *key]).encode()
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def _published_cursor(key: tuple[int, str]) -> str:
    return _encode_cursor(_PUBLISHED_TAG, key)


def _decode_cursor(
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
class _Paging:
    limit: int
    backward: bool
    after: tuple[Any, ...] | None
    before: tuple[Any, ...] | None


def _paging(
    first: int | None,
    after: str | None,
    last: int | None,
    before: str | None,
    tag: str,
    types: Sequence[type],
) -> _Paging:
    first = _count(first, "first")
    last = _count(last, "last")
    if first is not None and last is not None:
        raise ValueError("first: cannot be combined with last")
    after_key = _decode_cursor(after, "after", tag, types)
    before_key = _decode_cursor(before, "before", tag, types)
    if last is not None:
        return _Paging(last, True, after_key, before_key)
    return _Paging(DEFAULT_PAGE_SIZE if first is None else first, False, after_key, before_key)


# A sort order: (column name in the base query, descending?) pairs, the last being the id.
_Sort = Sequence[tuple[str, bool]]


def _order_by(table: sa.FromClause, sort: _Sort, reverse: bool = False) -> list[Any]:
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
    paging: _Paging


def _page_query(base: sa.CTE, sort: _Sort, paging: _Paging, with_total: bool = True) -> _PageQuery:
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
        .order_by(*_order_by(base, sort, reverse=paging.backward))
        .limit(paging.limit + 1)
    )
    return _PageQuery(counts.subquery("c"), page.subquery("p"), sort, paging)


def _finish_page(
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


def _month_key(month: tuple[int, int]) -> int:
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


# -- the fast path: SQL text written once per dialect, run by an eventstore Reader -----------
#
# Building, compiling and caching a SQLAlchemy statement and checking a pooled connection in
# and out cost more than the hot queries themselves (a primary-key lookup). The hot methods
# therefore run SQL text built once per dialect through :func:`eventstore.reader.reader_for`;
# an id list is ONE parameter (a JSON array on SQLite, a text[] on PostgreSQL), so the text
# does not depend on the number of ids. Parameters are written ``?`` and numbered for asyncpg.

_STATEMENT_SELECT: Final = (
    "s.id, s.slug, s.title, s.kind, s.minister_id, s.minister_name, s.minister_title, "
    "s.location, s.occurred_on, s.published_at_us, s.published_offset, s.paragraphs, "
    "s.language, s.source_url, s.version, s.withdrawn, coalesce(v.view_count, 0)"
)
_STATEMENT_WIDTH: Final = 17
#: SQLite refuses a compound SELECT of more than 500 terms: nested pages put at most this many
#: parents in one compound and nest the compounds.
_COMPOUND_TERMS: Final = 400

_QMARK: Final = re.compile(r"\?")


def _numbered(sql: str) -> str:
    """``?`` placeholders as asyncpg's ``$1, $2, ...`` (the SQL here has no ``?`` in literals)."""
    counter = iter(range(1, 10_000))
    return _QMARK.sub(lambda _m: f"${next(counter)}", sql)


@dataclass(frozen=True, slots=True)
class _NestedSource:
    """Where a kind of nested page reads (parent, key, id) triples of live statements, newest
    first: a table with an index (parent, withdrawn, key DESC, id DESC). A page per pair of
    parents (a minister's statements on a topic) names a second parent column."""

    table: str
    parent: str
    key: str
    id: str
    array_type: str  # of the parents on PostgreSQL
    parent2: str = ""  # the second parent column (text), or "" for one parent
    withdrawn: str = "withdrawn"

    @property
    def width(self) -> int:
        """The number of parameters that name one parent."""
        return 2 if self.parent2 else 1


_MINISTER_PAGES: Final = _NestedSource("statements", "minister_id", "published_at_us", "id", "text")
_MONTH_PAGES: Final = _NestedSource("statements", "published_ym", "published_at_us", "id", "int")
_TOPIC_PAGES: Final = _NestedSource(
    "statement_topics", "topic_slug", "published_at_us", "statement_id", "text"
)
# The topic's index range, each entry's statement looked up by its key for the minister: a
# page reads the topic's statements until it has found enough of the minister's.
_MINISTER_TOPIC_PAGES: Final = _NestedSource(
    "statement_topics mt JOIN statements ms ON ms.id = mt.statement_id",
    "ms.minister_id",
    "mt.published_at_us",
    "mt.statement_id",
    "text",
    parent2="mt.topic_slug",
    withdrawn="mt.withdrawn",
)


def _page_sql(where: str, tail: str = "") -> str:
    """A statement page in one PostgreSQL statement (:meth:`ReadModels.statement_page`): the
    statement's columns, then its topics, its minister and its related statements (each with
    its minister) as JSON arrays, aggregated by the server as PostGraphile does, instead of
    four more round trips."""
    columns = _STATEMENT_SELECT.replace("s.", "rs.").replace("v.", "rv.")
    topics = (
        "SELECT json_agg(json_build_array(st.topic_slug, coalesce(t.name, st.topic_name), "
        "coalesce(t.statement_count, 0)) ORDER BY st.position, st.topic_slug) "
        "FROM statement_topics st LEFT JOIN topics t ON t.slug = st.topic_slug "
        "WHERE st.statement_id = s.id"
    )
    minister = (
        "SELECT json_build_array(m.id, m.name, m.title, m.statement_count) "
        "FROM ministers m WHERE m.id = s.minister_id"
    )
    related = (
        f"SELECT json_agg(json_build_array({columns}, rm.id, rm.name, rm.title, "
        "rm.statement_count) ORDER BY r.pos, r.rid) FROM ("
        "SELECT l.rid, min(l.pos) AS pos FROM ("
        "SELECT related_id AS rid, position AS pos FROM statement_links "
        "WHERE statement_id = s.id "
        "UNION ALL SELECT statement_id, position FROM statement_links WHERE related_id = s.id"
        ") l GROUP BY l.rid) r "
        "JOIN statements rs ON rs.id = r.rid AND rs.withdrawn = false "
        "LEFT JOIN view_totals rv ON rv.statement_id = rs.id "
        "LEFT JOIN ministers rm ON rm.id = rs.minister_id"
    )
    return (
        f"SELECT {_STATEMENT_SELECT}, ({topics}), ({minister}), ({related}) "
        f"FROM statements s LEFT JOIN view_totals v ON v.statement_id = s.id "
        f"WHERE {where} {tail}"
    ).strip()


#: Which read model (projection) owns each table the hot queries read.
_TABLE_OWNERS: Final = table_owners(
    (
        (statements.StatementsProjection.name, statements.TABLES),
        (views.ViewsProjection.name, views.TABLES),
        (archive.ArchiveProjection.name, archive.TABLES),
        (topics.TopicsProjection.name, topics.TABLES),
        (ministers.MinistersProjection.name, ministers.TABLES),
        (search.SearchProjection.name, search.TABLES),
    )
)


@functools.lru_cache(maxsize=1024)
def _models_of(sql: str) -> frozenset[str]:
    """The read models a statement reads: a move of any of them drops its cached rows."""
    return models_of(sql, _TABLE_OWNERS)


class _Sql:
    """The hot queries' SQL for one dialect."""

    def __init__(self, postgres: bool) -> None:
        self.postgres = postgres
        ids = self.in_ids
        statement_from = "statements s LEFT JOIN view_totals v ON v.statement_id = s.id"
        self.statements_by_ids = self.text(
            f"SELECT {_STATEMENT_SELECT} FROM {statement_from} WHERE s.id {ids}"
        )
        # Should a slug ever repeat, the first statement published with it wins, as its
        # reservation did: it comes last, so it is the one left in the dict.
        self.statements_by_slugs = self.text(
            f"SELECT {_STATEMENT_SELECT} FROM {statement_from} WHERE s.slug {ids} "
            "ORDER BY s.published_at_us DESC, s.id DESC"
        )
        # Rows come back in no particular order: the caller groups them by statement and
        # sorts each statement's few topics (on SQLite the ORDER BY sorted every joined row in
        # a temporary B-tree, a third of the query).
        self.topics_of = self.text(
            "SELECT st.statement_id, st.position, st.topic_slug, coalesce(t.name, st.topic_name), "
            "coalesce(t.statement_count, 0) "
            "FROM statement_topics st LEFT JOIN topics t ON t.slug = st.topic_slug "
            f"WHERE st.statement_id {ids}"
        )
        # Each (statement, related) pair once, in either direction, with its first link's
        # position: A linked to B makes each related to the other.
        first_links = (
            "SELECT l.sid, l.rid, min(l.pos) AS pos FROM ("
            "SELECT statement_id AS sid, related_id AS rid, position AS pos "
            f"FROM statement_links WHERE statement_id {ids} "
            "UNION ALL SELECT related_id, statement_id, position "
            f"FROM statement_links WHERE related_id {ids}"
            ") l GROUP BY l.sid, l.rid"
        )
        # CROSS JOIN: SQLite must loop over the few links, not over every live statement.
        links = f"FROM ({first_links}) r CROSS JOIN statements s"
        live = "WHERE s.id = r.rid AND s.withdrawn = false ORDER BY r.sid, r.pos, r.rid"
        self.related_of = self.text(f"SELECT r.sid, r.rid, r.pos {links} {live}")
        # With the related statements' rows: a statement page's related list in one
        # statement instead of ids and then the rows.
        self.related_statements_of = self.text(
            f"SELECT r.sid, {_STATEMENT_SELECT} {links} "
            f"LEFT JOIN view_totals v ON v.statement_id = s.id {live}"
        )
        self.withdrawn = self.text(f"SELECT id, withdrawn FROM statements WHERE id {ids}")
        self.view_counts = self.text(
            f"SELECT statement_id, view_count FROM view_totals WHERE statement_id {ids}"
        )
        if postgres:
            self.page_by_id = _numbered(_page_sql("s.id = ?"))
            # The first statement published with a slug, as statements_by_slugs picks it.
            self.page_by_slug = _numbered(
                _page_sql("s.slug = ?", "ORDER BY s.published_at_us, s.id LIMIT 1")
            )
        self.ministers_by_ids = self.text(
            f"SELECT id, name, title, statement_count FROM ministers WHERE id {ids}"
        )
        self.ministers = self.text(
            "SELECT id, name, title, statement_count FROM ministers WHERE statement_count > 0 "
            "ORDER BY statement_count DESC, name, id"
        )
        self.topics_by_slugs = self.text(
            f"SELECT slug, name, statement_count FROM topics WHERE slug {ids}"
        )
        self.minister_topics = self.text(
            "SELECT r.minister_id, r.topic_slug, r.statement_count, "
            "coalesce(t.name, r.topic_slug), coalesce(t.statement_count, 0) "
            "FROM (SELECT minister_id, topic_slug, statement_count, row_number() OVER ("
            "PARTITION BY minister_id ORDER BY statement_count DESC, topic_slug) AS rn "
            f"FROM minister_topics WHERE minister_id {ids} AND statement_count > 0) r "
            "LEFT JOIN topics t ON t.slug = r.topic_slug WHERE r.rn <= ? "
            "ORDER BY r.minister_id, r.rn"
        )
        self.archive = self.text(
            "SELECT year, month, statement_count FROM archive_months WHERE statement_count > 0 "
            "ORDER BY year DESC, month DESC"
        )
        self._pages: dict[tuple[Any, ...], str] = {}

    @property
    def in_ids(self) -> str:
        # One parameter whatever the number of ids: one SQL text, one prepared statement.
        return "= ANY(?::text[])" if self.postgres else "IN (SELECT value FROM json_each(?))"

    def ids(self, values: Sequence[Any]) -> Any:
        # orjson: json.dumps with options builds a new encoder per call, on every hot query.
        return list(values) if self.postgres else orjson.dumps(list(values)).decode()

    def text(self, sql: str) -> str:
        return _numbered(sql) if self.postgres else sql

    def published_page(self, descending: bool, paging: _Paging, count: bool) -> str:
        """A page of live statements in publication order; parameters: see the caller."""
        key = (
            "published",
            descending,
            paging.backward,
            paging.after is not None,
            paging.before is not None,
            count,
        )
        sql = self._pages.get(key)
        if sql is None:
            sql = self._pages[key] = self.text(self._published_page(descending, paging, count))
        return sql

    def _published_page(self, descending: bool, paging: _Paging, count: bool) -> str:
        # Row values compare (published_at_us, id) as the index orders them: each condition
        # is one index range, and the flags are EXISTS probes of one entry.
        later, at_or_earlier = ("<", ">=") if descending else (">", "<=")
        earlier, at_or_later = (">", "<=") if descending else ("<", ">=")
        live = "FROM statements WHERE withdrawn = false"
        row = "(published_at_us, id)"
        window = []
        head = tail = "0"
        source = _NestedSource("statements", "", "published_at_us", "id", "")
        if paging.after is not None:
            window.append(f"{row} {later} (?, ?)")
            order = _probe_order(source, at_or_earlier)
            head = f"EXISTS (SELECT 1 {live} AND {row} {at_or_earlier} (?, ?) {order})"
        if paging.before is not None:
            window.append(f"{row} {earlier} (?, ?)")
            order = _probe_order(source, at_or_later)
            tail = f"EXISTS (SELECT 1 {live} AND {row} {at_or_later} (?, ?) {order})"
        fetch_desc = descending != paging.backward
        direction = "DESC" if fetch_desc else "ASC"
        total = f"(SELECT count(*) {live})" if count else "-1"
        where = "".join(f" AND {c}" for c in window)
        return (
            f"SELECT c.x_total, c.x_head, c.x_tail, p.k0, p.id, {_STATEMENT_SELECT} "
            f"FROM (SELECT {total} AS x_total, {head} AS x_head, {tail} AS x_tail) c "
            f"LEFT JOIN (SELECT published_at_us AS k0, id {live}{where} "
            f"ORDER BY published_at_us {direction}, id {direction} LIMIT ?) p ON true "
            "LEFT JOIN statements s ON s.id = p.id "
            "LEFT JOIN view_totals v ON v.statement_id = p.id"
            # SQLite would sort the wide joined rows in a temporary B-tree: the caller sorts
            # the page by (key, id) instead (BINARY collation: Python's str order).
            + (f" ORDER BY p.k0 {direction}, p.id {direction}" if self.postgres else "")
        )

    def nested(self, source: _NestedSource, parents: int, after: bool, count: bool) -> str:
        """Pages of live statements for ``parents`` parents, newest first.

        Parameters: SQLite ``?1`` the page size + 1, ``?2, ?3`` the cursor (always bound),
        ``?4...`` the parents (``width`` parameters each); PostgreSQL ``$1`` the parents (one
        array per parent column), then the size + 1 and the cursor. Rows (ordered on
        PostgreSQL only): the parent's index (from 0), total, head flag, key, id (NULL for a
        parent without rows in the page), the statement.
        """
        key = ("nested", source, parents if not self.postgres else 0, after, count)
        sql = self._pages.get(key)
        if sql is None:
            if self.postgres:
                sql = self._nested_lateral(source, after, count)
            else:
                sql = self._nested_compound(source, parents, after, count)
            self._pages[key] = sql
        return sql

    @staticmethod
    def _range(source: _NestedSource, parent: Sequence[str], cursor: str | None, op: str) -> str:
        t = source
        condition = f"FROM {t.table} WHERE {t.parent} = {parent[0]}"
        if t.parent2:
            condition += f" AND {t.parent2} = {parent[1]}"
        condition += f" AND {t.withdrawn} = false"
        if cursor is not None:
            condition += f" AND ({t.key}, {t.id}) {op} {cursor}"
        return condition

    def _nested_compound(
        self, source: _NestedSource, parents: int, after: bool, count: bool
    ) -> str:
        # SQLite has no LATERAL: one term per parent, each an index range scan with a LIMIT.
        cursor = "(?2, ?3)" if after else None
        width = source.width
        terms = []
        for i in range(parents):
            parent = [f"?{i * width + 4 + j}" for j in range(width)]
            total = f"(SELECT count(*) {self._range(source, parent, None, '')})" if count else "-1"
            probe = self._range(source, parent, cursor, ">=")
            head = f"EXISTS (SELECT 1 {probe} {_probe_order(source, '>=')})" if after else "0"
            page = self._range(source, parent, cursor, "<")
            terms.append(
                f"SELECT {i} AS b, {total} AS x_total, {head} AS x_head, p.k0, p.id "
                f"FROM (SELECT 1) LEFT JOIN (SELECT {source.key} AS k0, {source.id} AS id "
                f"{page} ORDER BY {source.key} DESC, {source.id} DESC LIMIT ?1) p ON true"
            )
        chunks = [
            " UNION ALL ".join(terms[start : start + _COMPOUND_TERMS])
            for start in range(0, len(terms), _COMPOUND_TERMS)
        ]
        union = " UNION ALL ".join(f"SELECT * FROM ({chunk})" for chunk in chunks)
        # No ORDER BY: SQLite would sort the wide joined rows of every term; the caller orders
        # the few (parent, key, id) triples instead (BINARY collation: Python's str order).
        return (
            f"WITH r(b, x_total, x_head, k0, id) AS ({union}) "
            f"SELECT r.b, r.x_total, r.x_head, r.k0, r.id, {_STATEMENT_SELECT} FROM r "
            "LEFT JOIN statements s ON s.id = r.id "
            "LEFT JOIN view_totals v ON v.statement_id = r.id"
        )

    def _nested_lateral(self, source: _NestedSource, after: bool, count: bool) -> str:
        # The flags in a LATERAL of their own, fenced by OFFSET 0: pulled up into the select
        # list, they would run once per row instead of once per parent.
        width = source.width
        columns = ["parent", "parent2"][:width]
        parent = [f"q.{column}" for column in columns]
        size, cursor_at = f"${width + 1}", width + 2
        cursor = f"(${cursor_at}, ${cursor_at + 1})" if after else None
        total = f"(SELECT count(*) {self._range(source, parent, None, '')})" if count else "-1"
        probe = self._range(source, parent, cursor, ">=")
        head = f"EXISTS (SELECT 1 {probe} {_probe_order(source, '>=')})" if after else "false"
        page = self._range(source, parent, cursor, "<")
        arrays = ", ".join(
            f"${i + 1}::{source.array_type if i == 0 else 'text'}[]" for i in range(width)
        )
        return (
            f"SELECT q.ord - 1, c.x_total, c.x_head, p.k0, p.id, {_STATEMENT_SELECT} "
            f"FROM unnest({arrays}) WITH ORDINALITY AS q({', '.join(columns)}, ord) "
            f"CROSS JOIN LATERAL (SELECT {total} AS x_total, {head} AS x_head OFFSET 0) c "
            f"LEFT JOIN LATERAL (SELECT {source.key} AS k0, {source.id} AS id {page} "
            f"ORDER BY {source.key} DESC, {source.id} DESC LIMIT {size}) p ON true "
            "LEFT JOIN statements s ON s.id = p.id "
            "LEFT JOIN view_totals v ON v.statement_id = p.id "
            # Ordered here: ids compare in the database's collation, not as Python's str.
            "ORDER BY q.ord, p.k0 DESC, p.id DESC"
        )


def _newest_first(row: Sequence[Any]) -> tuple[Any, Any]:
    """The (key, id) of a page's row (nested or published): the order of its pages."""
    return row[3], row[4]


def _probe_order(source: _NestedSource, op: str) -> str:
    """ORDER BY ... LIMIT 1 for an EXISTS probe of a key range: it makes the plan the index
    range scan that stops at the first entry, never a scan of the table (PostgreSQL may
    otherwise guess that a sequential scan finds a row soon)."""
    direction = "ASC" if op.startswith(">") else "DESC"
    return f"ORDER BY {source.key} {direction}, {source.id} {direction} LIMIT 1"


_SQL_BY_DIALECT: dict[bool, _Sql] = {}


def _sql_for(postgres: bool) -> _Sql:
    sql = _SQL_BY_DIALECT.get(postgres)
    if sql is None:
        sql = _SQL_BY_DIALECT[postgres] = _Sql(postgres)
    return sql


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
        ) = r[at : at + _STATEMENT_WIDTH]
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


def _statement_tuple(r: Sequence[Any], at: int = 0) -> StatementRow:
    """A StatementRow from the ``_STATEMENT_SELECT`` columns of a row, starting at ``at``."""
    return _StoredStatementRow(r, at)


class ReadModels:
    """Batch-shaped queries over the read models; each method issues exactly one statement."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._postgres = engine.dialect.name == "postgresql"
        self._sql = _sql_for(self._postgres)
        self._reader_: Reader | None = None
        st = statements.statement_tables(_live_names(statements.TABLES))
        self._statements = st.statements
        self._statement_topics = st.topics
        self._links = st.links
        self._months = archive.archive_tables(_live_names(archive.TABLES)).months
        self._topics = topics.topic_tables(_live_names(topics.TABLES)).topics
        mt = ministers.minister_tables(_live_names(ministers.TABLES))
        self._ministers = mt.ministers
        self._minister_topics = mt.topics
        vt = views.view_tables(_live_names(views.TABLES))
        self._view_totals = vt.totals
        self._view_days = vt.days
        sr = search.search_tables(_live_names(search.TABLES), engine.dialect.name)
        self._search_docs = sr.docs
        self._search_index = sr.index
        self._search_stats = sr.stats

    async def _rows(self, statement: sa.Executable) -> Sequence[Row[Any]]:
        async with self._engine.connect() as conn:
            return (await conn.execute(statement)).all()

    @property
    def reader(self) -> Reader:
        """The reader the hot queries run on (the engine's, see :func:`reader_for`)."""
        if self._reader_ is None:
            self._reader_ = reader_for(self._engine)
        return self._reader_

    async def _fetch(self, sql: str, *params: Any) -> list[tuple[Any, ...]]:
        return await self.reader.fetch(sql, params, models=_models_of(sql))

    # -- statement rows --------------------------------------------------------------------

    def _statement_columns(self) -> list[Any]:
        s, v = self._statements, self._view_totals
        return [
            *(s.c[name] for name in _STATEMENT_COLUMNS),
            sa.func.coalesce(v.c.view_count, 0).label("view_count"),
        ]

    def _with_views(self, joined: sa.FromClause) -> sa.FromClause:
        s, v = self._statements, self._view_totals
        return joined.outerjoin(v, v.c.statement_id == s.c.id)

    def _live(self) -> ColumnElement[bool]:
        return self._statements.c.withdrawn == sa.false()

    async def statements_by_ids(self, ids: Iterable[str]) -> dict[str, StatementRow]:
        """Statements by id, withdrawn ones included; unknown ids are absent."""
        wanted = _ids(ids, "ids")
        if not wanted:
            return {}
        rows = await self._fetch(self._sql.statements_by_ids, self._sql.ids(wanted))
        return {r[0]: _statement_tuple(r) for r in rows}

    async def withdrawn(self, ids: Iterable[str]) -> dict[str, bool]:
        """Whether each statement was withdrawn; unknown ids are absent."""
        wanted = _ids(ids, "ids")
        if not wanted:
            return {}
        rows = await self._fetch(self._sql.withdrawn, self._sql.ids(wanted))
        return {str(r[0]): bool(r[1]) for r in rows}

    async def statements_by_slugs(self, slugs: Iterable[str]) -> dict[str, StatementRow]:
        """Statements by slug, withdrawn ones included; unknown slugs are absent."""
        wanted = _ids(slugs, "slugs")
        if not wanted:
            return {}
        rows = await self._fetch(self._sql.statements_by_slugs, self._sql.ids(wanted))
        return {r[1]: _statement_tuple(r) for r in rows}

    @property
    def pages_in_one_statement(self) -> bool:
        """Whether :meth:`statement_page` is there: on PostgreSQL, where every statement is a
        round trip. SQLite reads in-process, where the separate statements cost less."""
        return self._postgres

    async def statement_page(
        self, statement_id: str | None = None, slug: str | None = None
    ) -> StatementPage | None:
        """A statement (by id, or by slug as :meth:`statements_by_slugs`), withdrawn or not,
        with its minister, topics and related statements, in one statement; PostgreSQL only."""
        if not self._postgres:
            raise NotImplementedError("statement_page: PostgreSQL only")
        if (statement_id is None) == (slug is None):
            raise ValueError("statement_page: name the statement by id or by slug")
        if statement_id is not None:
            rows = await self._fetch(self._sql.page_by_id, statement_id)
        else:
            rows = await self._fetch(self._sql.page_by_slug, slug)
        if not rows:
            return None
        row = rows[0]
        at = _STATEMENT_WIDTH
        topics_json, minister_json, related_json = row[at], row[at + 1], row[at + 2]
        topics = tuple(
            TopicRow(slug_, name, int(count)) for slug_, name, count in _json(topics_json)
        )
        minister = _minister_tuple(_json(minister_json)) if minister_json is not None else None
        related = tuple(
            (
                _statement_tuple(r),
                _minister_tuple(r[_STATEMENT_WIDTH:]) if r[_STATEMENT_WIDTH] is not None else None,
            )
            for r in _json(related_json)
        )
        return StatementPage(_statement_tuple(row), minister, topics, related)

    async def topics_of(self, statement_ids: Iterable[str]) -> dict[str, list[TopicRow]]:
        """Each statement's topics in tagging order, with each topic's live statement count."""
        wanted = _ids(statement_ids, "statement_ids")
        if not wanted:
            return {}
        rows = await self._fetch(self._sql.topics_of, self._sql.ids(wanted))
        tagged: dict[str, list[tuple[int, str, str, int]]] = {i: [] for i in wanted}
        for statement_id, position, slug, name, count in rows:
            tagged[statement_id].append((position, slug, name, count))
        result: dict[str, list[TopicRow]] = {}
        for statement_id, found in tagged.items():
            if len(found) > 1:
                found.sort()  # tagging order; equal positions (never written) by slug
            result[statement_id] = [TopicRow(slug, name, int(n)) for _, slug, name, n in found]
        return result

    async def related_of(self, statement_ids: Iterable[str]) -> dict[str, list[str]]:
        """Ids of the live statements related to each one, in both directions, oldest link first.

        A linked to B makes B related to A and A related to B; unlinking A→B removes both
        unless B→A was linked too.
        """
        wanted = _ids(statement_ids, "statement_ids")
        if not wanted:
            return {}
        listed = self._sql.ids(wanted)
        rows = await self._fetch(self._sql.related_of, listed, listed)
        result: dict[str, list[str]] = {i: [] for i in wanted}
        for sid, rid, _position in rows:
            result[sid].append(rid)
        return result

    async def related_statements_of(
        self, statement_ids: Iterable[str]
    ) -> dict[str, list[StatementRow]]:
        """The rows of :meth:`related_of`'s statements, in its order, in one statement."""
        wanted = _ids(statement_ids, "statement_ids")
        if not wanted:
            return {}
        listed = self._sql.ids(wanted)
        rows = await self._fetch(self._sql.related_statements_of, listed, listed)
        result: dict[str, list[StatementRow]] = {i: [] for i in wanted}
        for row in rows:
            result[row[0]].append(_statement_tuple(row[1:]))
        return result

    # -- ministers and topics --------------------------------------------------------------

    async def ministers_by_ids(self, ids: Iterable[str]) -> dict[str, MinisterRow]:
        """Ministers by id (also those whose statements were all withdrawn)."""
        wanted = _ids(ids, "ids")
        if not wanted:
            return {}
        rows = await self._fetch(self._sql.ministers_by_ids, self._sql.ids(wanted))
        return {r[0]: _minister_tuple(r) for r in rows}

    async def ministers(self) -> list[MinisterRow]:
        """Ministers with live statements, most statements first, then by name."""
        return [_minister_tuple(r) for r in await self._fetch(self._sql.ministers)]

    async def minister_topics(
        self, minister_ids: Iterable[str], limit: int
    ) -> dict[str, list[MinisterTopicRow]]:
        """Each minister's ``limit`` most frequent topics: the topic (its own count) and how
        many of the minister's live statements carry it."""
        wanted = _ids(minister_ids, "minister_ids")
        size = _required_count(limit, "limit")
        if not wanted:
            return {}
        rows = await self._fetch(self._sql.minister_topics, self._sql.ids(wanted), size)
        result: dict[str, list[MinisterTopicRow]] = {i: [] for i in wanted}
        for minister_id, slug, count, name, topic_count in rows:
            topic = TopicRow(slug, name, int(topic_count))
            result[minister_id].append(MinisterTopicRow(minister_id, topic, int(count)))
        return result

    async def topics_by_slugs(self, slugs: Iterable[str]) -> dict[str, TopicRow]:
        """Topics by slug (also those without live statements); unknown slugs are absent."""
        wanted = _ids(slugs, "slugs")
        if not wanted:
            return {}
        rows = await self._fetch(self._sql.topics_by_slugs, self._sql.ids(wanted))
        return {r[0]: TopicRow(r[0], r[1], int(r[2])) for r in rows}

    async def topics(self, first: int | None = None, after: str | None = None) -> Page[TopicRow]:
        """Topics with live statements, most statements first, then by slug."""
        paging = _paging(first, after, None, None, _TOPICS_TAG, (int, str))
        t = self._topics
        base = (
            sa.select(t.c.statement_count.label("k0"), t.c.slug.label("id"))
            .where(t.c.statement_count > 0)
            .cte("base")
            .prefix_with("NOT MATERIALIZED")
        )
        query = _page_query(base, (("k0", True), ("id", False)), paging)
        c, p = query.counts, query.page
        rows = await self._rows(
            sa.select(
                c,
                p.c.k0.label("p_k0"),
                p.c.id.label("p_id"),
                t.c.name,
            )
            .select_from(c.outerjoin(p, sa.true()).outerjoin(t, t.c.slug == p.c.id))
            .order_by(*_order_by(p, query.sort, reverse=paging.backward))
        )
        return _finish_page(
            rows,
            query,
            _TOPICS_TAG,
            lambda m: TopicRow(str(m["p_id"]), str(m["name"]), int(m["p_k0"])),
        )

    # -- statement lists -------------------------------------------------------------------

    async def statements(
        self,
        filter: StatementFilter | None = None,
        order: StatementOrder = StatementOrder.PUBLISHED_DESC,
        first: int | None = None,
        after: str | None = None,
        last: int | None = None,
        before: str | None = None,
        *,
        with_total: bool = True,
    ) -> Page[StatementRow]:
        """A page of live statements matching ``filter``, in ``order``.

        ``first``/``after`` page forwards, ``last``/``before`` backwards (``first`` and ``last``
        exclude each other; with neither, the first 20). With ``filter.search``, every row has a
        ``rank`` and a ``snippet``; ``RELEVANCE`` requires a search. ``with_total=False`` leaves
        the total uncounted (``total_count`` is -1): the count reads every matching index entry.
        """
        criteria = filter if filter is not None else StatementFilter()
        if not isinstance(order, StatementOrder):
            raise ValueError(f"orderBy: must be one of {', '.join(o.name for o in StatementOrder)}")
        terms = None if criteria.search is None else search_terms(criteria.search)
        if order is StatementOrder.RELEVANCE and terms is None:
            raise ValueError("orderBy: RELEVANCE needs a search text (filter.search)")
        if (
            criteria.from_date is not None
            and criteria.to_date is not None
            and criteria.from_date > criteria.to_date
        ):
            raise ValueError(FROM_AFTER_TO)
        tag, key_type = {
            StatementOrder.PUBLISHED_DESC: (_PUBLISHED_TAG, int),
            StatementOrder.PUBLISHED_ASC: (_PUBLISHED_TAG, int),
            StatementOrder.MOST_VIEWED: (_VIEWS_TAG, int),
            StatementOrder.RELEVANCE: (_RELEVANCE_TAG, float),
        }[order]
        paging = _paging(first, after, last, before, tag, (key_type, str))
        if criteria == _NO_FILTER and order in _PUBLISHED_ORDERS:
            return await self._published(order is StatementOrder.PUBLISHED_DESC, paging, with_total)

        s, v, st = self._statements, self._view_totals, self._statement_topics
        # Views are joined only where they are the sort key; the page's rows get theirs below.
        joined: sa.FromClause = self._with_views(s) if order is StatementOrder.MOST_VIEWED else s
        conditions: list[Any] = [self._live()]
        if criteria.minister_id is not None:
            conditions.append(s.c.minister_id == criteria.minister_id)
        if criteria.topic is not None:
            conditions.append(
                sa.exists().where(st.c.statement_id == s.c.id, st.c.topic_slug == criteria.topic)
            )
        if criteria.kind is not None:
            conditions.append(s.c.kind == criteria.kind)
        if criteria.from_date is not None:
            conditions.append(s.c.published_on >= criteria.from_date)
        if criteria.to_date is not None:
            conditions.append(s.c.published_on <= criteria.to_date)

        key: Any = None
        if order is StatementOrder.RELEVANCE:
            sort = (("k0", True), ("id", False))
        elif order is StatementOrder.MOST_VIEWED:
            key = sa.func.coalesce(v.c.view_count, 0)
            sort = (("k0", True), ("id", False))
        elif order is StatementOrder.PUBLISHED_ASC:
            key, sort = s.c.published_at_us, (("k0", False), ("id", False))
        else:
            key, sort = s.c.published_at_us, (("k0", True), ("id", True))

        rank: Any = None
        pg_search: _PgSearch | None = None
        index = self._search_index
        columns: list[Any]
        if terms is not None and not terms.words:
            # Nothing searchable in the text (only punctuation, say): nothing matches.
            conditions.append(sa.false())
            rank = sa.literal(0.0, sa.Float)
        elif terms is not None and self._postgres:
            pg_search = _pg_search(index, self._search_stats, terms)
            params = pg_search.params
            joined = joined.join(index, index.c.statement_id == s.c.id).join(params, sa.true())
            conditions.append(index.c.document.op("@@")(params.c.q_all))
            # Each term's occurrences once per hit (the rank uses them twice): a subquery that
            # the planner keeps whole (OFFSET 0) rather than inlining its columns' expressions.
            hits = (
                sa.select(
                    (key if key is not None else sa.literal(0)).label("k0"),
                    s.c.id.label("id"),
                    index.c.length.label("length"),
                    *pg_search.columns(index),
                )
                .select_from(joined)
                .where(*conditions)
                .offset(0)
                .subquery("hits")
            )
            rank = pg_search.bm25(hits)
            columns = [
                (rank if key is None else hits.c.k0).label("k0"),
                hits.c.id.label("id"),
                rank.label("rank"),
            ]
            base = sa.select(*columns).cte("base").prefix_with("NOT MATERIALIZED")
        elif terms is not None:
            joined = joined.join(index, index.c.statement_id == s.c.id)
            conditions.append(_fts_table(index).op("MATCH")(sa.literal(fts5_query(terms))))
            rank = -sa.func.bm25(_fts_table(index), *_BM25_WEIGHTS, type_=sa.Float)

        if pg_search is None:
            columns = [(key if key is not None else rank).label("k0"), s.c.id.label("id")]
            if rank is not None:
                columns.append(rank.label("rank"))
            # FTS5 functions only work in the query that runs the MATCH: keep it whole.
            materialize = bool(terms and terms.words)
            if materialize:
                columns.append(index.c.rowid.label("doc_id"))
            base = (
                sa.select(*columns)
                .select_from(joined)
                .where(*conditions)
                .cte("base")
                .prefix_with("MATERIALIZED" if materialize else "NOT MATERIALIZED")
            )
        query = _page_query(base, sort, paging, with_total)
        c, p = query.counts, query.page
        selected = [
            c,
            p.c.k0.label("p_k0"),
            p.c.id.label("p_id"),
            *self._statement_columns(),
        ]
        joined_page: sa.FromClause = c.outerjoin(p, sa.true()).outerjoin(s, s.c.id == p.c.id)
        joined_page = self._with_views(joined_page)
        if rank is not None:
            selected.append(p.c.rank.label("x_rank"))
            selected.append(self._snippet(p, terms, pg_search).label("x_snippet"))
            if pg_search is not None:
                docs = self._search_docs
                joined_page = (
                    joined_page.outerjoin(docs, docs.c.statement_id == p.c.id)
                    .outerjoin(index, index.c.statement_id == p.c.id)
                    .outerjoin(pg_search.params, sa.true())
                )
        rows = await self._rows(
            sa.select(*selected)
            .select_from(joined_page)
            .order_by(*_order_by(p, sort, reverse=paging.backward))
        )
        searching = rank is not None
        return _finish_page(
            rows,
            query,
            tag,
            lambda m: _statement_row(
                m,
                rank=float(m["x_rank"]) if searching else None,
                snippet=(m["x_snippet"] or "") if searching else None,
            ),
        )

    async def _published(
        self, descending: bool, paging: _Paging, with_total: bool
    ) -> Page[StatementRow]:
        """``statements()`` without a filter, by publication: the hot list, on the reader."""
        params: list[Any] = [*(paging.after or ()), *(paging.before or ())]
        params += [*params, paging.limit + 1]  # the flags' probes, then the page's range
        rows = await self._fetch(self._sql.published_page(descending, paging, with_total), *params)
        total, head, tail = rows[0][0], rows[0][1], rows[0][2]
        present = [r for r in rows if r[4] is not None]
        if not self._postgres:
            present.sort(key=_newest_first, reverse=descending != paging.backward)
        more = len(present) > paging.limit
        present = present[: paging.limit]
        if paging.backward:
            present.reverse()
            has_next, has_previous = bool(tail), more or bool(head)
        else:
            has_next, has_previous = more or bool(tail), bool(head)
        return Page(
            [_statement_tuple(r, 5) for r in present],
            Cursors(_published_cursor, [(r[3], r[4]) for r in present]),
            has_next,
            has_previous,
            int(total),
        )

    def _snippet(
        self, page: sa.Subquery, terms: SearchTerms | None, pg_search: _PgSearch | None
    ) -> Any:
        if terms is None or not terms.words:
            return sa.literal("", sa.Text)
        if pg_search is not None:
            # Like FTS5's snippet(-1): excerpt the body if the body matches, else the title.
            # The stored document has the body under weight B, so no text is parsed for that.
            config: Any = sa.literal_column(f"'{TS_CONFIG}'::regconfig")
            docs, index = self._search_docs, self._search_index
            options = sa.literal(_HEADLINE_OPTIONS)
            return sa.case(
                (
                    sa.func.ts_filter(index.c.document, sa.literal_column("'{b}'::\"char\"[]")).op(
                        "@@"
                    )(pg_search.params.c.q_all),
                    sa.func.ts_headline(
                        config,
                        sa.func.left(docs.c.body, search.MAX_INDEXED_CHARS),
                        pg_search.params.c.headline,
                        options,
                        type_=sa.Text,
                    ),
                ),
                else_=sa.func.ts_headline(
                    config, docs.c.title, pg_search.params.c.headline, options, type_=sa.Text
                ),
            )
        index = self._search_index
        # A scalar subquery per page row: snippet() needs its own MATCH, and only the page's
        # rows (not every hit) pay for it.
        return (
            sa.select(
                sa.func.snippet(
                    _fts_table(index),
                    -1,
                    SNIPPET_START,
                    SNIPPET_END,
                    _SNIPPET_ELLIPSIS,
                    _SNIPPET_TOKENS,
                    type_=sa.Text,
                )
            )
            .select_from(index)
            .where(
                _fts_table(index).op("MATCH")(sa.literal(fts5_query(terms))),
                index.c.rowid == page.c.doc_id,
            )
            .scalar_subquery()
        )

    async def _nested(
        self,
        source: _NestedSource,
        parents: Sequence[Any],
        first: int,
        after: str | None,
        with_total: bool,
    ) -> list[Page[StatementRow]]:
        """Pages of live statements for each parent, newest first, in one statement.

        Each parent's page is one index range scan that stops after ``first + 1`` entries
        (LATERAL on PostgreSQL, a UNION ALL term per parent on SQLite), instead of ranking
        every statement of every parent. The total is a count over the same index, and
        "anything before the cursor" an EXISTS probe of one entry. A source with two parent
        columns takes (first, second) pairs.
        """
        size = _required_count(first, "first")
        after_key = _decode_cursor(after, "after", _PUBLISHED_TAG, (int, str))
        sql = self._sql.nested(source, len(parents), after_key is not None, with_total)
        params: list[Any]
        if source.parent2:
            if self._postgres:
                params = [[p[0] for p in parents], [p[1] for p in parents]]
            else:
                params = [value for pair in parents for value in pair]
        else:
            params = [list(parents)] if self._postgres else list(parents)
        if self._postgres:
            params = [*params, size + 1, *(after_key or ())]
        else:
            params = [size + 1, *(after_key or (None, None)), *params]
        rows = await self._fetch(sql, *params)
        grouped: list[list[tuple[Any, ...]]] = [[] for _ in parents]
        for r in rows:
            grouped[r[0]].append(r)
        pages = []
        for group in grouped:
            present = [r for r in group if r[4] is not None]
            if not self._postgres:
                present.sort(key=_newest_first, reverse=True)
            page_rows = present[:size]
            pages.append(
                Page(
                    [_statement_tuple(r, 5) for r in page_rows],
                    Cursors(_published_cursor, [(r[3], r[4]) for r in page_rows]),
                    has_next=len(present) > size,
                    has_previous=bool(group[0][2]),
                    total_count=int(group[0][1]),
                )
            )
        return pages

    async def statements_for_ministers(
        self,
        minister_ids: Iterable[str],
        first: int,
        after: str | None = None,
        *,
        with_total: bool = True,
    ) -> dict[str, Page[StatementRow]]:
        """Each minister's live statements, newest first: at most ``first`` per minister.

        ``with_total=False`` leaves the totals uncounted (``total_count`` is -1): counting reads
        every index entry of every minister, the page only ``first + 1`` of them.
        """
        wanted = _ids(minister_ids, "minister_ids")
        _required_count(first, "first")
        if not wanted:
            return {}
        pages = await self._nested(_MINISTER_PAGES, wanted, first, after, with_total)
        return dict(zip(wanted, pages, strict=True))

    async def statements_for_topics(
        self,
        slugs: Iterable[str],
        first: int,
        after: str | None = None,
        *,
        with_total: bool = True,
    ) -> dict[str, Page[StatementRow]]:
        """Each topic's live statements, newest first: at most ``first`` per topic.

        ``with_total``: as in :meth:`statements_for_ministers`.
        """
        wanted = _ids(slugs, "slugs")
        _required_count(first, "first")
        if not wanted:
            return {}
        pages = await self._nested(_TOPIC_PAGES, wanted, first, after, with_total)
        return dict(zip(wanted, pages, strict=True))

    async def statements_for_minister_topics(
        self,
        pairs: Iterable[tuple[str, str]],
        first: int,
        after: str | None = None,
        *,
        with_total: bool = True,
    ) -> dict[tuple[str, str], Page[StatementRow]]:
        """Each (minister id, topic slug)'s live statements: the minister's statements tagged
        with the topic, newest first, at most ``first`` per pair.

        ``with_total``: as in :meth:`statements_for_ministers`.
        """
        if isinstance(pairs, tuple):
            raise ValueError("pairs: must be a list of (minister id, topic slug) pairs")
        wanted = list(dict.fromkeys(pairs))
        if len(wanted) > MAX_IDS:
            raise ValueError(f"pairs: at most {MAX_IDS} values")
        for pair in wanted:
            if (
                not isinstance(pair, tuple)
                or len(pair) != 2
                or not all(isinstance(v, str) for v in pair)
            ):
                raise ValueError("pairs: each must be a (minister id, topic slug) pair of strings")
        _required_count(first, "first")
        if not wanted:
            return {}
        pages = await self._nested(_MINISTER_TOPIC_PAGES, wanted, first, after, with_total)
        return dict(zip(wanted, pages, strict=True))

    async def statements_for_months(
        self,
        months: Iterable[tuple[int, int]],
        first: int,
        after: str | None = None,
        *,
        with_total: bool = True,
    ) -> dict[tuple[int, int], Page[StatementRow]]:
        """Each (year, month)'s live statements, newest first: at most ``first`` per month.

        Months are local publication months, as in ``archive()``. ``with_total``: as in
        :meth:`statements_for_ministers`.
        """
        if isinstance(months, tuple):
            raise ValueError("months: must be a list of (year, month) pairs")
        wanted = list(dict.fromkeys(months))
        if len(wanted) > MAX_IDS:
            raise ValueError(f"months: at most {MAX_IDS} values")
        keys = {_month_key(m): m for m in wanted}
        _required_count(first, "first")
        if not wanted:
            return {}
        pages = await self._nested(_MONTH_PAGES, list(keys), first, after, with_total)
        return dict(zip(keys.values(), pages, strict=True))

    # -- archive and views -----------------------------------------------------------------

    async def archive(self) -> list[ArchiveMonthRow]:
        """Months with live statements and their counts, newest first."""
        rows = await self._fetch(self._sql.archive)
        return [ArchiveMonthRow(int(y), int(m), int(n)) for y, m, n in rows]

    async def most_viewed(
        self, first: int, since: date | None = None
    ) -> list[tuple[StatementRow, int]]:
        """The most viewed live statements with their views: overall, or since a UTC day.

        "The last 7 days" is ``since=today - 6 days``. Ties are broken by statement id.
        """
        size = _required_count(first, "first")
        if since is not None and not isinstance(since, date):
            raise ValueError("since: must be a date")
        s, v, d = self._statements, self._view_totals, self._view_days
        if since is None:
            counted: Any = v.c.view_count
            joined: sa.FromClause = v.join(s, s.c.id == v.c.statement_id)
        else:
            window = (
                sa.select(d.c.statement_id, sa.func.sum(d.c.view_count).label("n"))
                .where(d.c.day >= since)
                .group_by(d.c.statement_id)
                .subquery("w")
            )
            counted = window.c.n
            joined = self._with_views(window.join(s, s.c.id == window.c.statement_id))
        rows = await self._rows(
            sa.select(*self._statement_columns(), counted.label("x_views"))
            .select_from(joined)
            .where(self._live(), counted > 0)
            .order_by(counted.desc(), s.c.id)
            .limit(size)
        )
        return [(_statement_row(r._mapping), int(r.x_views)) for r in rows]

    async def views_by_day(
        self,
        statement_ids: Iterable[str],
        from_date: date | None = None,
        to_date: date | None = None,
    ) -> dict[str, list[DayCount]]:
        """Views per UTC day within [from_date, to_date] (inclusive); days without views omitted."""
        wanted = _ids(statement_ids, "statement_ids")
        for value, argument in ((from_date, "from"), (to_date, "to")):
            if value is not None and not isinstance(value, date):
                raise ValueError(f"{argument}: must be a date")
        if from_date is not None and to_date is not None and from_date > to_date:
            raise ValueError(FROM_AFTER_TO)
        if not wanted:
            return {}
        d = self._view_days
        conditions: list[ColumnElement[bool]] = [d.c.statement_id.in_(wanted)]
        if from_date is not None:
            conditions.append(d.c.day >= from_date)
        if to_date is not None:
            conditions.append(d.c.day <= to_date)
        rows = await self._rows(
            sa.select(d.c.statement_id, d.c.day, d.c.view_count)
            .where(*conditions)
            .order_by(d.c.statement_id, d.c.day)
        )
        result: dict[str, list[DayCount]] = {i: [] for i in wanted}
        for r in rows:
            result[str(r.statement_id)].append(DayCount(r.day, int(r.view_count)))
        return result

    async def checkpoint(self, projection: str) -> int:
        """The position a projection's tables cover (0 before its first checkpoint)."""
        async with self._engine.connect() as conn:
            value = await conn.scalar(_checkpoint_of(projection))
        return int(value or 0)

    async def view_count_at_checkpoint(self, statement_id: str) -> tuple[int, int]:
        """(views of a statement, position the views projection covers), read in one statement.

        The projection writes both in one transaction, so the count covers exactly the events
        up to that position: what a live count needs to start from without counting twice.
        """
        v = self._view_totals
        count = sa.select(v.c.view_count).where(v.c.statement_id == statement_id)
        query = sa.select(
            count.scalar_subquery().label("n"),
            _checkpoint_of(views.ViewsProjection.name).scalar_subquery().label("q"),
        )
        async with self._engine.connect() as conn:
            row = (await conn.execute(query)).one()
        return int(row.n or 0), int(row.q or 0)

    async def view_counts(self, statement_ids: Iterable[str]) -> dict[str, int]:
        """Total views of each statement (0 for statements without views)."""
        wanted = _ids(statement_ids, "statement_ids")
        if not wanted:
            return {}
        rows = await self._fetch(self._sql.view_counts, self._sql.ids(wanted))
        result = dict.fromkeys(wanted, 0)
        for statement_id, count in rows:
            result[statement_id] = int(count)
        return result


# -- row conversion ------------------------------------------------------------------------

_STATEMENT_COLUMNS: Final = (
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


def _statement_row(
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


def _json(value: Any) -> list[Any]:
    """A JSON array the server built (asyncpg hands json over as text); [] for NULL."""
    if value is None:
        return []
    found: list[Any] = orjson.loads(value)
    return found


def _minister_tuple(r: Sequence[Any]) -> MinisterRow:
    return MinisterRow(r[0], r[1], r[2], int(r[3]))


def _f8(value: Any) -> Any:
    """A double precision value: PostgreSQL computes with the C doubles FTS5 uses."""
    if isinstance(value, str):
        return sa.literal_column(f"CAST({value} AS DOUBLE PRECISION)", DOUBLE_PRECISION)
    return sa.cast(value, DOUBLE_PRECISION)


def _to_tsquery(config: str, operand: str) -> Any:
    return sa.func.to_tsquery(
        sa.literal_column(f"'{config}'::regconfig"), sa.literal(operand), type_=TSQUERY
    )


def _all_of(queries: Sequence[Any]) -> Any:
    return functools.reduce(lambda a, b: a.op("&&")(b), queries)


def _any_of(queries: Sequence[Any]) -> Any:
    return functools.reduce(lambda a, b: a.op("||")(b), queries)


@dataclass(frozen=True, slots=True)
class _PgSearch:
    """A search's terms as PostgreSQL ``tsquery`` values, and FTS5's bm25 over them.

    ``params`` is a one-row CTE, computed once per statement: ``q_all`` (every term, as FTS5
    matches them); ``headline`` (any term, through the stemming configuration: ``ts_headline``
    marks each word that matches one, and stems every word of the text, the short ones FTS5
    leaves alone included); for each term ``q<i>`` (the term alone) and ``idf<i>`` (its inverse
    document frequency, as FTS5 computes it); and ``avgdl``, the average statement length.
    """

    params: sa.CTE
    count: int

    def columns(self, index: sa.Table) -> list[Any]:
        """Per hit: each term's weighted occurrences (FTS5's "aFreq"), its idf, and avgdl."""
        p = self.params.c
        weights: Any = sa.literal_column(_TF_WEIGHTS)
        occurrences = [
            sa.func.round(
                _f8(sa.func.ts_rank_cd(weights, index.c.document, p[f"q{i}"])) * _f8(str(_TF_SCALE))
            ).label(f"tf{i}")
            for i in range(self.count)
        ]
        return [*occurrences, *(p[f"idf{i}"] for i in range(self.count)), p.avgdl]

    def bm25(self, hits: sa.Subquery) -> Any:
        """FTS5's bm25() score over :meth:`columns`, operation for operation."""
        k1, b = _f8(_BM25_K1), _f8(_BM25_B)
        norm = k1 * (_f8("1.0") - b + b * _f8(hits.c.length) / hits.c.avgdl)
        score: Any = None
        for i in range(self.count):
            freq = hits.c[f"tf{i}"]
            term = hits.c[f"idf{i}"] * ((freq * (k1 + _f8("1.0"))) / (freq + norm))
            score = term if score is None else score + term
        return score


def _pg_search(index: sa.Table, stats: sa.Table, terms: SearchTerms) -> _PgSearch:
    operands = term_operands(terms)
    count = len(operands)
    # OFFSET 0 keeps the subquery whole, so each tsquery is a value the counts below refer to.
    q = (
        sa.select(
            *(_to_tsquery(c, o).label(f"q{i}") for i, (c, o) in enumerate(operands)),
            _all_of([_to_tsquery(c, o) for c, o in operands]).label("q_all"),
            _any_of([_to_tsquery(TS_CONFIG, o) for _, o in operands]).label("headline"),
        )
        .offset(0)
        .subquery("q")
    )
    counted = index.alias("counted")
    # Each term's number of matching statements, from the GIN index.
    found = (
        sa.select(
            q,
            *(
                sa.select(sa.func.count())
                .select_from(counted)
                .where(counted.c.document.op("@@")(q.c[f"q{i}"]))
                .scalar_subquery()
                .label(f"n{i}")
                for i in range(count)
            ),
        )
        .cte("search_terms")
        .prefix_with("MATERIALIZED")
    )

    def idf(i: int) -> Any:
        # log((N - n + 0.5) / (n + 0.5)), or 1e-6 where that is not positive (a term in more
        # than half the statements), as in FTS5.
        n = found.c[f"n{i}"]
        x = sa.func.ln((_f8(stats.c.documents - n) + _f8("0.5")) / (_f8(n) + _f8("0.5")))
        return sa.case((x > 0, x), else_=_f8("1e-6")).label(f"idf{i}")

    params = (
        sa.select(
            *(found.c[f"q{i}"] for i in range(count)),
            found.c.q_all,
            found.c.headline,
            *(idf(i) for i in range(count)),
            (_f8(stats.c.tokens) / _f8(stats.c.documents)).label("avgdl"),
        )
        .select_from(found.outerjoin(stats, sa.true()))
        .cte("search_params")
        .prefix_with("MATERIALIZED")
    )
    return _PgSearch(params, count)


def _fts_table(index: sa.Table) -> Any:
    # FTS5 takes the table itself as MATCH's left side and as its functions' first argument.
    return sa.literal_column(f'"{index.name}"')
