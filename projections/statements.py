"""The statements read model: everything a statement page shows, one row per statement.

Tables:

* ``statements``: the statement's current fields (revisions applied), its stream version and its
  withdrawn flag. ``published_at_us``/``published_offset`` keep the publication instant (UTC
  microseconds) and the offset it was published with; ``published_on`` and ``published_ym``
  (``year * 100 + month``) are the local date and month in that offset, the basis of the archive
  (see ``projections.archive``).
* ``statement_topics``: the topics a statement is tagged with, in tagging order, with copies of
  the statement's ``published_at_us`` and ``withdrawn`` so that a topic's page of statements is
  read from one index (``ReadModels.statements_for_topics``).
* ``statement_links``: the directed ``LinkedRelated`` facts. Relations are read in both
  directions (``ReadModels.related_of``); keeping the facts directed means unlinking A→B leaves a
  separate B→A link in place.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, cast

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from domain.events import (
    LinkedRelated,
    StatementEvent,
    StatementPublished,
    StatementRevised,
    StatementWithdrawn,
    Tagged,
    UnlinkedRelated,
    Untagged,
)
from eventstore import RecordedEvent
from eventstore.projection import TableNames
from eventstore.records import datetime_to_us
from projections.common import (
    create_tables,
    decode,
    delete_keys,
    dumps,
    load_by_ids,
    names_key,
    type_names,
    upsert,
)

TABLES: Final = ("statements", "statement_topics", "statement_links")


@dataclass(frozen=True, slots=True)
class StatementTables:
    """The statements projection's tables under one mapping of names."""

    statements: sa.Table
    topics: sa.Table
    links: sa.Table


def statement_tables(tables: Mapping[str, str]) -> StatementTables:
    """The Table objects for a mapping of names (live or aside)."""
    return _statement_tables(names_key(tables, TABLES))


@functools.cache
def _statement_tables(names: tuple[str, ...]) -> StatementTables:
    statements_name, topics_name, links_name = names
    metadata = sa.MetaData()
    statements = sa.Table(
        statements_name,
        metadata,
        sa.Column("id", sa.Text(), primary_key=True),
        sa.Column("slug", sa.Text(), nullable=False),
        sa.Column("title", sa.Text(), nullable=False),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("minister_id", sa.Text(), nullable=False),
        sa.Column("minister_name", sa.Text(), nullable=False),
        sa.Column("minister_title", sa.Text(), nullable=False),
        sa.Column("location", sa.Text()),
        sa.Column("occurred_on", sa.Date(), nullable=False),
        sa.Column("published_at_us", sa.BigInteger(), nullable=False),
        sa.Column("published_offset", sa.Integer(), nullable=False),  # seconds east of UTC
        sa.Column("published_on", sa.Date(), nullable=False),
        sa.Column("published_ym", sa.Integer(), nullable=False),
        sa.Column("paragraphs", sa.Text(), nullable=False),  # a JSON array of strings
        sa.Column("language", sa.Text(), nullable=False),
        sa.Column("source_url", sa.Text()),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("withdrawn", sa.Boolean(), nullable=False),
    )
    # Not unique: the domain guarantees unique slugs, and a violation must not stop the projection.
    sa.Index(f"{statements_name}_by_slug", statements.c.slug)
    # The lists' indexes lead with what they filter on, then ``withdrawn``, then the sort key:
    # a page is an index range scan, and its count(*) never reads the wide rows.
    sa.Index(
        f"{statements_name}_by_published",
        statements.c.withdrawn,
        statements.c.published_at_us,
        statements.c.id,
    )
    # Newest first within a parent: the order of the nested pages' window function.
    sa.Index(
        f"{statements_name}_by_minister",
        statements.c.minister_id,
        statements.c.withdrawn,
        statements.c.published_at_us.desc(),
        statements.c.id.desc(),
    )
    sa.Index(
        f"{statements_name}_by_month",
        statements.c.published_ym,
        statements.c.withdrawn,
        statements.c.published_at_us.desc(),
        statements.c.id.desc(),
    )
    # Joins from topics and search to statements read only this, not the rows.
    sa.Index(
        f"{statements_name}_keys",
        statements.c.id,
        statements.c.withdrawn,
        statements.c.published_at_us,
    )
    sa.Index(f"{statements_name}_by_day", statements.c.published_on)
    topics = sa.Table(
        topics_name,
        metadata,
        sa.Column("statement_id", sa.Text(), primary_key=True),
        sa.Column("topic_slug", sa.Text(), primary_key=True),
        sa.Column("topic_name", sa.Text(), nullable=False),
        sa.Column("position", sa.BigInteger(), nullable=False),  # of the Tagged event
        sa.Column("published_at_us", sa.BigInteger(), nullable=False),
        sa.Column("withdrawn", sa.Boolean(), nullable=False),
    )
    sa.Index(
        f"{topics_name}_by_topic",
        topics.c.topic_slug,
        topics.c.withdrawn,
        topics.c.published_at_us.desc(),
        topics.c.statement_id.desc(),
    )
    links = sa.Table(
        links_name,
        metadata,
        sa.Column("statement_id", sa.Text(), primary_key=True),
        sa.Column("related_id", sa.Text(), primary_key=True),
        sa.Column("position", sa.BigInteger(), nullable=False),  # of the LinkedRelated event
    )
    sa.Index(f"{links_name}_by_related", links.c.related_id)
    return StatementTables(statements, topics, links)


def month_key(published_at: datetime) -> int:
    """``year * 100 + month`` of a publication instant in its own offset."""
    return published_at.year * 100 + published_at.month


