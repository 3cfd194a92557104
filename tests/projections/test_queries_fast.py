"""The fast read path of ReadModels: pages with and without totals, nested pages for many
parents, values converted as SQLAlchemy's types did, and cursors whose keys no row can have."""

from __future__ import annotations

import base64
import dataclasses
import json
from datetime import date, datetime, timedelta
from typing import Any

import pytest

from projections.read_models import ReadModels
from projections.rows import Page, StatementFilter, StatementOrder, StatementRow
from tests.projections.conftest import LAVROV, MSK, RYABKOV, Log, Project

START = datetime(2020, 1, 30, 12, 0, tzinfo=MSK)


async def _publish(log: Log, count: int) -> list[str]:
    """Statements by two ministers, two per instant (ids break ties), across two months."""
    ids = []
    for i in range(count):
        minister = LAVROV if i % 3 else RYABKOV
        published_at = START + timedelta(days=i // 2)
        sid = await log.publish(minister=minister, published_at=published_at)
        await log.tag(sid, "Syria" if i % 2 else "Peace")
        ids.append(sid)
    return ids


def _shape(page: Page[StatementRow]) -> tuple[Any, ...]:
    return ([r.id for r in page.items], page.cursors, page.has_next, page.has_previous)


async def test_filtered_pages_without_totals_are_the_same_pages(
    log: Log, project: Project, models: ReadModels
) -> None:
    # A filtered list is not the fast path: its page is joined to a row of counts, which must
    # stay one row when nothing is counted (it was one per matching statement: the first
    # statement came back `first` times, and a filter matching nothing raised).
    ids = await _publish(log, 7)
    await project()
    filters = [
        StatementFilter(minister_id=LAVROV.id),
        StatementFilter(topic="syria"),
        StatementFilter(kind="comment"),
        StatementFilter(search="talks"),
        StatementFilter(from_date=START.date()),
    ]
    for criteria in filters:
        for order in (StatementOrder.PUBLISHED_DESC, StatementOrder.PUBLISHED_ASC):
            counted = await models.statements(criteria, order, first=3)
            uncounted = await models.statements(criteria, order, first=3, with_total=False)
            assert counted.items, criteria
            assert _shape(counted) == _shape(uncounted), criteria
            assert len({r.id for r in uncounted.items}) == len(uncounted.items)
            assert {r.id for r in uncounted.items} <= set(ids)
    for criteria in (StatementFilter(kind="no such kind"), StatementFilter(search="2024-13-45")):
        for with_total in (True, False):
            page = await models.statements(criteria, first=3, with_total=with_total)
            assert page.items == [] and not page.has_next and not page.has_previous


async def test_pages_without_totals_are_the_same_pages(
    log: Log, project: Project, models: ReadModels
) -> None:
    ids = await _publish(log, 13)
    await log.withdraw(ids[4])
    await project()

    for order in (StatementOrder.PUBLISHED_DESC, StatementOrder.PUBLISHED_ASC):
        after: str | None = None
        seen = []
        while True:
            counted = await models.statements(order=order, first=4, after=after)
            uncounted = await models.statements(order=order, first=4, after=after, with_total=False)
            assert counted.total_count == 12 and uncounted.total_count == -1
            assert _shape(counted) == _shape(uncounted)
            seen += [r.id for r in counted.items]
            if not counted.has_next:
                break
            after = counted.cursors[-1]
        assert sorted(seen) == sorted(set(ids) - {ids[4]})
        # Backwards from a middle cursor, and both cursors at once.
        middle = (await models.statements(order=order, first=6)).cursors[-1]
        back = await models.statements(order=order, last=3, before=middle)
        assert _shape(back) == _shape(
            await models.statements(order=order, last=3, before=middle, with_total=False)
        )
        assert back.has_previous and back.has_next
        first = (await models.statements(order=order, first=1)).cursors[0]
        between = await models.statements(order=order, first=10, after=first, before=middle)
        assert len(between.items) == 4 and between.has_previous and between.has_next

    minister_pages = await models.statements_for_ministers([LAVROV.id, RYABKOV.id], first=2)
    cursor = minister_pages[LAVROV.id].cursors[-1]
    for with_total in (True, False):
        for call in (
            models.statements_for_ministers(
                [LAVROV.id, RYABKOV.id], 3, cursor, with_total=with_total
            ),
            models.statements_for_topics(["syria", "peace"], 3, cursor, with_total=with_total),
            models.statements_for_months([(2020, 1), (2020, 2)], 3, cursor, with_total=with_total),
        ):
            pages = await call
            for page in pages.values():
                assert (page.total_count == -1) == (not with_total)
    counted_pages = await models.statements_for_topics(["syria", "peace"], 3, cursor)
    uncounted_pages = await models.statements_for_topics(
        ["syria", "peace"], 3, cursor, with_total=False
    )
    assert {k: _shape(p) for k, p in counted_pages.items()} == {
        k: _shape(p) for k, p in uncounted_pages.items()
    }
    assert counted_pages["syria"].total_count == 6  # ids[4] (withdrawn) was tagged Peace
    assert counted_pages["peace"].total_count == 6


async def test_nested_pages_for_more_parents_than_one_compound_holds(
    log: Log, project: Project, models: ReadModels
) -> None:
    """SQLite takes at most 500 terms in a compound SELECT: 1,200 parents still give one
    statement and every parent its page, in the order asked."""
    ids = await _publish(log, 6)
    await project()
    parents = [f"nobody-{i}" for i in range(1_200)]
    parents[7] = LAVROV.id
    parents[1_150] = RYABKOV.id
    pages = await models.statements_for_ministers(parents, first=2)
    assert list(pages) == parents
    assert pages[LAVROV.id].total_count == 4 and len(pages[LAVROV.id].items) == 2
    assert [r.id for r in pages[RYABKOV.id].items] == [ids[3], ids[0]]
    assert all(pages[p].items == [] and pages[p].total_count == 0 for p in parents[:7])
    months = [(2030 + i // 12, i % 12 + 1) for i in range(600)] + [(2020, 1)]
    by_month = await models.statements_for_months(months, first=1)
    assert list(by_month) == months
    assert by_month[(2020, 1)].total_count == 4 and by_month[(2020, 1)].has_next


async def test_values_are_converted_as_before(
    log: Log, project: Project, models: ReadModels
) -> None:
    sid = await log.publish(
        published_at=datetime(2020, 7, 10, 23, 30, tzinfo=MSK),
        occurred_on=date(2020, 7, 9),
        paragraphs=("Ünïcode ✓", "two"),
        location=None,
        source_url=None,
    )
    await log.view(sid, 3)
    await log.withdraw(sid)
    await project()
    row = (await models.statements_by_ids([sid]))[sid]
    assert row.occurred_on == date(2020, 7, 9) and type(row.occurred_on) is date
    assert row.published_at == datetime(2020, 7, 10, 23, 30, tzinfo=MSK)
    assert row.published_at.utcoffset() == timedelta(hours=3)
    assert row.paragraphs == ("Ünïcode ✓", "two")
    assert row.location is None and row.source_url is None
    assert row.withdrawn is True and row.view_count == 3 and row.version == 2
    assert (await models.statements_by_slugs([row.slug]))[row.slug] == row
    # A row as read decodes some fields on demand; its fields and hash are those of a row
    # built with every value.
    built = StatementRow(**{f.name: getattr(row, f.name) for f in dataclasses.fields(row)})
    assert dataclasses.astuple(built) == dataclasses.astuple(row) and hash(built) == hash(row)
    assert type(row.version) is int and type(row.view_count) is int


def _cursor(payload: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(payload).encode()).decode().rstrip("=")


@pytest.mark.parametrize("key", [2**63, -(2**63) - 1, 10**30])
async def test_cursor_keys_beyond_bigint_are_invalid(
    key: int, project: Project, models: ReadModels
) -> None:
    await project()
    cursor = _cursor(["p", key, "id"])
    with pytest.raises(ValueError, match=r"^after: not a valid cursor"):
        await models.statements(first=1, after=cursor)
    with pytest.raises(ValueError, match=r"^after: not a valid cursor"):
        await models.statements_for_topics(["syria"], first=1, after=cursor)
    # The extremes themselves are keys a row could have.
    for edge in (2**63 - 1, -(2**63)):
        page = await models.statements(first=1, after=_cursor(["p", edge, "id"]))
        assert page.items == []
