"""The ministers read model: name, title, live statement count and most frequent topics.

Tables:

* ``ministers``: ``id -> name, title, statement_count``. Name and title come from the latest
  event that names the minister (a publication, or a revision that changes the minister); the
  count is of published, not withdrawn, statements currently attributed to them.
* ``minister_topics``: ``(minister_id, topic_slug) -> statement_count``: how many of the
  minister's live statements carry the topic. Topic names are read from the topics projection.
* ``minister_statement_state``: per statement, whether it is published and withdrawn, its
  current minister and its topic slugs (JSON), so that a revision moving a statement to another
  minister, a withdrawal or an untag knows what to undo.
"""

from __future__ import annotations

import collections
import functools
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Final, cast

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from domain.events import (
    MinisterRef,
    StatementPublished,
    StatementRevised,
    StatementWithdrawn,
    Tagged,
    Untagged,
)
from eventstore import RecordedEvent
from eventstore.projection import TableNames
from projections.common import (
    add_to,
    create_tables,
    decode,
    dumps,
    load_by_ids,
    names_key,
    type_names,
    upsert,
)

TABLES: Final = ("ministers", "minister_topics", "minister_statement_state")


@dataclass(frozen=True, slots=True)
class MinisterTables:
    """The ministers projection's tables under one mapping of names."""

    ministers: sa.Table
    topics: sa.Table
    state: sa.Table


def minister_tables(tables: Mapping[str, str]) -> MinisterTables:
    """The Table objects for a mapping of names (live or aside)."""
    return _minister_tables(names_key(tables, TABLES))


@functools.cache
def _minister_tables(names: tuple[str, ...]) -> MinisterTables:
    ministers_name, topics_name, state_name = names
    metadata = sa.MetaData()
    ministers = sa.Table(
        ministers_name,
        metadata,
        sa.Column("id", sa.Text(), primary_key=True),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("title", sa.Text(), nullable=False),
        sa.Column("statement_count", sa.Integer(), nullable=False),
    )
    topics = sa.Table(
        topics_name,
        metadata,
        sa.Column("minister_id", sa.Text(), primary_key=True),
        sa.Column("topic_slug", sa.Text(), primary_key=True),
        sa.Column("statement_count", sa.Integer(), nullable=False),
    )
    state = sa.Table(
        state_name,
        metadata,
        sa.Column("statement_id", sa.Text(), primary_key=True),
        sa.Column("published", sa.Boolean(), nullable=False),
        sa.Column("withdrawn", sa.Boolean(), nullable=False),
        sa.Column("minister_id", sa.Text(), nullable=False),
        sa.Column("topics", sa.Text(), nullable=False),  # JSON array of slugs
    )
    return MinisterTables(ministers, topics, state)


@dataclass(frozen=True, slots=True)
class _State:
    published: bool = False
    withdrawn: bool = False
    minister_id: str = ""
    topics: tuple[str, ...] = ()

    @property
    def live(self) -> bool:
        return self.published and not self.withdrawn and bool(self.minister_id)


def _state_of(row: Any) -> _State:
    return _State(
        bool(row.published),
        bool(row.withdrawn),
        str(row.minister_id),
        tuple(json.loads(row.topics)),
    )


MinisterEvent = StatementPublished | StatementRevised | StatementWithdrawn | Tagged | Untagged


class MinistersProjection:
    """Counts each minister's live statements, overall and per topic."""

    name = "ministers"
    version = 1
    types = type_names(StatementPublished, StatementRevised, StatementWithdrawn, Tagged, Untagged)
    tables: Sequence[str] = TABLES

    async def create(self, conn: AsyncConnection, tables: TableNames) -> None:
        t = minister_tables(tables)
        await create_tables(conn, (t.ministers, t.topics, t.state))

    async def apply(
        self, conn: AsyncConnection, events: Sequence[RecordedEvent], tables: TableNames
    ) -> None:
        t = minister_tables(tables)
        decoded = [cast(MinisterEvent, decode(record)) for record in events]
        before = await load_by_ids(
            conn, t.state, "statement_id", (e.statement_id for e in decoded), _state_of
        )
        states = dict(before)
        counts: collections.Counter[str] = collections.Counter()
        topic_counts: collections.Counter[tuple[str, str]] = collections.Counter()
        named: dict[str, MinisterRef] = {}
        for event in decoded:
            old = states.get(event.statement_id, _State())
            match event:
                case StatementPublished():
                    named[event.minister.id] = event.minister
                    new = replace(old, published=True, minister_id=event.minister.id)
                case StatementRevised():
                    if event.minister is None:
                        continue
                    named[event.minister.new.id] = event.minister.new
                    new = replace(old, minister_id=event.minister.new.id)
                case StatementWithdrawn():
                    new = replace(old, withdrawn=True)
                case Tagged():
                    topics = old.topics
                    if event.topic_slug not in topics:
                        topics = (*topics, event.topic_slug)
                    new = replace(old, topics=topics)
                case Untagged():
                    new = replace(old, topics=tuple(s for s in old.topics if s != event.topic_slug))
            states[event.statement_id] = new
            # Per-event deltas: every key an event touches is touched as one event at a time.
            if old.live:
                counts[old.minister_id] -= 1
                for slug in old.topics:
                    topic_counts[(old.minister_id, slug)] -= 1
            if new.live:
                counts[new.minister_id] += 1
                for slug in new.topics:
                    topic_counts[(new.minister_id, slug)] += 1
        await upsert(
            conn,
            t.state,
            [
                {
                    "statement_id": i,
                    "published": s.published,
                    "withdrawn": s.withdrawn,
                    "minister_id": s.minister_id,
                    "topics": dumps(list(s.topics)),
                }
                for i, s in sorted(states.items())
                if before.get(i) != s
            ],
            ["statement_id"],
            replace=("published", "withdrawn", "minister_id", "topics"),
        )
        # A minister is counted only after an event named them, so the rows of counted
        # ministers not named in this batch exist already: a plain UPDATE is enough for them.
        await upsert(
            conn,
            t.ministers,
            [
                {
                    "id": m.id,
                    "name": m.name,
                    "title": m.title,
                    "statement_count": counts.get(m.id, 0),
                }
                for _, m in sorted(named.items())
            ],
            ["id"],
            replace=("name", "title"),
            add=("statement_count",),
        )
        await add_to(
            conn,
            t.ministers,
            "id",
            "statement_count",
            {m: d for m, d in sorted(counts.items()) if m not in named},
        )
        await upsert(
            conn,
            t.topics,
            [
                {"minister_id": m, "topic_slug": slug, "statement_count": d}
                for (m, slug), d in sorted(topic_counts.items())
            ],
            ["minister_id", "topic_slug"],
            add=("statement_count",),
        )
