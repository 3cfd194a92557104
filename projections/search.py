"""Full-text search over statement titles and bodies: SQLite FTS5 or a PostgreSQL tsvector.

Tables (both dialects):

* ``search_docs``: the searchable text of each live statement (title, body = paragraphs joined by
  blank lines) and its ``doc_id``, the log position of its ``StatementPublished`` event: a
  deterministic integer key, which FTS5 needs as its rowid.
* ``search``: the index. On SQLite an FTS5 virtual table ``(statement_id UNINDEXED, title,
  body)`` whose rowid is ``doc_id``, tokenized ``porter unicode61 remove_diacritics 2``. On
  PostgreSQL ``(statement_id, document tsvector, length)`` with a GIN index: the title's words
  under weight A, the body's under B, stemmed as FTS5 stems them (see
  :mod:`projections.search_text`), and ``length``, the statement's number of words.
* ``search_stats``: one row, the number of indexed statements and of their words, which
  PostgreSQL's relevance needs and FTS5 keeps by itself.

Both databases index the same words of the same text (the body up to
:data:`MAX_INDEXED_CHARS`), so a search finds the same statements on either, and relevance is
the same ``bm25`` (:mod:`projections.search_sql` computes on PostgreSQL what FTS5's ``bm25()``
does). A withdrawn statement's rows are deleted: it disappears from search.
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
from projections.search_text import TS_CONFIG, TS_PLAIN, index_text, token_count

TABLES: Final = ("search_docs", "search", "search_stats")

#: PostgreSQL limits a tsvector to 1 MB; the start of a very long body is what gets indexed, on
#: both databases alike.
MAX_INDEXED_CHARS: Final = 300_000
#: FTS5's tokenizer: stemming, over unicode61 with the diacritics of Latin letters removed.
FTS5_TOKENIZE: Final = "porter unicode61 remove_diacritics 2"
#: The key of the one ``search_stats`` row.
STATS_KEY: Final = 1


@dataclass(frozen=True, slots=True)
class SearchTables:
    """The search projection's tables under one mapping of names, for one dialect."""

    docs: sa.Table
    index: sa.Table
    stats: sa.Table


def search_tables(tables: Mapping[str, str], dialect: str) -> SearchTables:
    """The Table objects for a mapping of names; ``index`` differs between the dialects."""
    return _search_tables(names_key(tables, TABLES), dialect == "postgresql")


@functools.cache
def _search_tables(names: tuple[str, ...], postgres: bool) -> SearchTables:
    docs_name, index_name, stats_name = names
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
            sa.Column("length", sa.Integer(), nullable=False),
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
    stats = sa.Table(
        stats_name,
        metadata,
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("documents", sa.BigInteger(), nullable=False),
        sa.Column("tokens", sa.BigInteger(), nullable=False),
    )
    return SearchTables(docs, index, stats)


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


def indexed_body(body: str) -> str:
    """The part of a body that is indexed."""
    return body[:MAX_INDEXED_CHARS]


def _length(doc: _Doc) -> int:
    return token_count((doc.title, indexed_body(doc.body)))


SearchEvent = StatementPublished | StatementRevised | StatementWithdrawn


class SearchProjection:
    """Keeps the full-text index of live statements."""

    name = "search"
    version = 2
    types = type_names(StatementPublished, StatementRevised, StatementWithdrawn)
    tables: Sequence[str] = TABLES

    async def create(self, conn: AsyncConnection, tables: TableNames) -> None:
        postgres = is_postgres(conn)
        t = search_tables(tables, conn.dialect.name)
        if postgres:
            await create_ts_config(conn)
            await create_tables(conn, (t.docs, t.index, t.stats))
            return
        await create_tables(conn, (t.docs,))
        name = conn.dialect.identifier_preparer.quote(t.index.name)
        await conn.exec_driver_sql(
            f"CREATE VIRTUAL TABLE {name} USING fts5("
            f"statement_id UNINDEXED, title, body, tokenize = '{FTS5_TOKENIZE}')"
        )
        await create_tables(conn, (t.stats,))

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
        await _count(conn, t.stats, removed, written)
        index = conn.dialect.identifier_preparer.quote(t.index.name)
        if is_postgres(conn):
            await delete_keys(
                conn, t.index, ["statement_id"], [{"statement_id": i} for i, _ in removed]
            )
            if written:
                await conn.execute(_pg_insert(index), [_pg_row(i, d) for i, d, _ in written])
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
                    {"rowid": d.doc_id, "id": i, "title": d.title, "body": indexed_body(d.body)}
                    for i, d, _ in written
                ],
            )


