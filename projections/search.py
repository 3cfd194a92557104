"""Full-text search over statement titles and bodies: SQLite FTS5 or a PostgreSQL tsvector.

Tables (both dialects):

* ``search_docs``: the searchable text of each live statement (title, body = paragraphs joined by
  blank lines) and its ``doc_id``, the log position of its ``StatementPublished`` event: a
  deterministic integer key, which FTS5 needs as its rowid.
* ``search``: the index. On SQLite an FTS5 virtual table ``(statement_id UNINDEXED, title,
  body)`` whose rowid is ``doc_id``, ranked with ``bm25`` and excerpted with ``snippet()``. On
  PostgreSQL ``(statement_id, document tsvector)`` with a GIN index, ranked with ``ts_rank`` and
  excerpted with ``ts_headline`` over ``search_docs.body``.

Both sides tokenize without stemming (FTS5 ``unicode61``, PostgreSQL's ``simple`` configuration)
so that a query finds the same statements on either database, for Russian and English alike.
A withdrawn statement's rows are deleted: it disappears from search.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Final, cast

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import TSVECTOR
from sqlalchemy.ext.asyncio import AsyncConnection

from domain.events import StatementPublished, StatementRevised, StatementWithdrawn
from eventstore import RecordedEvent
from eventstore.projection import TableNames
from projections.common import (
    create_tables,
    decode,
    delete_keys,
    is_postgres,
    load_by_ids,
    names_key,
    type_names,
    upsert,
)

TABLES: Final = ("search_docs", "search")

#: The text search configuration on PostgreSQL: no stemming, like FTS5's unicode61.
TS_CONFIG: Final = "simple"
#: PostgreSQL limits a tsvector to 1 MB; the start of a very long body is what gets indexed.
MAX_INDEXED_CHARS: Final = 300_000


@dataclass(frozen=True, slots=True)
class SearchTables:
    """The search projection's tables under one mapping of names, for one dialect."""

    docs: sa.Table
    index: sa.Table


def search_tables(tables: Mapping[str, str], dialect: str) -> SearchTables:
    """The Table objects for a mapping of names; ``index`` differs between the dialects."""
    return _search_tables(names_key(tables, TABLES), dialect == "postgresql")