def _published_row(event: StatementPublished, version: int) -> dict[str, Any]:
    offset = event.published_at.utcoffset()
    return {
        "id": event.statement_id,
        "slug": event.slug,
        "title": event.title,
        "kind": event.kind,
        "minister_id": event.minister.id,
        "minister_name": event.minister.name,
        "minister_title": event.minister.title,
        "location": event.location,
        "occurred_on": event.occurred_on,
        "published_at_us": datetime_to_us(event.published_at),
        "published_offset": int(offset.total_seconds()) if offset is not None else 0,
        "published_on": event.published_at.date(),
        "published_ym": month_key(event.published_at),
        "paragraphs": dumps(list(event.paragraphs)),
        "language": event.language,
        "source_url": event.source_url,
        "version": version,
        "withdrawn": False,
    }


def _revise(row: dict[str, Any], event: StatementRevised) -> None:
    if event.title is not None:
        row["title"] = event.title.new
    if event.kind is not None:
        row["kind"] = event.kind.new
    if event.minister is not None:
        row["minister_id"] = event.minister.new.id
        row["minister_name"] = event.minister.new.name
        row["minister_title"] = event.minister.new.title
    if event.location is not None:
        row["location"] = event.location.new
    if event.occurred_on is not None:
        row["occurred_on"] = event.occurred_on.new
    if event.paragraphs is not None:
        row["paragraphs"] = dumps(list(event.paragraphs.new))


class StatementsProjection:
    """Folds the statement streams into the statement page's tables."""

    name = "statements"
    version = 1
    types = type_names(
        StatementPublished,
        StatementRevised,
        StatementWithdrawn,
        Tagged,
        Untagged,
        LinkedRelated,
        UnlinkedRelated,
    )
    tables: Sequence[str] = TABLES

    async def create(self, conn: AsyncConnection, tables: TableNames) -> None:
        t = statement_tables(tables)
        await create_tables(conn, (t.statements, t.topics, t.links))

    async def apply(
        self, conn: AsyncConnection, events: Sequence[RecordedEvent], tables: TableNames
    ) -> None:
        t = statement_tables(tables)
        decoded = [(record, cast(StatementEvent, decode(record))) for record in events]
        # Rows are loaded once, folded in memory and written once: a batch has the effect of its
        # events one by one, with a handful of statements instead of one per event.
        published: set[str] = set()
        needed: set[str] = set()
        for _record, event in decoded:
            statement_id = event.statement_id
            if isinstance(event, StatementPublished):
                published.add(statement_id)
            elif statement_id not in published:
                needed.add(statement_id)
        rows = await load_by_ids(conn, t.statements, "id", needed, lambda r: dict(r._mapping))
        changed: set[str] = set()
        moved: set[str] = set()  # published or withdrawn: their topic rows' copies change
        topics: dict[tuple[str, str], dict[str, Any] | None] = {}
        links: dict[tuple[str, str], int | None] = {}
        for record, event in decoded:
            match event:
                case StatementPublished():
                    rows[event.statement_id] = _published_row(event, record.version)
                    moved.add(event.statement_id)
                case StatementRevised():
                    if event.statement_id in rows:
                        _revise(rows[event.statement_id], event)
                case StatementWithdrawn():
                    if event.statement_id in rows:
                        rows[event.statement_id]["withdrawn"] = True
                        moved.add(event.statement_id)
                case Tagged():
                    topics[(event.statement_id, event.topic_slug)] = {
                        "statement_id": event.statement_id,
                        "topic_slug": event.topic_slug,
                        "topic_name": event.topic_name,
                        "position": record.position,
                    }
                case Untagged():
                    topics[(event.statement_id, event.topic_slug)] = None
                case LinkedRelated():
                    links[(event.statement_id, event.related_id)] = record.position
                case UnlinkedRelated():
                    links[(event.statement_id, event.related_id)] = None
            statement_id = event.statement_id
            row = rows.get(statement_id)
            if row is not None:
                # Every event of the statement stream moves the version the page shows.
                row["version"] = record.version
                changed.add(statement_id)
        columns = [c.name for c in t.statements.columns if c.name != "id"]
        await upsert(
            conn, t.statements, [rows[i] for i in sorted(changed)], ["id"], replace=columns
        )
        keys = ("statement_id", "topic_slug")
        await delete_keys(
            conn,
            t.topics,
            keys,
            [dict(zip(keys, k, strict=True)) for k, v in topics.items() if v is None],
        )
        tagged = []
        for (statement_id, _slug), value in topics.items():
            if value is not None:
                row = rows.get(statement_id)
                # A topic row copies its statement's state as it stands after the batch.
                value["published_at_us"] = row["published_at_us"] if row is not None else 0
                value["withdrawn"] = row["withdrawn"] if row is not None else False
                tagged.append(value)
        await upsert(
            conn,
            t.topics,
            tagged,
            keys,
            replace=("topic_name", "position", "published_at_us", "withdrawn"),
        )
        if moved:
            await conn.execute(
                t.topics.update()
                .where(t.topics.c.statement_id == sa.bindparam("k_id"))
                .values(
                    published_at_us=sa.bindparam("k_published"),
                    withdrawn=sa.bindparam("k_withdrawn"),
                ),
                [
                    {
                        "k_id": i,
                        "k_published": rows[i]["published_at_us"],
                        "k_withdrawn": rows[i]["withdrawn"],
                    }
                    for i in sorted(moved)
                ],
            )
        link_keys = ("statement_id", "related_id")
        await delete_keys(
            conn,
            t.links,
            link_keys,
            [dict(zip(link_keys, k, strict=True)) for k, v in links.items() if v is None],
        )
        await upsert(
            conn,
            t.links,
            [
                {"statement_id": s, "related_id": r, "position": p}
                for (s, r), p in links.items()
                if p is not None
            ],
            link_keys,
            replace=("position",),
        )
