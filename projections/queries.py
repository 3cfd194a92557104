"""The query layer over the read models: every method issues exactly one SQL statement.

The GraphQL layer counts statements (a query of depth d may issue at most d + 1), so every
method is batch-shaped: it takes lists of ids and answers for all of them at once, nested
connections included (one ``ROW_NUMBER() OVER (PARTITION BY parent ...)`` statement for all
parents). A method called with an empty list answers without touching the database.

Pagination is keyset-based: a cursor is the opaque (URL-safe base64 JSON) sort key and id of its
row, never an offset, so pages stay stable while statements are published. ``total_count`` and
the "is there more before/after" flags are counted inside the same statement.

Lists (``statements``, nested connections, ``topics``, ``ministers``, ``archive``,
``most_viewed``, ``related_of``) leave withdrawn statements out; ``statements_by_ids`` and
``statements_by_slugs`` return them with ``withdrawn=True`` so a page can say so.

Input mistakes raise ``ValueError`` with a message that starts with the argument's name; the API
turns it into INVALID_INPUT. Only bound parameters reach SQL, and search text is reduced to its
words, each quoted, so any user text is a valid full-text query.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, timedelta, timezone
from typing import Any, Final

import sqlalchemy as sa
from sqlalchemy.engine import Row, RowMapping
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.sql.elements import ColumnElement

from eventstore.records import us_to_datetime
from projections import archive, ministers, search, statements, topics, views
from projections.rows import (
    ArchiveMonthRow,
    DayCount,
    MinisterRow,
    Page,
    StatementFilter,
    StatementOrder,
    StatementRow,
    TopicRow,
)

__all__ = [
    "DEFAULT_PAGE_SIZE",
    "MAX_IDS",
    "MAX_PAGE_SIZE",
    "MAX_SEARCH_LENGTH",
    "MAX_SEARCH_WORDS",
    "SNIPPET_END",
    "SNIPPET_START",
    "ReadModels",
    "StatementFilter",
    "StatementOrder",
    "fts5_query",
    "search_words",
]

MAX_PAGE_SIZE: Final = 100
DEFAULT_PAGE_SIZE: Final = 20
#: Ids per call: under the bound-parameter limits of SQLite (32766) and asyncpg (32767), even
#: where a list is bound twice.
MAX_IDS: Final = 10_000
MAX_SEARCH_LENGTH: Final = 500
MAX_SEARCH_WORDS: Final = 32
MAX_CURSOR_LENGTH: Final = 1000
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
# Words as both full-text engines see them: letters and digits; "_" and punctuation split.
_WORD: Final = re.compile(r"[^\W_]+")

_PUBLISHED_TAG: Final = "p"
_VIEWS_TAG: Final = "v"
_RELEVANCE_TAG: Final = "r"
_TOPICS_TAG: Final = "t"


def _live_names(owned: Iterable[str]) -> dict[str, str]:
    return {name: name for name in owned}


def search_words(text: str) -> list[str]:
    """The words of a user's search text; raises ValueError if it is too long."""
    if not isinstance(text, str):
        raise ValueError("search: must be a string")
    if len(text) > MAX_SEARCH_LENGTH:
        raise ValueError(f"search: at most {MAX_SEARCH_LENGTH} characters")
    words = _WORD.findall(text)
    if len(words) > MAX_SEARCH_WORDS:
        raise ValueError(f"search: at most {MAX_SEARCH_WORDS} words")
    return words


def fts5_query(words: Sequence[str]) -> str:
    """An FTS5 query matching documents that contain every word.

    Each word becomes a quoted string (inner quotes doubled), so FTS5 reads no operator, column
    filter or prefix mark from user text: ``NEAR``, ``OR``, ``title:``, ``*`` and ``"`` are words.
    """
    return " ".join('"' + word.replace('"', '""') + '"' for word in words)


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


def _encode_cursor(tag: str, key: Sequence[Any]) -> str:
    raw = json.dumps([tag, *key], separators=(",", ":"), ensure_ascii=False).encode()
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


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