async def _count(
    conn: AsyncConnection,
    stats: sa.Table,
    removed: Sequence[tuple[str, _Doc]],
    written: Sequence[tuple[str, _Doc, _Doc | None]],
) -> None:
    documents = sum(old is None for _, _, old in written) - len(removed)
    tokens = sum(_length(doc) for _, doc, _ in written)
    tokens -= sum(_length(old) for _, _, old in written if old is not None)
    tokens -= sum(_length(old) for _, old in removed)
    if documents or tokens:
        await upsert(
            conn,
            stats,
            [{"id": STATS_KEY, "documents": documents, "tokens": tokens}],
            ["id"],
            add=("documents", "tokens"),
        )


@functools.cache
def _pg_insert(index: str) -> sa.TextClause:
    # Title under weight A, body under B; in each, FTS5's stemmed words through the porter
    # configuration and its other words through "simple". Occurrences are what relevance counts,
    # positions do not matter, so the parts are simply concatenated.
    def column(name: str, weight: str) -> str:
        return (
            f"setweight(to_tsvector('{TS_CONFIG}', :{name}_stemmed) || "
            f"to_tsvector('{TS_PLAIN}', :{name}_plain), '{weight}')"
        )

    return sa.text(
        f"INSERT INTO {index} (statement_id, document, length) VALUES (:id, "
        f"{column('title', 'A')} || {column('body', 'B')}, :length) "
        "ON CONFLICT (statement_id) "
        "DO UPDATE SET document = excluded.document, length = excluded.length"
    )


def _pg_row(statement_id: str, doc: _Doc) -> dict[str, Any]:
    title_stemmed, title_plain, title_length = index_text(doc.title)
    body_stemmed, body_plain, body_length = index_text(indexed_body(doc.body))
    return {
        "id": statement_id,
        "title_stemmed": title_stemmed,
        "title_plain": title_plain,
        "body_stemmed": body_stemmed,
        "body_plain": body_plain,
        "length": title_length + body_length,
    }


async def create_ts_config(conn: AsyncConnection) -> None:
    """Create the text search configuration :data:`TS_CONFIG` in the current schema, once.

    Shared by the live tables and a rebuild's, so it is made only where it is missing.
    """
    name = conn.dialect.identifier_preparer.quote(TS_CONFIG)
    for catalog, prefix, statements in (
        (
            "pg_ts_dict",
            "dict",
            [f"CREATE TEXT SEARCH DICTIONARY {name} (TEMPLATE = snowball, LANGUAGE = porter)"],
        ),
        (
            "pg_ts_config",
            "cfg",
            [
                f"CREATE TEXT SEARCH CONFIGURATION {name} (PARSER = default)",
                # Hyphenated words as a whole (asciihword, hword, numhword) stay unmapped: their
                # parts are mapped, as FTS5 sees them. Matters for ts_headline, which parses the
                # original text; the index gets words alone.
                f"ALTER TEXT SEARCH CONFIGURATION {name} ADD MAPPING FOR asciiword, word, "
                f"numword, hword_asciipart, hword_part, hword_numpart, int, uint WITH {name}",
            ],
        ),
    ):
        exists = await conn.scalar(
            sa.text(
                f"SELECT count(*) FROM {catalog} c JOIN pg_namespace n "
                f"ON n.oid = c.{prefix}namespace "
                f"WHERE c.{prefix}name = :name AND n.nspname = current_schema()"
            ),
            {"name": TS_CONFIG},
        )
        if not exists:
            for statement in statements:
                await conn.exec_driver_sql(statement)
