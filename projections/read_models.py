"""The query layer over the read models (:class:`ReadModels`): every method issues exactly one SQL
statement.

The GraphQL layer counts statements (a query of depth d may issue at most d + 1), so every
method is batch-shaped: it takes lists of ids and answers for all of them at once, nested
connections included (one statement for all parents: per parent, an index range scan that
stops after the page). A method called with an empty list answers without touching the
database.

The hot methods (lookups by id, a statement's topics, relations and views, nested pages, the
unfiltered list) run SQL text written once per dialect (:mod:`projections.statement_sql`) on the
engine's :func:`~eventstore.reader.reader_for` reader, with one parameter per id list; statement
construction and a pool checkout through SQLAlchemy cost more than those queries themselves.
The others (filters, search, most viewed, topics, views per day) are SQLAlchemy Core.

Pagination (:mod:`projections.paging`) is keyset-based: a cursor is the opaque (URL-safe base64
JSON) sort key and id of its row, never an offset, so pages stay stable while statements are
published. ``total_count`` and the "is there more before/after" flags are computed inside the
same statement; the total, which reads every matching index entry where the page reads ``first +
1``, can be left out with ``with_total=False`` (``total_count`` is then -1).

Lists (``statements``, nested connections, ``topics``, ``ministers``, ``archive``,
``most_viewed``, ``related_of``) leave withdrawn statements out; ``statements_by_ids`` and
``statements_by_slugs`` return them with ``withdrawn=True`` so a page can say so.

Input mistakes raise ``ValueError`` with a message ``argument: what is wrong``, the argument
named as the GraphQL API names it (``from``, ``orderBy``, ``first``); the API turns it into
BAD_USER_INPUT. Only bound parameters reach SQL, and search text is reduced to its
words, each quoted, so any user text is a valid full-text query.

Search relevance (:mod:`projections.search_sql`) is FTS5's ``bm25()`` on both databases: on
PostgreSQL the same formula is computed from the same inputs (each term's occurrences, counted
by ``ts_rank_cd``, the statement's length in words, the number of statements and words from
``search_stats``, and each term's number of matching statements), so both rank a result list
alike.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import date
from typing import Any, Final

import sqlalchemy as sa
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.sql.elements import ColumnElement

from eventstore.projection_checkpoints import checkpoints
from eventstore.reader import Reader, reader_for
from projections import archive, ministers, search, statements, topics, views
from projections.paging import (
    FROM_AFTER_TO,
    MAX_IDS,
    PUBLISHED_TAG,
    RELEVANCE_TAG,
    TOPICS_TAG,
    VIEWS_TAG,
    Paging,
    checked_ids,
    decode_cursor,
    finish_page,
    month_key,
    order_by,
    page_query,
    paging_of,
    published_cursor,
    required_count,
)
from projections.row_mapping import (
    STATEMENT_COLUMNS,
    json_array,
    minister_tuple,
    statement_row,
    statement_tuple,
)
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
from projections.search_sql import (
    BM25_WEIGHTS,
    HEADLINE_OPTIONS,
    SNIPPET_ELLIPSIS,
    SNIPPET_END,
    SNIPPET_START,
    SNIPPET_TOKENS,
    PgSearch,
    fts_table,
    pg_search_for,
)
from projections.search_text import TS_CONFIG, SearchTerms, fts5_query, search_terms
from projections.statement_sql import (
    MINISTER_PAGES,
    MINISTER_TOPIC_PAGES,
    MONTH_PAGES,
    STATEMENT_WIDTH,
    TOPIC_PAGES,
    NestedSource,
    models_read_by,
    newest_first,
    sql_for,
)

_NO_FILTER: Final = StatementFilter()
_PUBLISHED_ORDERS: Final = (StatementOrder.PUBLISHED_DESC, StatementOrder.PUBLISHED_ASC)


def _checkpoint_of(projection: str) -> sa.Select[Any]:
    return sa.select(checkpoints.c.position).where(checkpoints.c.name == projection)


def _live_names(owned: Iterable[str]) -> dict[str, str]:
    return {name: name for name in owned}


class ReadModels:
    """Batch-shaped queries over the read models; each method issues exactly one statement."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._postgres = engine.dialect.name == "postgresql"
        self._sql = sql_for(self._postgres)
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
        return await self.reader.fetch(sql, params, models=models_read_by(sql))

    # -- statement rows --------------------------------------------------------------------

    def _statement_columns(self) -> list[Any]:
        s, v = self._statements, self._view_totals
        return [
            *(s.c[name] for name in STATEMENT_COLUMNS),
            sa.func.coalesce(v.c.view_count, 0).label("view_count"),
        ]

    def _with_views(self, joined: sa.FromClause) -> sa.FromClause:
        s, v = self._statements, self._view_totals
        return joined.outerjoin(v, v.c.statement_id == s.c.id)

    def _live(self) -> ColumnElement[bool]:
        return self._statements.c.withdrawn == sa.false()

    async def statements_by_ids(self, ids: Iterable[str]) -> dict[str, StatementRow]:
        """Statements by id, withdrawn ones included; unknown ids are absent."""
        wanted = checked_ids(ids, "ids")
        if not wanted:
            return {}
        rows = await self._fetch(self._sql.statements_by_ids, self._sql.ids(wanted))
        return {r[0]: statement_tuple(r) for r in rows}

    async def withdrawn(self, ids: Iterable[str]) -> dict[str, bool]:
        """Whether each statement was withdrawn; unknown ids are absent."""
        wanted = checked_ids(ids, "ids")
        if not wanted:
            return {}
        rows = await self._fetch(self._sql.withdrawn, self._sql.ids(wanted))
        return {str(r[0]): bool(r[1]) for r in rows}

    async def statements_by_slugs(self, slugs: Iterable[str]) -> dict[str, StatementRow]:
        """Statements by slug, withdrawn ones included; unknown slugs are absent."""
        wanted = checked_ids(slugs, "slugs")
        if not wanted:
            return {}
        rows = await self._fetch(self._sql.statements_by_slugs, self._sql.ids(wanted))
        return {r[1]: statement_tuple(r) for r in rows}

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
        at = STATEMENT_WIDTH
        topics_json, minister_json, related_json = row[at], row[at + 1], row[at + 2]
        topics = tuple(
            TopicRow(slug_, name, int(count)) for slug_, name, count in json_array(topics_json)
        )
        minister = minister_tuple(json_array(minister_json)) if minister_json is not None else None
        related = tuple(
            (
                statement_tuple(r),
                minister_tuple(r[STATEMENT_WIDTH:]) if r[STATEMENT_WIDTH] is not None else None,
            )
            for r in json_array(related_json)
        )
        return StatementPage(statement_tuple(row), minister, topics, related)

    async def topics_of(self, statement_ids: Iterable[str]) -> dict[str, list[TopicRow]]:
        """Each statement's topics in tagging order, with each topic's live statement count."""
        wanted = checked_ids(statement_ids, "statement_ids")
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
        wanted = checked_ids(statement_ids, "statement_ids")
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
        wanted = checked_ids(statement_ids, "statement_ids")
        if not wanted:
            return {}
        listed = self._sql.ids(wanted)
        rows = await self._fetch(self._sql.related_statements_of, listed, listed)
        result: dict[str, list[StatementRow]] = {i: [] for i in wanted}
        for row in rows:
            result[row[0]].append(statement_tuple(row[1:]))
        return result

    # -- ministers and topics --------------------------------------------------------------

    async def ministers_by_ids(self, ids: Iterable[str]) -> dict[str, MinisterRow]:
        """Ministers by id (also those whose statements were all withdrawn)."""
        wanted = checked_ids(ids, "ids")
        if not wanted:
            return {}
        rows = await self._fetch(self._sql.ministers_by_ids, self._sql.ids(wanted))
        return {r[0]: minister_tuple(r) for r in rows}

    async def ministers(self) -> list[MinisterRow]:
        """Ministers with live statements, most statements first, then by name."""
        return [minister_tuple(r) for r in await self._fetch(self._sql.ministers)]

    async def minister_topics(
        self, minister_ids: Iterable[str], limit: int
    ) -> dict[str, list[MinisterTopicRow]]:
        """Each minister's ``limit`` most frequent topics: the topic (its own count) and how
        many of the minister's live statements carry it."""
        wanted = checked_ids(minister_ids, "minister_ids")
        size = required_count(limit, "limit")
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
        wanted = checked_ids(slugs, "slugs")
        if not wanted:
            return {}
        rows = await self._fetch(self._sql.topics_by_slugs, self._sql.ids(wanted))
        return {r[0]: TopicRow(r[0], r[1], int(r[2])) for r in rows}

    async def topics(self, first: int | None = None, after: str | None = None) -> Page[TopicRow]:
        """Topics with live statements, most statements first, then by slug."""
        paging = paging_of(first, after, None, None, TOPICS_TAG, (int, str))
        t = self._topics
        base = (
            sa.select(t.c.statement_count.label("k0"), t.c.slug.label("id"))
            .where(t.c.statement_count > 0)
            .cte("base")
            .prefix_with("NOT MATERIALIZED")
        )
        query = page_query(base, (("k0", True), ("id", False)), paging)
        c, p = query.counts, query.page
        rows = await self._rows(
            sa.select(
                c,
                p.c.k0.label("p_k0"),
                p.c.id.label("p_id"),
                t.c.name,
            )
            .select_from(c.outerjoin(p, sa.true()).outerjoin(t, t.c.slug == p.c.id))
            .order_by(*order_by(p, query.sort, reverse=paging.backward))
        )
        return finish_page(
            rows,
            query,
            TOPICS_TAG,
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
            StatementOrder.PUBLISHED_DESC: (PUBLISHED_TAG, int),
            StatementOrder.PUBLISHED_ASC: (PUBLISHED_TAG, int),
            StatementOrder.MOST_VIEWED: (VIEWS_TAG, int),
            StatementOrder.RELEVANCE: (RELEVANCE_TAG, float),
        }[order]
        paging = paging_of(first, after, last, before, tag, (key_type, str))
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
        pg_search: PgSearch | None = None
        index = self._search_index
        columns: list[Any]
        if terms is not None and not terms.words:
            # Nothing searchable in the text (only punctuation, say): nothing matches.
            conditions.append(sa.false())
            rank = sa.literal(0.0, sa.Float)
        elif terms is not None and self._postgres:
            pg_search = pg_search_for(index, self._search_stats, terms)
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
            conditions.append(fts_table(index).op("MATCH")(sa.literal(fts5_query(terms))))
            rank = -sa.func.bm25(fts_table(index), *BM25_WEIGHTS, type_=sa.Float)

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
        query = page_query(base, sort, paging, with_total)
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
            .order_by(*order_by(p, sort, reverse=paging.backward))
        )
        searching = rank is not None
        return finish_page(
            rows,
            query,
            tag,
            lambda m: statement_row(
                m,
                rank=float(m["x_rank"]) if searching else None,
                snippet=(m["x_snippet"] or "") if searching else None,
            ),
        )

    async def _published(
        self, descending: bool, paging: Paging, with_total: bool
    ) -> Page[StatementRow]:
        """``statements()`` without a filter, by publication: the hot list, on the reader."""
        params: list[Any] = [*(paging.after or ()), *(paging.before or ())]
        params += [*params, paging.limit + 1]  # the flags' probes, then the page's range
        rows = await self._fetch(self._sql.published_page(descending, paging, with_total), *params)
        total, head, tail = rows[0][0], rows[0][1], rows[0][2]
        present = [r for r in rows if r[4] is not None]
        if not self._postgres:
            present.sort(key=newest_first, reverse=descending != paging.backward)
        more = len(present) > paging.limit
        present = present[: paging.limit]
        if paging.backward:
            present.reverse()
            has_next, has_previous = bool(tail), more or bool(head)
        else:
            has_next, has_previous = more or bool(tail), bool(head)
        return Page(
            [statement_tuple(r, 5) for r in present],
            Cursors(published_cursor, [(r[3], r[4]) for r in present]),
            has_next,
            has_previous,
            int(total),
        )

    def _snippet(
        self, page: sa.Subquery, terms: SearchTerms | None, pg_search: PgSearch | None
    ) -> Any:
        if terms is None or not terms.words:
            return sa.literal("", sa.Text)
        if pg_search is not None:
            # Like FTS5's snippet(-1): excerpt the body if the body matches, else the title.
            # The stored document has the body under weight B, so no text is parsed for that.
            config: Any = sa.literal_column(f"'{TS_CONFIG}'::regconfig")
            docs, index = self._search_docs, self._search_index
            options = sa.literal(HEADLINE_OPTIONS)
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
                    fts_table(index),
                    -1,
                    SNIPPET_START,
                    SNIPPET_END,
                    SNIPPET_ELLIPSIS,
                    SNIPPET_TOKENS,
                    type_=sa.Text,
                )
            )
            .select_from(index)
            .where(
                fts_table(index).op("MATCH")(sa.literal(fts5_query(terms))),
                index.c.rowid == page.c.doc_id,
            )
            .scalar_subquery()
        )

    async def _nested(
        self,
        source: NestedSource,
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
        size = required_count(first, "first")
        after_key = decode_cursor(after, "after", PUBLISHED_TAG, (int, str))
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
                present.sort(key=newest_first, reverse=True)
            page_rows = present[:size]
            pages.append(
                Page(
                    [statement_tuple(r, 5) for r in page_rows],
                    Cursors(published_cursor, [(r[3], r[4]) for r in page_rows]),
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
        wanted = checked_ids(minister_ids, "minister_ids")
        required_count(first, "first")
        if not wanted:
            return {}
        pages = await self._nested(MINISTER_PAGES, wanted, first, after, with_total)
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
        wanted = checked_ids(slugs, "slugs")
        required_count(first, "first")
        if not wanted:
            return {}
        pages = await self._nested(TOPIC_PAGES, wanted, first, after, with_total)
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
        required_count(first, "first")
        if not wanted:
            return {}
        pages = await self._nested(MINISTER_TOPIC_PAGES, wanted, first, after, with_total)
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
        keys = {month_key(m): m for m in wanted}
        required_count(first, "first")
        if not wanted:
            return {}
        pages = await self._nested(MONTH_PAGES, list(keys), first, after, with_total)
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
        size = required_count(first, "first")
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
        return [(statement_row(r._mapping), int(r.x_views)) for r in rows]

    async def views_by_day(
        self,
        statement_ids: Iterable[str],
        from_date: date | None = None,
        to_date: date | None = None,
    ) -> dict[str, list[DayCount]]:
        """Views per UTC day within [from_date, to_date] (inclusive); days without views omitted."""
        wanted = checked_ids(statement_ids, "statement_ids")
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
        wanted = checked_ids(statement_ids, "statement_ids")
        if not wanted:
            return {}
        rows = await self._fetch(self._sql.view_counts, self._sql.ids(wanted))
        result = dict.fromkeys(wanted, 0)
        for statement_id, count in rows:
            result[statement_id] = int(count)
        return result