def _page_query(base: sa.CTE, sort: _Sort, paging: _Paging) -> _PageQuery:
    after = None if paging.after is None else _beyond(base.c, sort, paging.after, True)
    before = None if paging.before is None else _beyond(base.c, sort, paging.before, False)
    counts = sa.select(
        sa.func.count().label("x_total"),
        _count_if(sa.not_(after), "x_head") if after is not None else sa.literal(0).label("x_head"),
        _count_if(sa.not_(before), "x_tail")
        if before is not None
        else sa.literal(0).label("x_tail"),
    ).select_from(base)
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
    cursors = [_encode_cursor(tag, [r._mapping[f"p_{k}"] for k in keys]) for r in present]
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


class ReadModels:
    """Batch-shaped queries over the read models; each method issues exactly one statement."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._postgres = engine.dialect.name == "postgresql"
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

    async def _rows(self, statement: sa.Executable) -> Sequence[Row[Any]]:
        async with self._engine.connect() as conn:
            return (await conn.execute(statement)).all()

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
        s = self._statements
        rows = await self._rows(
            sa.select(*self._statement_columns())
            .select_from(self._with_views(s))
            .where(s.c.id.in_(wanted))
        )
        return {str(r.id): _statement_row(r._mapping) for r in rows}

    async def statements_by_slugs(self, slugs: Iterable[str]) -> dict[str, StatementRow]:
        """Statements by slug, withdrawn ones included; unknown slugs are absent."""
        wanted = _ids(slugs, "slugs")
        if not wanted:
            return {}
        s = self._statements
        rows = await self._rows(
            sa.select(*self._statement_columns())
            .select_from(self._with_views(s))
            .where(s.c.slug.in_(wanted))
            # Should a slug ever repeat, the first statement published with it wins, as its
            # reservation did.
            .order_by(s.c.published_at_us.desc(), s.c.id.desc())
        )
        return {str(r.slug): _statement_row(r._mapping) for r in rows}

    async def topics_of(self, statement_ids: Iterable[str]) -> dict[str, list[TopicRow]]:
        """Each statement's topics in tagging order, with each topic's live statement count."""
        wanted = _ids(statement_ids, "statement_ids")
        if not wanted:
            return {}
        st, t = self._statement_topics, self._topics
        rows = await self._rows(
            sa.select(
                st.c.statement_id,
                st.c.topic_slug,
                sa.func.coalesce(t.c.name, st.c.topic_name).label("name"),
                sa.func.coalesce(t.c.statement_count, 0).label("statement_count"),
            )
            .select_from(st.outerjoin(t, t.c.slug == st.c.topic_slug))
            .where(st.c.statement_id.in_(wanted))
            .order_by(st.c.statement_id, st.c.position, st.c.topic_slug)
        )
        result: dict[str, list[TopicRow]] = {i: [] for i in wanted}
        for r in rows:
            result[str(r.statement_id)].append(
                TopicRow(str(r.topic_slug), str(r.name), int(r.statement_count))
            )
        return result

    async def related_of(self, statement_ids: Iterable[str]) -> dict[str, list[str]]:
        """Ids of the live statements related to each one, in both directions, oldest link first.

        A linked to B makes B related to A and A related to B; unlinking A→B removes both
        unless B→A was linked too.
        """
        wanted = _ids(statement_ids, "statement_ids")
        if not wanted:
            return {}
        links, s = self._links, self._statements
        outgoing = sa.select(
            links.c.statement_id.label("sid"),
            links.c.related_id.label("rid"),
            links.c.position.label("pos"),
        ).where(links.c.statement_id.in_(wanted))
        incoming = sa.select(
            links.c.related_id.label("sid"),
            links.c.statement_id.label("rid"),
            links.c.position.label("pos"),
        ).where(links.c.related_id.in_(wanted))
        both = sa.union_all(outgoing, incoming).subquery("l")
        first_linked = sa.func.min(both.c.pos).label("pos")
        rows = await self._rows(
            sa.select(both.c.sid, both.c.rid, first_linked)
            .select_from(both.join(s, s.c.id == both.c.rid))
            .where(self._live())
            .group_by(both.c.sid, both.c.rid)
            .order_by(both.c.sid, first_linked, both.c.rid)
        )
        result: dict[str, list[str]] = {i: [] for i in wanted}
        for r in rows:
            result[str(r.sid)].append(str(r.rid))
        return result

    # -- ministers and topics --------------------------------------------------------------

    async def ministers_by_ids(self, ids: Iterable[str]) -> dict[str, MinisterRow]:
        """Ministers by id (also those whose statements were all withdrawn)."""
        wanted = _ids(ids, "ids")
        if not wanted:
            return {}
        m = self._ministers
        rows = await self._rows(sa.select(m).where(m.c.id.in_(wanted)))
        return {str(r.id): _minister_row(r._mapping) for r in rows}

    async def ministers(self) -> list[MinisterRow]:
        """Ministers with live statements, most statements first, then by name."""
        m = self._ministers
        rows = await self._rows(
            sa.select(m)
            .where(m.c.statement_count > 0)
            .order_by(m.c.statement_count.desc(), m.c.name, m.c.id)
        )
        return [_minister_row(r._mapping) for r in rows]

    async def minister_topics(
        self, minister_ids: Iterable[str], limit: int
    ) -> dict[str, list[TopicRow]]:
        """Each minister's ``limit`` most frequent topics; counts are that minister's."""
        wanted = _ids(minister_ids, "minister_ids")
        size = _required_count(limit, "limit")
        if not wanted:
            return {}
        mt, t = self._minister_topics, self._topics
        ranked = (
            sa.select(
                mt.c.minister_id,
                mt.c.topic_slug,
                mt.c.statement_count,
                sa.func.row_number()
                .over(
                    partition_by=mt.c.minister_id,
                    order_by=(mt.c.statement_count.desc(), mt.c.topic_slug),
                )
                .label("rn"),
            )
            .where(mt.c.minister_id.in_(wanted), mt.c.statement_count > 0)
            .subquery("r")
        )
        rows = await self._rows(
            sa.select(
                ranked.c.minister_id,
                ranked.c.topic_slug,
                ranked.c.statement_count,
                sa.func.coalesce(t.c.name, ranked.c.topic_slug).label("name"),
            )
            .select_from(ranked.outerjoin(t, t.c.slug == ranked.c.topic_slug))
            .where(ranked.c.rn <= size)
            .order_by(ranked.c.minister_id, ranked.c.rn)
        )
        result: dict[str, list[TopicRow]] = {i: [] for i in wanted}
        for r in rows:
            result[str(r.minister_id)].append(
                TopicRow(str(r.topic_slug), str(r.name), int(r.statement_count))
            )
        return result

    async def topics_by_slugs(self, slugs: Iterable[str]) -> dict[str, TopicRow]:
        """Topics by slug (also those without live statements); unknown slugs are absent."""
        wanted = _ids(slugs, "slugs")
        if not wanted:
            return {}
        t = self._topics
        rows = await self._rows(sa.select(t).where(t.c.slug.in_(wanted)))
        return {str(r.slug): _topic_row(r._mapping) for r in rows}

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
    ) -> Page[StatementRow]:
        """A page of live statements matching ``filter``, in ``order``.

        ``first``/``after`` page forwards, ``last``/``before`` backwards (``first`` and ``last``
        exclude each other; with neither, the first 20). With ``filter.search``, every row has a
        ``rank`` and a ``snippet``; ``RELEVANCE`` requires a search.
        """
        criteria = filter if filter is not None else StatementFilter()
        if not isinstance(order, StatementOrder):
            raise ValueError(f"order: must be one of {[o.name for o in StatementOrder]}")
        words = None if criteria.search is None else search_words(criteria.search)
        if order is StatementOrder.RELEVANCE and words is None:
            raise ValueError("order: RELEVANCE needs a search text (filter.search)")
        if (
            criteria.from_date is not None
            and criteria.to_date is not None
            and criteria.from_date > criteria.to_date
        ):
            raise ValueError("filter: from_date is after to_date")
        tag, key_type = {
            StatementOrder.PUBLISHED_DESC: (_PUBLISHED_TAG, int),
            StatementOrder.PUBLISHED_ASC: (_PUBLISHED_TAG, int),
            StatementOrder.MOST_VIEWED: (_VIEWS_TAG, int),
            StatementOrder.RELEVANCE: (_RELEVANCE_TAG, float),
        }[order]
        paging = _paging(first, after, last, before, tag, (key_type, str))

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

        rank: Any = None
        materialize = False
        index = self._search_index
        if words is not None and not words:
            # Nothing searchable in the text (only punctuation, say): nothing matches.
            conditions.append(sa.false())
            rank = sa.literal(0.0, sa.Float)
        elif words is not None and self._postgres:
            joined = joined.join(index, index.c.statement_id == s.c.id)
            conditions.append(index.c.document.op("@@")(_tsquery(words)))
            rank = sa.func.ts_rank(index.c.document, _tsquery(words), type_=sa.Float)
        elif words is not None:
            joined = joined.join(index, index.c.statement_id == s.c.id)
            conditions.append(_fts_table(index).op("MATCH")(sa.literal(fts5_query(words))))
            rank = -sa.func.bm25(_fts_table(index), *_BM25_WEIGHTS, type_=sa.Float)
            # FTS5 functions only work in the query that runs the MATCH: keep it whole.
            materialize = True

        key: Any
        if order is StatementOrder.RELEVANCE:
            key, sort = rank, (("k0", True), ("id", False))
        elif order is StatementOrder.MOST_VIEWED:
            key = sa.func.coalesce(v.c.view_count, 0)
            sort = (("k0", True), ("id", False))
        elif order is StatementOrder.PUBLISHED_ASC:
            key, sort = s.c.published_at_us, (("k0", False), ("id", False))
        else:
            key, sort = s.c.published_at_us, (("k0", True), ("id", True))
        columns = [key.label("k0"), s.c.id.label("id")]
        if rank is not None:
            columns.append(rank.label("rank"))
            if words and not self._postgres:
                columns.append(index.c.rowid.label("doc_id"))
        base = (
            sa.select(*columns)
            .select_from(joined)
            .where(*conditions)
            .cte("base")
            .prefix_with("MATERIALIZED" if materialize else "NOT MATERIALIZED")
        )
        query = _page_query(base, sort, paging)
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
            selected.append(self._snippet(p, words or []).label("x_snippet"))
            if words and self._postgres:
                docs = self._search_docs
                joined_page = joined_page.outerjoin(docs, docs.c.statement_id == p.c.id).outerjoin(
                    index, index.c.statement_id == p.c.id
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

    def _snippet(self, page: sa.Subquery, words: Sequence[str]) -> Any:
        if not words:
            return sa.literal("", sa.Text)
        if self._postgres:
            # Like FTS5's snippet(-1): excerpt the body if the body matches, else the title.
            # The stored document has the body under weight B, so no text is parsed for that.
            config: Any = sa.literal_column(f"'{search.TS_CONFIG}'::regconfig")
            docs, index = self._search_docs, self._search_index
            options = sa.literal(_HEADLINE_OPTIONS)
            return sa.case(
                (
                    sa.func.ts_filter(index.c.document, sa.literal_column("'{b}'::\"char\"[]")).op(
                        "@@"
                    )(_tsquery(words)),
                    sa.func.ts_headline(
                        config,
                        sa.func.left(docs.c.body, search.MAX_INDEXED_CHARS),
                        _tsquery(words),
                        options,
                        type_=sa.Text,
                    ),
                ),
                else_=sa.func.ts_headline(
                    config, docs.c.title, _tsquery(words), options, type_=sa.Text
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
                _fts_table(index).op("MATCH")(sa.literal(fts5_query(words))),
                index.c.rowid == page.c.doc_id,
            )
            .scalar_subquery()
        )

    async def _nested(
        self,
        parent: Any,
        published_at_us: Any,
        statement_id: Any,
        source: sa.FromClause,
        condition: Any,
        first: int,
        after: str | None,
    ) -> dict[Any, Page[StatementRow]]:
        """Pages of live statements per parent, newest first, in one statement.

        ``source`` and ``condition`` select the (parent, published_at_us, statement_id) triples
        of live statements; an index in that order (newest first within a parent) serves both
        the counts and the window function without touching the statement rows.
        """
        size = _required_count(first, "first")
        after_key = _decode_cursor(after, "after", _PUBLISHED_TAG, (int, str))
        s = self._statements
        sort: _Sort = (("k0", True), ("id", True))
        beyond = (
            None
            if after_key is None
            else _beyond({"k0": published_at_us, "id": statement_id}, sort, after_key, True)
        )
        # Counts per parent from the index alone: the total and the rows at or before the cursor.
        counts = (
            sa.select(
                parent.label("parent"),
                sa.func.count().label("x_total"),
                (
                    _count_if(sa.not_(beyond), "x_head")
                    if beyond is not None
                    else sa.literal(0).label("x_head")
                ),
            )
            .select_from(source)
            .where(condition)
            .group_by(parent)
            .subquery("c")
        )
        # Each parent's rows after the cursor, ranked newest first; the index is in this order,
        # so the window needs no sort. Only the page (and one more row) reaches the join.
        ranked = (
            sa.select(
                parent.label("parent"),
                published_at_us.label("k0"),
                statement_id.label("id"),
                sa.func.row_number()
                .over(partition_by=parent, order_by=[published_at_us.desc(), statement_id.desc()])
                .label("rn"),
            )
            .select_from(source)
            .where(condition, *([beyond] if beyond is not None else []))
            .subquery("w")
        )
        page = sa.select(ranked).where(ranked.c.rn <= size + 1).subquery("r")
        rows = await self._rows(
            sa.select(
                counts.c.parent.label("x_parent"),
                counts.c.x_total,
                counts.c.x_head,
                page.c.k0.label("p_k0"),
                page.c.id.label("p_id"),
                *self._statement_columns(),
            )
            .select_from(
                self._with_views(
                    counts.outerjoin(page, page.c.parent == counts.c.parent).outerjoin(
                        s, s.c.id == page.c.id
                    )
                )
            )
            .order_by(counts.c.parent, page.c.rn)
        )
        grouped: dict[Any, list[RowMapping]] = {}
        for r in rows:
            grouped.setdefault(r._mapping["x_parent"], []).append(r._mapping)
        pages: dict[Any, Page[StatementRow]] = {}
        for key, group in grouped.items():
            present = [m for m in group if m["id"] is not None]
            page_rows = present[:size]
            pages[key] = Page(
                [_statement_row(m) for m in page_rows],
                [_encode_cursor(_PUBLISHED_TAG, [m["p_k0"], m["p_id"]]) for m in page_rows],
                has_next=len(present) > size,
                has_previous=int(group[0]["x_head"]) > 0,
                total_count=int(group[0]["x_total"]),
            )
        return pages

    async def statements_for_ministers(
        self, minister_ids: Iterable[str], first: int, after: str | None = None
    ) -> dict[str, Page[StatementRow]]:
        """Each minister's live statements, newest first: at most ``first`` per minister."""
        wanted = _ids(minister_ids, "minister_ids")
        _required_count(first, "first")
        if not wanted:
            return {}
        s = self._statements
        pages = await self._nested(
            s.c.minister_id,
            s.c.published_at_us,
            s.c.id,
            s,
            sa.and_(s.c.minister_id.in_(wanted), self._live()),
            first,
            after,
        )
        return {i: pages.get(i) or _empty_page() for i in wanted}

    async def statements_for_topics(
        self, slugs: Iterable[str], first: int, after: str | None = None
    ) -> dict[str, Page[StatementRow]]:
        """Each topic's live statements, newest first: at most ``first`` per topic."""
        wanted = _ids(slugs, "slugs")
        _required_count(first, "first")
        if not wanted:
            return {}
        st = self._statement_topics
        pages = await self._nested(
            st.c.topic_slug,
            st.c.published_at_us,
            st.c.statement_id,
            st,
            sa.and_(st.c.topic_slug.in_(wanted), st.c.withdrawn == sa.false()),
            first,
            after,
        )
        return {i: pages.get(i) or _empty_page() for i in wanted}

    async def statements_for_months(
        self, months: Iterable[tuple[int, int]], first: int, after: str | None = None
    ) -> dict[tuple[int, int], Page[StatementRow]]:
        """Each (year, month)'s live statements, newest first: at most ``first`` per month.

        Months are local publication months, as in ``archive()``.
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
        s = self._statements
        pages = await self._nested(
            s.c.published_ym,
            s.c.published_at_us,
            s.c.id,
            s,
            sa.and_(s.c.published_ym.in_(list(keys)), self._live()),
            first,
            after,
        )
        return {month: pages.get(key) or _empty_page() for key, month in keys.items()}

    # -- archive and views -----------------------------------------------------------------

    async def archive(self) -> list[ArchiveMonthRow]:
        """Months with live statements and their counts, newest first."""
        m = self._months
        rows = await self._rows(
            sa.select(m).where(m.c.statement_count > 0).order_by(m.c.year.desc(), m.c.month.desc())
        )
        return [ArchiveMonthRow(int(r.year), int(r.month), int(r.statement_count)) for r in rows]

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
        for value, argument in ((from_date, "from_date"), (to_date, "to_date")):
            if value is not None and not isinstance(value, date):
                raise ValueError(f"{argument}: must be a date")
        if from_date is not None and to_date is not None and from_date > to_date:
            raise ValueError("from_date: is after to_date")
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

    async def view_counts(self, statement_ids: Iterable[str]) -> dict[str, int]:
        """Total views of each statement (0 for statements without views)."""
        wanted = _ids(statement_ids, "statement_ids")
        if not wanted:
            return {}
        v = self._view_totals
        rows = await self._rows(
            sa.select(v.c.statement_id, v.c.view_count).where(v.c.statement_id.in_(wanted))
        )
        result = dict.fromkeys(wanted, 0)
        for r in rows:
            result[str(r.statement_id)] = int(r.view_count)
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
    offset = timezone(timedelta(seconds=int(m["published_offset"])))
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
        published_at=us_to_datetime(int(m["published_at_us"])).astimezone(offset),
        paragraphs=tuple(json.loads(m["paragraphs"])),
        language=str(m["language"]),
        source_url=m["source_url"],
        view_count=int(m["view_count"]),
        version=int(m["version"]),
        withdrawn=bool(m["withdrawn"]),
        rank=rank,
        snippet=snippet,
    )


def _minister_row(m: Mapping[Any, Any]) -> MinisterRow:
    return MinisterRow(str(m["id"]), str(m["name"]), str(m["title"]), int(m["statement_count"]))


def _topic_row(m: Mapping[Any, Any]) -> TopicRow:
    return TopicRow(str(m["slug"]), str(m["name"]), int(m["statement_count"]))


def _empty_page() -> Page[StatementRow]:
    return Page([], [], has_next=False, has_previous=False, total_count=0)


def _tsquery(words: Sequence[str]) -> Any:
    # plainto_tsquery ignores every operator character: any text is a valid query.
    return sa.func.plainto_tsquery(
        sa.literal_column(f"'{search.TS_CONFIG}'::regconfig"), sa.literal(" ".join(words))
    )


def _fts_table(index: sa.Table) -> Any:
    # FTS5 takes the table itself as MATCH's left side and as its functions' first argument.
    return sa.literal_column(f'"{index.name}"')
