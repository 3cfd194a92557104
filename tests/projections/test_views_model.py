"""View counts: totals, per UTC day, most viewed overall and over a window."""

from __future__ import annotations

from datetime import UTC, date, datetime

from sqlalchemy.ext.asyncio import AsyncEngine

from domain import events as E
from eventstore.memory import MemoryEventStore
from projections.queries import ReadModels
from projections.rows import DayCount, StatementOrder
from tests.projections.conftest import Clock, Log, Project, catch_up, rebuild_all, table_contents


async def test_totals_days_and_most_viewed(
    log: Log, clock: Clock, project: Project, models: ReadModels
) -> None:
    a = await log.publish(title="A")
    b = await log.publish(title="B")
    c = await log.publish(title="C")
    clock.now = datetime(2020, 7, 1, 23, 59, tzinfo=UTC)
    await log.import_views(a, 1000)  # lands on the day it was recorded
    await log.view(b, 3)
    clock.now = datetime(2020, 7, 2, 0, 1, tzinfo=UTC)
    await log.view(b, 2)
    clock.now = datetime(2020, 7, 10, 12, 0, tzinfo=UTC)
    await log.view(a, 1)
    await log.view(b, 4)
    await log.view(c, 6)
    await project(batch_size=3)

    assert await models.view_counts([a, b, c, "none"]) == {a: 1001, b: 9, c: 6, "none": 0}
    assert (await models.statements_by_ids([b]))[b].view_count == 9
    assert await models.views_by_day([a, b, "none"]) == {
        a: [DayCount(date(2020, 7, 1), 1000), DayCount(date(2020, 7, 10), 1)],
        b: [
            DayCount(date(2020, 7, 1), 3),
            DayCount(date(2020, 7, 2), 2),
            DayCount(date(2020, 7, 10), 4),
        ],
        "none": [],
    }
    assert await models.views_by_day([b], date(2020, 7, 2), date(2020, 7, 9)) == {
        b: [DayCount(date(2020, 7, 2), 2)]
    }
    overall = await models.most_viewed(2)
    assert [(row.id, n) for row, n in overall] == [(a, 1001), (b, 9)]
    # "Last 7 days" up to 10 July: only the views since 4 July count.
    recent = await models.most_viewed(10, since=date(2020, 7, 4))
    assert [(row.id, n) for row, n in recent] == [(c, 6), (b, 4), (a, 1)]
    assert recent[1][0].view_count == 9  # the row still carries the all-time total
    since_second = await models.most_viewed(10, since=date(2020, 7, 2))
    # Ties are broken by statement id.
    expected = sorted([(b, 6), (c, 6), (a, 1)], key=lambda pair: (-pair[1], pair[0]))
    assert [(row.id, n) for row, n in since_second] == expected
    ordered = await models.statements(order=StatementOrder.MOST_VIEWED, first=3)
    assert [r.id for r in ordered.items] == [a, b, c]


async def test_batch_equals_one_by_one(
    log: Log, clock: Clock, store: MemoryEventStore, engine: AsyncEngine, models: ReadModels
) -> None:
    a = await log.publish()
    for day in (1, 1, 2, 3, 3, 3):
        clock.now = datetime(2020, 7, day, 8, tzinfo=UTC)
        await log.view(a, day)
        await log.import_views(a, 10 * day, source=f"s{day}-{clock.now.timestamp()}")
    await catch_up(store, engine, batch_size=1)
    one_by_one = await table_contents(engine)
    assert (await models.view_counts([a]))[a] == sum(11 * d for d in (1, 1, 2, 3, 3, 3))
    await rebuild_all(store, engine)
    assert await table_contents(engine) == one_by_one


async def test_a_batch_counts_each_view_on_the_utc_day_of_its_time(
    log: Log, clock: Clock, store: MemoryEventStore, engine: AsyncEngine, models: ReadModels
) -> None:
    a = await log.publish()
    b = await log.publish()
    clock.now = datetime(2020, 7, 9, 8, tzinfo=UTC)
    late = datetime(2020, 7, 1, 23, 59, 59, tzinfo=UTC)
    views = (E.ViewAt(a, late), E.ViewAt(b, late), E.ViewAt(a, datetime(2020, 7, 2, tzinfo=UTC)))
    await log.append("view-batch-1", E.ViewsRecorded(batch_id="1", views=views))
    await log.view(a)
    await catch_up(store, engine, batch_size=2)
    assert await models.view_counts([a, b]) == {a: 3, b: 1}
    assert await models.views_by_day([a, b]) == {
        a: [
            DayCount(date(2020, 7, 1), 1),
            DayCount(date(2020, 7, 2), 1),
            DayCount(date(2020, 7, 9), 1),
        ],
        b: [DayCount(date(2020, 7, 1), 1)],
    }
    projected = await table_contents(engine)
    await rebuild_all(store, engine)
    assert await table_contents(engine) == projected
