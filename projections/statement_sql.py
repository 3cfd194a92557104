"""The hot queries' SQL text, written once per dialect and run by an eventstore Reader."""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

import orjson

from eventstore.read_cache import models_of, table_owners
from projections import archive, ministers, search, statements, topics, views
from projections.paging import Paging

# -- the fast path: SQL text written once per dialect, run by an eventstore Reader -----------
#
# Building, compiling and caching a SQLAlchemy statement and checking a pooled connection in
# and out cost more than the hot queries themselves (a primary-key lookup). The hot methods
# therefore run SQL text built once per dialect through :func:`eventstore.reader.reader_for`;
# an id list is ONE parameter (a JSON array on SQLite, a text[] on PostgreSQL), so the text
# does not depend on the number of ids. Parameters are written ``?`` and numbered for asyncpg.

STATEMENT_SELECT: Final = (
    "s.id, s.slug, s.title, s.kind, s.minister_id, s.minister_name, s.minister_title, "
    "s.location, s.occurred_on, s.published_at_us, s.published_offset, s.paragraphs, "
    "s.language, s.source_url, s.version, s.withdrawn, coalesce(v.view_count, 0)"
)
STATEMENT_WIDTH: Final = 17
#: SQLite refuses a compound SELECT of more than 500 terms: nested pages put at most this many
#: parents in one compound and nest the compounds.
_COMPOUND_TERMS: Final = 400

_QMARK: Final = re.compile(r"\?")


def _numbered(sql: str) -> str:
    """``?`` placeholders as asyncpg's ``$1, $2, ...`` (the SQL here has no ``?`` in literals)."""
    counter = iter(range(1, 10_000))
    return _QMARK.sub(lambda _m: f"${next(counter)}", sql)


@dataclass(frozen=True, slots=True)
class NestedSource:
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


