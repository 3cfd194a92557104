"""View counts: the total per statement and the count per statement per UTC day.

``Viewed`` adds 1 and ``ViewsImported`` adds its count, both on the UTC day of the event's
``recorded_at`` (an import has no days of its own, so its views land on the day it was recorded).
``ViewsRecorded`` (a batch) adds 1 per view it holds, each on the UTC day of the view's ``at``.
Views come in at a high rate, so a batch is first summed per key in Python and then written with
one multi-row upsert per table (``INSERT ... ON CONFLICT DO UPDATE SET n = n + excluded.n``).

Tables:

* ``view_totals``: ``statement_id -> view_count``.
* ``view_days``: ``(statement_id, day) -> view_count``, indexed by day for "most viewed since".
"""

from __future__ import annotations

import collections
import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, timedelta
from typing import Final

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from domain.events import Viewed, ViewsImported, ViewsRecorded
from eventstore import RecordedEvent
from eventstore.projection import TableNames
from projections.common import (
    create_tables,
    decode,
    names_key,
    type_name,
    type_names,
    type_version,
    upsert,
)

TABLES: Final = ("view_totals", "view_days")


@dataclass(frozen=True, slots=True)
class ViewTables:
    """The views projection's tables under one mapping of names."""

    totals: sa.Table
    days: sa.Table


def view_tables(tables: Mapping[str, str]) -> ViewTables:
    """The Table objects for a mapping of names (live or aside)."""
    return _view_tables(names_key(tables, TABLES))


@functools.cache
def _view_tables(names: tuple[str, ...]) -> ViewTables:
    totals_name, days_name = names
    metadata = sa.MetaData()
    totals = sa.Table(
        totals_name,
        metadata,
        sa.Column("statement_id", sa.Text(), primary_key=True),
        sa.Column("view_count", sa.BigInteger(), nullable=False),
    )
    sa.Index(f"{totals_name}_by_count", totals.c.view_count, totals.c.statement_id)
    days = sa.Table(
        days_name,
        metadata,
        sa.Column("statement_id", sa.Text(), primary_key=True),
        sa.Column("day", sa.Date(), primary_key=True),
        sa.Column("view_count", sa.BigInteger(), nullable=False),
    )
    # Covers "most viewed since a day" without touching the table.
    sa.Index(f"{days_name}_by_day", days.c.day, days.c.statement_id, days.c.view_count)
    return ViewTables(totals, days)


_VIEWED: Final = type_name(Viewed)
_VIEWED_VERSION: Final = type_version(Viewed)
_IMPORTED: Final = type_name(ViewsImported)
_IMPORTED_VERSION: Final = type_version(ViewsImported)
#: The stored types that carry views.
_BATCH: Final = type_name(ViewsRecorded)
_BATCH_VERSION: Final = type_version(ViewsRecorded)
VIEW_TYPES: Final = type_names(Viewed, ViewsImported, ViewsRecorded)


def counted_views(record: RecordedEvent) -> tuple[str, int] | None:
    """The statement a record adds views to and how many; None for a record of another type.

    The one fold of a view event, shared by this projection and the live hub so the two always
    count alike (upcasters included).
    """
    kind, version = record.type, record.schema_version
    if kind == _VIEWED and version == _VIEWED_VERSION:
        # The hot path: a current Viewed event is just its statement id, and the generic
        # decoder would cost more than everything else done per view.
        return str(record.data["statement_id"]), 1
    if kind == _IMPORTED and version == _IMPORTED_VERSION:
        data = record.data  # current: nothing to upcast, two fields to read
        return str(data["statement_id"]), int(data["count"])
    if kind not in VIEW_TYPES or kind == _BATCH:
        return None
    event = decode(record)
    if isinstance(event, Viewed):
        return event.statement_id, 1
    if isinstance(event, ViewsImported):
        return event.statement_id, event.count
    return None  # pragma: no cover - VIEW_TYPES holds only the types above


def batch_views(record: RecordedEvent) -> dict[tuple[str, int], int]:
    """A batch's views per (statement, UTC day number of the view's ``at``); empty for a record
    of another type. Shared by this projection and the live hub, as :func:`counted_views` is."""
    per_day: dict[tuple[str, int], int] = {}
    if record.type != _BATCH:
        return per_day
    get = per_day.get
    if record.schema_version == _BATCH_VERSION:
        # A batch's times are stored in UTC (the domain normalises them), so the first ten
        # characters are the view's UTC day; decoding a thousand datetimes would cost more.
        for view in record.data["views"]:
            key = (str(view["statement_id"]), _day_number(view["at"][:10]))
            per_day[key] = get(key, 0) + 1
        return per_day
    event = decode(record)
    assert isinstance(event, ViewsRecorded)
    for item in event.views:
        key = (item.statement_id, (item.at.astimezone(UTC).date() - _EPOCH_DAY).days)
        per_day[key] = get(key, 0) + 1
    return per_day


class ViewsProjection:
    """Sums views per statement and per statement per UTC day."""

    name = "views"
    version = 1
    types = VIEW_TYPES
    tables: Sequence[str] = TABLES

    async def create(self, conn: AsyncConnection, tables: TableNames) -> None:
        t = view_tables(tables)
        await create_tables(conn, (t.totals, t.days))

    async def apply(
        self, conn: AsyncConnection, events: Sequence[RecordedEvent], tables: TableNames
    ) -> None:
        t = view_tables(tables)
        # Summed per (statement, UTC day) first, totals from those: a rebuild folds a million
        # views, so per-view work is kept to one dict update (the day from the integer stamp,
        # not a datetime).
        per_day: dict[tuple[str, int], int] = {}
        get = per_day.get
        for record in events:
            if record.type == _BATCH:
                for key, n in batch_views(record).items():
                    per_day[key] = get(key, 0) + n
                continue
            counted = counted_views(record)
            if counted is None:  # pragma: no cover - the runner only hands us our types
                continue
            key = (counted[0], record.recorded_at_us // _US_PER_DAY)
            per_day[key] = get(key, 0) + counted[1]
        totals: collections.Counter[str] = collections.Counter()
        for (statement_id, _day), count in per_day.items():
            totals[statement_id] += count
        await upsert(
            conn,
            t.totals,
            [{"statement_id": s, "view_count": n} for s, n in sorted(totals.items())],
            ["statement_id"],
            add=("view_count",),
        )
        await upsert(
            conn,
            t.days,
            [
                {"statement_id": s, "day": _utc_day(d), "view_count": n}
                for (s, d), n in sorted(per_day.items())
            ],
            ["statement_id", "day"],
            add=("view_count",),
        )


_US_PER_DAY: Final = 86_400_000_000
_EPOCH_DAY: Final = date(1970, 1, 1)


@functools.lru_cache(maxsize=4096)
def _day_number(iso_day: str) -> int:
    return (date.fromisoformat(iso_day) - _EPOCH_DAY).days


@functools.lru_cache(maxsize=4096)
def _utc_day(days_since_epoch: int) -> date:
    return _EPOCH_DAY + timedelta(days=days_since_epoch)
