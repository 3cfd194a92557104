"""Time travel: a statement as it stood at a log position or at a moment, replayed from the log.

The answer never comes from the read models. A :class:`Moment` selects a prefix of each stream:
the events at or before ``position`` (a global log position) and recorded at or before
``time`` (the store's ``recorded_at``, when the event was logged). A stream's prefix ends at its
first event that falls outside, so a clock that stepped back never lets a later event in.

* The statement: its stream's prefix, decoded by the registry (upcasters included) and folded
  with the domain's :func:`domain.statement.replay`. No event in the prefix means the statement
  did not exist yet: None.
* Its views: the prefix of its view stream, counted per UTC day of ``recorded_at`` as the views
  projection counts them (``Viewed`` adds 1, ``ViewsImported`` its count). A view stream can be
  long, so it is read only when the caller asks for views.
* A slug: the first event of its ``slug-`` stream (the reservation), if it falls inside.
* The history: the statement stream's prefix, as recorded (the audit fields show it raw).
"""

from __future__ import annotations

import collections
import contextlib
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass
from datetime import UTC, date, datetime

from domain.events import SlugReserved, Viewed, ViewsImported
from domain.statement import StatementState, replay
from domain.streams import slug_stream, statement_stream, views_stream
from eventstore import EventRegistry, EventStore, RecordedEvent
from projections.paging import FROM_AFTER_TO
from projections.rows import DayCount


@dataclass(frozen=True, slots=True)
class Moment:
    """A prefix of the log: at or before ``position`` and recorded at or before ``time``."""

    position: int | None = None
    time: datetime | None = None

    @classmethod
    def of(cls, at_position: int | None, as_of: datetime | None) -> Moment:
        """The moment an API call names; raises ValueError for a meaningless one."""
        if at_position is not None and as_of is not None:
            raise ValueError("asOf: cannot be combined with atPosition")
        if at_position is not None and at_position < 0:
            raise ValueError(f"atPosition: must not be negative, got {at_position}")
        if as_of is not None and (as_of.tzinfo is None or as_of.utcoffset() is None):
            raise ValueError(
                "asOf: must include a timezone offset (for example 2024-03-01T12:00:00Z)"
            )
        return cls(at_position, as_of)

    def includes(self, record: RecordedEvent) -> bool:
        if self.position is not None and record.position > self.position:
            return False
        return self.time is None or record.recorded_at <= self.time


@dataclass(frozen=True, slots=True)
class ViewsAsOf:
    """A statement's views up to a moment: the total and the count per UTC day."""

    total: int
    days: tuple[DayCount, ...]

    def between(self, from_date: date | None, to_date: date | None) -> list[DayCount]:
        """The days within [from_date, to_date] (inclusive), oldest first."""
        if from_date is not None and to_date is not None and from_date > to_date:
            raise ValueError(FROM_AFTER_TO)
        return [
            d
            for d in self.days
            if (from_date is None or d.day >= from_date) and (to_date is None or d.day <= to_date)
        ]


@dataclass(frozen=True, slots=True)
class StatementAsOf:
    """A statement replayed from its stream's prefix, with the prefix's last version."""

    state: StatementState
    version: int
    position: int  # of the last event of the statement's stream inside the moment
    recorded_at: datetime
    moment: Moment
    views: ViewsAsOf | None  # None when views were not asked for


async def _prefix(
    store: EventStore, stream_id: str, moment: Moment | None
) -> AsyncGenerator[RecordedEvent, None]:
    records = store.read_stream(stream_id)
    try:
        async for record in records:
            if moment is not None and not moment.includes(record):
                return
            yield record
    finally:
        await aclose(records)


async def aclose(iterator: AsyncIterator[object]) -> None:
    """Close an async iterator left early (a store's reads are async generators)."""
    close = getattr(iterator, "aclose", None)
    if close is not None:
        await close()


async def history(
    store: EventStore, statement_id: str, moment: Moment | None = None
) -> list[RecordedEvent]:
    """The events of a statement's stream (within ``moment``), in order."""
    async with contextlib.aclosing(_prefix(store, statement_stream(statement_id), moment)) as it:
        return [record async for record in it]


async def statement_as_of(
    store: EventStore,
    registry: EventRegistry,
    statement_id: str,
    moment: Moment,
    *,
    with_views: bool,
) -> StatementAsOf | None:
    """The statement as it stood at ``moment``; None if it had not been published then."""
    records = await history(store, statement_id, moment)
    if not records:
        return None
    state = replay(registry.decode(record) for record in records)
    views = await views_as_of(store, registry, statement_id, moment) if with_views else None
    last = records[-1]
    return StatementAsOf(state, last.version, last.position, last.recorded_at, moment, views)


async def views_as_of(
    store: EventStore, registry: EventRegistry, statement_id: str, moment: Moment
) -> ViewsAsOf:
    """The statement's views counted from its view stream's prefix."""
    viewed, _ = registry.type_of(Viewed)
    imported, _ = registry.type_of(ViewsImported)
    per_day: collections.Counter[date] = collections.Counter()
    async with contextlib.aclosing(_prefix(store, views_stream(statement_id), moment)) as it:
        async for record in it:
            if record.type == viewed:
                count = 1
            elif record.type == imported:
                event = registry.decode(record)
                assert isinstance(event, ViewsImported)
                count = event.count
            else:
                continue
            per_day[record.recorded_at.astimezone(UTC).date()] += count
    days = tuple(DayCount(day, n) for day, n in sorted(per_day.items()))
    return ViewsAsOf(sum(per_day.values()), days)


async def statement_id_for_slug(
    store: EventStore, registry: EventRegistry, slug: str, moment: Moment
) -> str | None:
    """The statement that had reserved ``slug`` at ``moment`` (the first reservation wins)."""
    async with contextlib.aclosing(_prefix(store, slug_stream(slug), moment)) as it:
        async for record in it:
            event = registry.decode(record)
            if isinstance(event, SlugReserved):
                return event.statement_id
    return None