@functools.cache
def _search_tables(names: tuple[str, ...], postgres: bool) -> SearchTables:
    docs_name, index_name = names
    metadata = sa.MetaData()
    docs = sa.Table(
        docs_name,
        metadata,
        sa.Column("statement_id", sa.Text(), primary_key=True),
        sa.Column("doc_id", sa.BigInteger(), nullable=False),
        sa.Column("title", sa.Text(), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
    )
    if postgres:
        index = sa.Table(
            index_name,
            metadata,
            sa.Column("statement_id", sa.Text(), primary_key=True),
            sa.Column("document", TSVECTOR(), nullable=False),
        )
        sa.Index(f"{index_name}_document", index.c.document, postgresql_using="gin")
    else:
        # Only for building queries: the FTS5 table is created with its own DDL.
        index = sa.Table(
            index_name,
            metadata,
            sa.Column("rowid", sa.BigInteger(), primary_key=True),
            sa.Column("statement_id", sa.Text()),
            sa.Column("title", sa.Text()),
            sa.Column("body", sa.Text()),
        )
    return SearchTables(docs, index)


@dataclass(frozen=True, slots=True)
class _Doc:
    doc_id: int
    title: str
    body: str


def _doc_of(row: Any) -> _Doc:
    return _Doc(int(row.doc_id), str(row.title), str(row.body))


def body_text(paragraphs: Sequence[str]) -> str:
    """The searchable body of a statement."""
    return "\n\n".join(paragraphs)


SearchEvent = StatementPublished | StatementRevised | StatementWithdrawn


class SearchProjection:
    """Keeps the full-text index of live statements."""

    name = "search"
    version = 1
    types = type_names(StatementPublished, StatementRevised, StatementWithdrawn)
    tables: Sequence[str] = TABLES

    async def create(self, conn: AsyncConnection, tables: TableNames) -> None:
        postgres = is_postgres(conn)
        t = search_tables(tables, conn.dialect.name)
        if postgres:
            await create_tables(conn, (t.docs, t.index))
            return
        await create_tables(conn, (t.docs,))
        name = conn.dialect.identifier_preparer.quote(t.index.name)
        await conn.exec_driver_sql(
            f"CREATE VIRTUAL TABLE {name} USING fts5("
            "statement_id UNINDEXED, title, body, tokenize = 'unicode61 remove_diacritics 2')"
        )

    async def apply(
        self, conn: AsyncConnection, events: Sequence[RecordedEvent], tables: TableNames
    ) -> None:
        t = search_tables(tables, conn.dialect.name)
        decoded = [(record, cast(SearchEvent, decode(record))) for record in events]
        before = await load_by_ids(
            conn, t.docs, "statement_id", (e.statement_id for _, e in decoded), _doc_of
        )
        docs: dict[str, _Doc | None] = dict(before)
        for record, event in decoded:
            current = docs.get(event.statement_id)
            match event:
                case StatementPublished():
                    docs[event.statement_id] = _Doc(
                        record.position, event.title, body_text(event.paragraphs)
                    )
                case StatementRevised():
                    if current is not None and event.title is not None:
                        current = replace(current, title=event.title.new)
                    if current is not None and event.paragraphs is not None:
                        current = replace(current, body=body_text(event.paragraphs.new))
                    docs[event.statement_id] = current
                case StatementWithdrawn():
                    docs[event.statement_id] = None
        # Only the final state of each statement matters, which is what makes a batch equal to
        # its events one by one.
        removed: list[tuple[str, _Doc]] = []
        written: list[tuple[str, _Doc, _Doc | None]] = []
        for statement_id, doc in sorted(docs.items()):
            old = before.get(statement_id)
            if doc == old:
                continue
            if doc is None:
                assert old is not None
                removed.append((statement_id, old))
            else:
                written.append((statement_id, doc, old))
        await delete_keys(conn, t.docs, ["statement_id"], [{"statement_id": i} for i, _ in removed])
        await upsert(
            conn,
            t.docs,
            [
                {"statement_id": i, "doc_id": d.doc_id, "title": d.title, "body": d.body}
                for i, d, _ in written
            ],
            ["statement_id"],
            replace=("doc_id", "title", "body"),
        )
        index = conn.dialect.identifier_preparer.quote(t.index.name)
        if is_postgres(conn):
            await delete_keys(
                conn, t.index, ["statement_id"], [{"statement_id": i} for i, _ in removed]
            )
            if written:
                await conn.execute(
                    sa.text(
                        f"INSERT INTO {index} (statement_id, document) VALUES (:id, "
                        f"setweight(to_tsvector('{TS_CONFIG}', :title), 'A') || "
                        f"setweight(to_tsvector('{TS_CONFIG}', left(:body, {MAX_INDEXED_CHARS})), "
                        "'B')) ON CONFLICT (statement_id) "
                        "DO UPDATE SET document = excluded.document"
                    ),
                    [{"id": i, "title": d.title, "body": d.body} for i, d, _ in written],
                )
            return
        stale = [{"rowid": old.doc_id} for _, old in removed]
        stale += [{"rowid": old.doc_id} for _, _, old in written if old is not None]
        if stale:
            await conn.execute(sa.text(f"DELETE FROM {index} WHERE rowid = :rowid"), stale)
        if written:
            await conn.execute(
                sa.text(
                    f"INSERT INTO {index} (rowid, statement_id, title, body) "
                    "VALUES (:rowid, :id, :title, :body)"
                ),
                [
                    {"rowid": d.doc_id, "id": i, "title": d.title, "body": d.body}
                    for i, d, _ in written
                ],
            )
