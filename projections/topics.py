"""The topics read model (the "All Tags" page): each topic's name and live statement count.

Tables:

* ``topics``: ``slug -> name, statement_count``. The name is the one the first ``Tagged``
  event for the slug gave it, until a ``TopicRenamed`` changes it: tagging never renames a
  topic. The count is the number of published, not withdrawn, statements tagged with it (rows
  whose count fell to 0 stay; lists leave them out).
* ``topic_statement_state``: per statement, whether it is published and withdrawn and its topic
  slugs (a JSON array, in tagging order), so that a withdrawal or an untag knows what to undo.

The statements of a topic are listed from the statements projection's ``statement_topics``
(``ReadModels.statements_for_topics``), next to the statement rows they page over.
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

from domain.events import StatementPublished, StatementWithdrawn, Tagged, TopicRenamed, Untagged
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

TABLES: Final = ("topics", "topic_statement_state")


@dataclass(frozen=True, slots=True)
class TopicTables:
    """The topics projection's tables under one mapping of names."""

    topics: sa.Table
    state: sa.Table


def topic_tables(tables: Mapping[str, str]) -> TopicTables:
    """The Table objects for a mapping of names (live or aside)."""
    return _topic_tables(names_key(tables, TABLES))


@functools.cache
def _topic_tables(names: tuple[str, ...]) -> TopicTables:
    topics_name, state_name = names
    metadata = sa.MetaData()
    topics = sa.Table(
        topics_name,
        metadata,
        sa.Column("slug", sa.Text(), primary_key=True),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("statement_count", sa.Integer(), nullable=False),
    )
    sa.Index(f"{topics_name}_by_count", topics.c.statement_count, topics.c.slug)
    state = sa.Table(
        state_name,
        metadata,
        sa.Column("statement_id", sa.Text(), primary_key=True),
        sa.Column("published", sa.Boolean(), nullable=False),
        sa.Column("withdrawn", sa.Boolean(), nullable=False),
        sa.Column("topics", sa.Text(), nullable=False),  # JSON array of slugs
    )
    return TopicTables(topics, state)


@dataclass(frozen=True, slots=True)
class _State:
    published: bool = False
    withdrawn: bool = False
    topics: tuple[str, ...] = ()

    @property
    def counted(self) -> tuple[str, ...]:
        return self.topics if self.published and not self.withdrawn else ()


def _state_of(row: Any) -> _State:
    return _State(bool(row.published), bool(row.withdrawn), tuple(json.loads(row.topics)))


StatementTopicEvent = StatementPublished | StatementWithdrawn | Tagged | Untagged


class TopicsProjection:
    """Names each topic and counts its live statements."""

    name = "topics"
    # 2: a topic keeps its first name (version 1 took the latest tag's) and applies renames.
    version = 2
    types = type_names(StatementPublished, StatementWithdrawn, Tagged, Untagged, TopicRenamed)
    tables: Sequence[str] = TABLES

    async def create(self, conn: AsyncConnection, tables: TableNames) -> None:
        t = topic_tables(tables)
        await create_tables(conn, (t.topics, t.state))

    async def apply(
        self, conn: AsyncConnection, events: Sequence[RecordedEvent], tables: TableNames
    ) -> None:
        t = topic_tables(tables)
        decoded = [cast(StatementTopicEvent | TopicRenamed, decode(record)) for record in events]
        before = await load_by_ids(
            conn,
            t.state,
            "statement_id",
            (e.statement_id for e in decoded if not isinstance(e, TopicRenamed)),
            _state_of,
        )
        states = dict(before)
        deltas: collections.Counter[str] = collections.Counter()
        # The name a topic gets if this batch creates it: its first tag's, or a later rename's.
        first_names: dict[str, str] = {}
        renames: dict[str, str] = {}
        for event in decoded:
            if isinstance(event, TopicRenamed):
                renames[event.topic_slug] = event.name
                if event.topic_slug in first_names:
                    first_names[event.topic_slug] = event.name
                continue
            old = states.get(event.statement_id, _State())
            match event:
                case StatementPublished():
                    new = replace(old, published=True)
                case StatementWithdrawn():
                    new = replace(old, withdrawn=True)
                case Tagged():
                    first_names.setdefault(event.topic_slug, event.topic_name)
                    topics = old.topics
                    if event.topic_slug not in topics:
                        topics = (*topics, event.topic_slug)
                    new = replace(old, topics=topics)
                case Untagged():
                    new = replace(old, topics=tuple(s for s in old.topics if s != event.topic_slug))
            states[event.statement_id] = new
            # Per-event deltas, so that every topic an event touches is touched as it would be
            # one event at a time.
            for slug in old.counted:
                deltas[slug] -= 1
            for slug in new.counted:
                deltas[slug] += 1
        await upsert(
            conn,
            t.state,
            [
                {
                    "statement_id": i,
                    "published": s.published,
                    "withdrawn": s.withdrawn,
                    "topics": dumps(list(s.topics)),
                }
                for i, s in sorted(states.items())
                if before.get(i) != s
            ],
            ["statement_id"],
            replace=("published", "withdrawn", "topics"),
        )
        # A topic is counted only once a Tagged event named it, so the rows of counted topics
        # without a tag in this batch exist already: a plain UPDATE is enough for them. A row
        # that exists keeps its name: only a rename changes it.
        await upsert(
            conn,
            t.topics,
            [
                {"slug": slug, "name": name, "statement_count": deltas.get(slug, 0)}
                for slug, name in sorted(first_names.items())
            ],
            ["slug"],
            add=("statement_count",),
        )
        await add_to(
            conn,
            t.topics,
            "slug",
            "statement_count",
            {slug: d for slug, d in sorted(deltas.items()) if slug not in first_names},
        )
        await set_names(conn, t.topics, renames)


async def set_names(conn: AsyncConnection, topics: sa.Table, names: Mapping[str, str]) -> None:
    """UPDATE the name of each topic in ``names``; a rename only ever names a known topic."""
    if not names:
        return
    statement = (
        topics.update()
        .where(topics.c.slug == sa.bindparam("k_slug"))
        .values(name=sa.bindparam("k_name"))
    )
    await conn.execute(statement, [{"k_slug": s, "k_name": n} for s, n in sorted(names.items())])