MINISTER_PAGES: Final = NestedSource("statements", "minister_id", "published_at_us", "id", "text")
MONTH_PAGES: Final = NestedSource("statements", "published_ym", "published_at_us", "id", "int")
TOPIC_PAGES: Final = NestedSource(
    "statement_topics", "topic_slug", "published_at_us", "statement_id", "text"
)
# The topic's index range, each entry's statement looked up by its key for the minister: a
# page reads the topic's statements until it has found enough of the minister's.
MINISTER_TOPIC_PAGES: Final = NestedSource(
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
    columns = STATEMENT_SELECT.replace("s.", "rs.").replace("v.", "rv.")
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
        f"SELECT {STATEMENT_SELECT}, ({topics}), ({minister}), ({related}) "
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
def models_read_by(sql: str) -> frozenset[str]:
    """The read models a statement reads: a move of any of them drops its cached rows."""
    return models_of(sql, _TABLE_OWNERS)


class _Sql:
    """The hot queries' SQL for one dialect."""

    def __init__(self, postgres: bool) -> None:
        self.postgres = postgres
        ids = self.in_ids
        statement_from = "statements s LEFT JOIN view_totals v ON v.statement_id = s.id"
        self.statements_by_ids = self.text(
            f"SELECT {STATEMENT_SELECT} FROM {statement_from} WHERE s.id {ids}"
        )
        # Should a slug ever repeat, the first statement published with it wins, as its
        # reservation did: it comes last, so it is the one left in the dict.
        self.statements_by_slugs = self.text(
            f"SELECT {STATEMENT_SELECT} FROM {statement_from} WHERE s.slug {ids} "
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
            f"SELECT r.sid, {STATEMENT_SELECT} {links} "
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

    def published_page(self, descending: bool, paging: Paging, count: bool) -> str:
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

    def _published_page(self, descending: bool, paging: Paging, count: bool) -> str:
        # Row values compare (published_at_us, id) as the index orders them: each condition
        # is one index range, and the flags are EXISTS probes of one entry.
        later, at_or_earlier = ("<", ">=") if descending else (">", "<=")
        earlier, at_or_later = (">", "<=") if descending else ("<", ">=")
        live = "FROM statements WHERE withdrawn = false"
        row = "(published_at_us, id)"
        window = []
        head = tail = "0"
        source = NestedSource("statements", "", "published_at_us", "id", "")
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
            f"SELECT c.x_total, c.x_head, c.x_tail, p.k0, p.id, {STATEMENT_SELECT} "
            f"FROM (SELECT {total} AS x_total, {head} AS x_head, {tail} AS x_tail) c "
            f"LEFT JOIN (SELECT published_at_us AS k0, id {live}{where} "
            f"ORDER BY published_at_us {direction}, id {direction} LIMIT ?) p ON true "
            "LEFT JOIN statements s ON s.id = p.id "
            "LEFT JOIN view_totals v ON v.statement_id = p.id"
            # SQLite would sort the wide joined rows in a temporary B-tree: the caller sorts
            # the page by (key, id) instead (BINARY collation: Python's str order).
            + (f" ORDER BY p.k0 {direction}, p.id {direction}" if self.postgres else "")
        )

    def nested(self, source: NestedSource, parents: int, after: bool, count: bool) -> str:
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
    def _range(source: NestedSource, parent: Sequence[str], cursor: str | None, op: str) -> str:
        t = source
        condition = f"FROM {t.table} WHERE {t.parent} = {parent[0]}"
        if t.parent2:
            condition += f" AND {t.parent2} = {parent[1]}"
        condition += f" AND {t.withdrawn} = false"
        if cursor is not None:
            condition += f" AND ({t.key}, {t.id}) {op} {cursor}"
        return condition

    def _nested_compound(self, source: NestedSource, parents: int, after: bool, count: bool) -> str:
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
            f"SELECT r.b, r.x_total, r.x_head, r.k0, r.id, {STATEMENT_SELECT} FROM r "
            "LEFT JOIN statements s ON s.id = r.id "
            "LEFT JOIN view_totals v ON v.statement_id = r.id"
        )

    def _nested_lateral(self, source: NestedSource, after: bool, count: bool) -> str:
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
            f"SELECT q.ord - 1, c.x_total, c.x_head, p.k0, p.id, {STATEMENT_SELECT} "
            f"FROM unnest({arrays}) WITH ORDINALITY AS q({', '.join(columns)}, ord) "
            f"CROSS JOIN LATERAL (SELECT {total} AS x_total, {head} AS x_head OFFSET 0) c "
            f"LEFT JOIN LATERAL (SELECT {source.key} AS k0, {source.id} AS id {page} "
            f"ORDER BY {source.key} DESC, {source.id} DESC LIMIT {size}) p ON true "
            "LEFT JOIN statements s ON s.id = p.id "
            "LEFT JOIN view_totals v ON v.statement_id = p.id "
            # Ordered here: ids compare in the database's collation, not as Python's str.
            "ORDER BY q.ord, p.k0 DESC, p.id DESC"
        )


def newest_first(row: Sequence[Any]) -> tuple[Any, Any]:
    """The (key, id) of a page's row (nested or published): the order of its pages."""
    return row[3], row[4]


def _probe_order(source: NestedSource, op: str) -> str:
    """ORDER BY ... LIMIT 1 for an EXISTS probe of a key range: it makes the plan the index
    range scan that stops at the first entry, never a scan of the table (PostgreSQL may
    otherwise guess that a sequential scan finds a row soon)."""
    direction = "ASC" if op.startswith(">") else "DESC"
    return f"ORDER BY {source.key} {direction}, {source.id} {direction} LIMIT 1"


_SQL_BY_DIALECT: dict[bool, _Sql] = {}


def sql_for(postgres: bool) -> _Sql:
    sql = _SQL_BY_DIALECT.get(postgres)
    if sql is None:
        sql = _SQL_BY_DIALECT[postgres] = _Sql(postgres)
    return sql
