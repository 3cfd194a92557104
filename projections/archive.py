"""The monthly archive: how many published, not withdrawn, statements each month holds.

The month is the calendar month of ``published_at`` **in the offset the statement was published
with** (its local wall-clock time), not in UTC. The archive site lists months in its own
(Moscow) time: a statement published at 00:30 on 1 July 2020 in Moscow is a July statement there,
although it is still 30 June in UTC. The statements table keeps the same local month
(``published_ym``), so ``ReadModels.statements_for_months`` lists exactly the statements counted.

Tables:

* ``archive_months``: ``(year, month) -> statement_count``; months whose count fell back to 0
  keep their row (``ReadModels.archive`` leaves them out).
* ``archive_statements``: per statement, its month and whether it is withdrawn, so that a
  withdrawal knows which month to decrement.
"""

from __future__ import annotations

import collections
import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final, cast

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from domain.events import StatementPublished, StatementWithdrawn
from eventstore import RecordedEvent
from eventstore.projection import TableNames
from projections.common import create_tables, decode, load_by_ids, names_key, type_names, upsert

TABLES: Final = ("archive_months", "archive_statements")


@dataclass(frozen=True, slots=True)
class ArchiveTables:
    """The archive projection's tables under one mapping of names."""

    months: sa.Table
    statements: sa.Table


def archive_tables(tables: Mapping[str, str]) -> ArchiveTables:
    """The Table objects for a mapping of names (live or aside)."""
    return _archive_tables(names_key(tables, TABLES))


@functools.cache
def _archive_tables(names: tuple[str, ...]) -> ArchiveTables:
    months_name, statements_name = names
    metadata = sa.MetaData()
    months = sa.Table(
        months_name,
        metadata,
        sa.Column("year", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column("month", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column("statement_count", sa.Integer(), nullable=False),
    )
    statements = sa.Table(
        statements_name,
        metadata,
        sa.Column("statement_id", sa.Text(), primary_key=True),
        sa.Column("year", sa.Integer(), nullable=False),
        sa.Column("month", sa.Integer(), nullable=False),
        sa.Column("withdrawn", sa.Boolean(), nullable=False),
    )
    return ArchiveTables(months, statements)


@dataclass(frozen=True, slots=True)
class _Entry:
    year: int
    month: int
    withdrawn: bool

    @property
    def counted(self) -> tuple[int, int] | None:
        return None if self.withdrawn else (self.year, self.month)


class ArchiveProjection:
    """Counts live statements per local publication month."""

    name = "archive"
    version = 1
    types = type_names(StatementPublished, StatementWithdrawn)
    tables: Sequence[str] = TABLES

    async def create(self, conn: AsyncConnection, tables: TableNames) -> None:
        t = archive_tables(tables)
        await create_tables(conn, (t.months, t.statements))

    async def apply(
        self, conn: AsyncConnection, events: Sequence[RecordedEvent], tables: TableNames
    ) -> None:
        t = archive_tables(tables)
        decoded = [
            cast(StatementPublished | StatementWithdrawn, decode(record)) for record in events
        ]
        before = await load_by_ids(
            conn,
            t.statements,
            "statement_id",
            (e.statement_id for e in decoded),
            lambda r: _Entry(int(r.year), int(r.month), bool(r.withdrawn)),
        )
        entries = dict(before)
        # Per-event deltas, not before/after ones: every month an event touches gets its row,
        # exactly as when the events are applied one by one.
        deltas: collections.Counter[tuple[int, int]] = collections.Counter()
        for event in decoded:
            old = entries.get(event.statement_id)
            if isinstance(event, StatementPublished):
                at = event.published_at
                new: _Entry | None = _Entry(at.year, at.month, False)
            else:
                new = None if old is None else _Entry(old.year, old.month, True)
            if new is None:
                continue
            entries[event.statement_id] = new
            if old is not None and old.counted is not None:
                deltas[old.counted] -= 1
            if new.counted is not None:
                deltas[new.counted] += 1
        await upsert(
            conn,
            t.statements,
            [
                {"statement_id": i, "year": e.year, "month": e.month, "withdrawn": e.withdrawn}
                for i, e in sorted(entries.items())
                if before.get(i) != e
            ],
            ["statement_id"],
            replace=("year", "month", "withdrawn"),
        )
        await upsert(
            conn,
            t.months,
            [
                {"year": year, "month": month, "statement_count": delta}
                for (year, month), delta in sorted(deltas.items())
            ],
            ["year", "month"],
            add=("statement_count",),
        )
