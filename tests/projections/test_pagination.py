"""Keyset pagination: forwards, backwards, stable cursors, counts, nested pages, bad input."""

from __future__ import annotations

import base64
import json
from datetime import date, datetime, timedelta
from typing import Any

import pytest

from projections.read_models import ReadModels
from projections.rows import StatementFilter, StatementOrder
from tests.projections.conftest import LAVROV, MSK, RYABKOV, ZAKHAROVA, Log, Project

START = datetime(2020, 1, 1, 12, 0, tzinfo=MSK)


async def _publish_many(log: Log, count: int, **options: Any) -> list[str]:
    """Statements one day apart; two share each instant so that ids break ties."""
    ids = []
    for i in range(count):
        ids.append(await log.publish(published_at=START + timedelta(days=i // 2), **options))
    return ids


def _newest_first(log: Log, ids: list[str]) -> list[str]:
    return sorted(ids, key=lambda i: (log.published[i].published_at, i), reverse=True)


async def test_forwards_and_backwards(log: Log, project: Project, models: ReadModels) -> None:
    ids = await _publish_many(log, 11)
    await project()
    expected = _newest_first(log, ids)

    pages = []
    after = None
    while True:
        page = await models.statements(first=4, after=after)
        pages.append(page)
        assert page.total_count == 11
        assert len(page.cursors) == len(page.items)
        if not page.has_next:
            break
        after = page.cursors[-1]
    assert [len(p.items) for p in pages] == [4, 4, 3]
    assert [r.id for p in pages for r in p.items] == expected
    assert [p.has_previous for p in pages] == [False, True, True]

    # Backwards from the end, with last/before, gives the same pages' items.
    last_page = await models.statements(last=3)
    assert [r.id for r in last_page.items] == expected[-3:]
    assert last_page.has_previous and not last_page.has_next
    middle = await models.statements(last=4, before=last_page.cursors[0])
    assert [r.id for r in middle.items] == expected[4:8]
    assert middle.cursors == pages[1].cursors  # the same rows have the same cursors
    assert middle.has_next and middle.has_previous
    start = await models.statements(last=10, before=middle.cursors[0])
    assert [r.id for r in start.items] == expected[:4]
    assert not start.has_previous and start.has_next

    # Between two cursors.
    between = await models.statements(
        first=10, after=pages[0].cursors[0], before=pages[1].cursors[1]
    )
    assert [r.id for r in between.items] == expected[1:5]
    assert between.has_previous and between.has_next

    # Oldest first.
    ascending = await models.statements(order=StatementOrder.PUBLISHED_ASC, first=5)
    assert [r.id for r in ascending.items] == expected[::-1][:5]
    page = await models.statements(
        order=StatementOrder.PUBLISHED_ASC, first=5, after=ascending.cursors[-1]
    )
    assert [r.id for r in page.items] == expected[::-1][5:10]

    # A page of 0 still counts.
    zero = await models.statements(first=0)
    assert zero.items == [] and zero.total_count == 11 and zero.has_next


async def test_cursors_are_stable_while_statements_arrive(
    log: Log, project: Project, models: ReadModels
) -> None:
    ids = await _publish_many(log, 6)
    await project()
    expected = _newest_first(log, ids)
    first = await models.statements(first=3)
    # Newer statements and a withdrawal of a seen one do not shift the next page.
    await log.publish(published_at=START + timedelta(days=30))
    await log.withdraw(expected[0])
    await project()
    second = await models.statements(first=3, after=first.cursors[-1])
    assert [r.id for r in second.items] == expected[3:6]
    assert second.total_count == 6 and second.has_previous and not second.has_next
    # Past the end: an empty page that still knows the total.
    beyond = await models.statements(first=3, after=second.cursors[-1])
    assert beyond.items == [] and beyond.total_count == 6
    assert beyond.has_previous and not beyond.has_next


async def test_topics_page(log: Log, project: Project, models: ReadModels) -> None:
    sids = [await log.publish() for _ in range(4)]
    for n, sid in enumerate(sids):
        await log.tag(sid, *[f"Topic {chr(97 + k)}" for k in range(n + 1)])
    await project()
    first = await models.topics(first=2)
    assert [(t.slug, t.statement_count) for t in first.items] == [("topic-a", 4), ("topic-b", 3)]
    assert first.total_count == 4 and first.has_next and not first.has_previous
    rest = await models.topics(first=5, after=first.cursors[-1])
    assert [t.slug for t in rest.items] == ["topic-c", "topic-d"]
    assert not rest.has_next and rest.has_previous


async def test_nested_pages_per_parent(log: Log, project: Project, models: ReadModels) -> None:
    lavrov = await _publish_many(log, 5, minister=LAVROV)
    ryabkov = await _publish_many(log, 2, minister=RYABKOV)
    for sid in lavrov[:3] + ryabkov[:1]:
        await log.tag(sid, "Syria")
    await project()
    pages = await models.statements_for_ministers(
        [LAVROV.id, RYABKOV.id, ZAKHAROVA.id, LAVROV.id], first=2
    )
    assert set(pages) == {LAVROV.id, RYABKOV.id, ZAKHAROVA.id}
    assert [r.id for r in pages[LAVROV.id].items] == _newest_first(log, lavrov)[:2]
    assert pages[LAVROV.id].total_count == 5 and pages[LAVROV.id].has_next
    assert [r.id for r in pages[RYABKOV.id].items] == _newest_first(log, ryabkov)
    assert pages[RYABKOV.id].total_count == 2 and not pages[RYABKOV.id].has_next
    assert pages[ZAKHAROVA.id].total_count == 0 and pages[ZAKHAROVA.id].items == []
    # The same cursor pages every parent.
    more = await models.statements_for_ministers(
        [LAVROV.id], first=2, after=pages[LAVROV.id].cursors[-1]
    )
    assert [r.id for r in more[LAVROV.id].items] == _newest_first(log, lavrov)[2:4]
    assert more[LAVROV.id].has_previous and more[LAVROV.id].has_next
    assert more[LAVROV.id].total_count == 5
    # Past every row of a parent: its page is empty but still counts.
    oldest = (await models.statements(order=StatementOrder.PUBLISHED_ASC, first=1)).cursors[0]
    done = await models.statements_for_ministers([LAVROV.id, RYABKOV.id], first=2, after=oldest)
    assert [(p.items, p.total_count, p.has_previous, p.has_next) for p in done.values()] == [
        ([], 5, True, False),
        ([], 2, True, False),
    ]
    # Nested cursors are the list's cursors: the top-level list continues from them too.
    filtered = await models.statements(
        StatementFilter(minister_id=LAVROV.id), first=2, after=pages[LAVROV.id].cursors[-1]
    )
    assert filtered.cursors == more[LAVROV.id].cursors

    topics = await models.statements_for_topics(["syria"], first=3)
    assert [r.id for r in topics["syria"].items] == _newest_first(log, lavrov[:3] + ryabkov[:1])[:3]
    assert topics["syria"].total_count == 4 and topics["syria"].has_next

    months = await models.statements_for_months([(2020, 1)], first=100)
    assert months[(2020, 1)].total_count == 7 and len(months[(2020, 1)].items) == 7


def _cursor(payload: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(payload).encode()).decode().rstrip("=")


BAD_CURSORS = [
    "",
    "not base64!",
    "%%%",
    _cursor({"a": 1}),
    _cursor(["p", 1]),
    _cursor(["p", "1", "id"]),
    _cursor(["p", True, "id"]),
    _cursor(["v", 1, "id"]),  # a cursor of another ordering
    _cursor(["p", 1.5, "id"]),
    _cursor(["p", 1, 2]),
    "x" * 2000,
    base64.urlsafe_b64encode(b"\xff\xfe").decode(),
]


@pytest.mark.parametrize("cursor", BAD_CURSORS)
async def test_bad_cursors(cursor: str, models: ReadModels, project: Project) -> None:
    await project()
    with pytest.raises(ValueError, match=r"^after: not a valid cursor"):
        await models.statements(first=1, after=cursor)
    with pytest.raises(ValueError, match=r"^before: not a valid cursor"):
        await models.statements(last=1, before=cursor)
    with pytest.raises(ValueError, match=r"^after: not a valid cursor"):
        await models.statements_for_ministers(["m"], first=1, after=cursor)


async def test_relevance_cursor_rejects_nan(models: ReadModels, project: Project) -> None:
    await project()
    nan = base64.urlsafe_b64encode(b'["r",NaN,"x"]').decode()
    with pytest.raises(ValueError, match=r"^after: not a valid cursor"):
        await models.statements(
            StatementFilter(search="x"), StatementOrder.RELEVANCE, first=1, after=nan
        )


async def test_bad_arguments(models: ReadModels, project: Project) -> None:
    await project()
    cases: list[tuple[str, Any]] = [
        ("first", models.statements(first=101)),
        ("first", models.statements(first=-1)),
        ("first", models.statements(first=True)),
        ("last", models.statements(last=1000)),
        ("first", models.statements(first=1, last=1)),
        (
            "from",
            models.statements(
                StatementFilter(from_date=date(2020, 2, 1), to_date=date(2020, 1, 1))
            ),
        ),
        ("orderBy", models.statements(order="published")),  # type: ignore[arg-type]
        ("search", models.statements(StatementFilter(search="x" * 1000))),
        ("first", models.topics(first=500)),
        ("first", models.statements_for_topics(["a"], first=101)),
        ("first", models.statements_for_months([(2020, 1)], first=-5)),
        ("months", models.statements_for_months([(2020, 13)], first=1)),
        ("months", models.statements_for_months(["2020-01"], first=1)),  # type: ignore[list-item]
        ("limit", models.minister_topics(["a"], limit=1000)),
        ("first", models.most_viewed(1000)),
        ("ids", models.statements_by_ids("abc")),
        ("ids", models.statements_by_ids([1, 2])),  # type: ignore[list-item]
        ("ids", models.statements_by_ids([str(i) for i in range(10_001)])),
        ("from", models.views_by_day(["a"], date(2020, 2, 1), date(2020, 1, 1))),
        ("since", models.most_viewed(1, since="2020-01-01")),  # type: ignore[arg-type]
    ]
    for argument, call in cases:
        with pytest.raises(ValueError, match=rf"^{argument}: "):
            await call
