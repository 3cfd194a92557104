"""Every ReadModels method issues exactly one SQL statement (the GraphQL layer's budget).

Statements are counted with :func:`eventstore.reader.on_statement`, which sees both those sent
through the engine (SQLAlchemy's ``before_cursor_execute``) and those of its fast reader.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import date
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from eventstore.reader import on_statement
from projections.read_models import ReadModels
from projections.rows import StatementFilter, StatementOrder
from tests.projections.conftest import LAVROV, Log, Project

Call = Callable[[ReadModels, list[str], str], Awaitable[Any]]

CALLS: dict[str, Call] = {
    "statements_by_ids": lambda m, ids, cursor: m.statements_by_ids(ids),
    "statements_by_slugs": lambda m, ids, cursor: m.statements_by_slugs(["a", "b"]),
    "topics_of": lambda m, ids, cursor: m.topics_of(ids),
    "related_of": lambda m, ids, cursor: m.related_of(ids),
    "related_statements_of": lambda m, ids, cursor: m.related_statements_of(ids),
    "ministers_by_ids": lambda m, ids, cursor: m.ministers_by_ids([LAVROV.id]),
    "ministers": lambda m, ids, cursor: m.ministers(),
    "minister_topics": lambda m, ids, cursor: m.minister_topics([LAVROV.id, "x"], 3),
    "topics_by_slugs": lambda m, ids, cursor: m.topics_by_slugs(["syria"]),
    "topics": lambda m, ids, cursor: m.topics(first=2),
    "statements": lambda m, ids, cursor: m.statements(first=2, after=cursor),
    "statements_backwards": lambda m, ids, cursor: m.statements(last=2, before=cursor),
    "statements_filtered": lambda m, ids, cursor: m.statements(
        StatementFilter(
            minister_id=LAVROV.id,
            topic="syria",
            from_date=date(2000, 1, 1),
            to_date=date(2100, 1, 1),
            kind="comment",
        ),
        StatementOrder.MOST_VIEWED,
        first=5,
    ),
    "statements_search": lambda m, ids, cursor: m.statements(
        StatementFilter(search="first paragraph"), StatementOrder.RELEVANCE, first=5
    ),
    "statements_for_ministers": lambda m, ids, cursor: m.statements_for_ministers(
        [LAVROV.id, "x"], first=2, after=cursor
    ),
    "statements_for_topics": lambda m, ids, cursor: m.statements_for_topics(["syria"], first=2),
    "statements_for_minister_topics": lambda m, ids, cursor: m.statements_for_minister_topics(
        [(LAVROV.id, "syria"), (LAVROV.id, "x"), ("x", "syria")], first=2, after=cursor
    ),
    "statements_for_months": lambda m, ids, cursor: m.statements_for_months(
        [(2020, 7), (2020, 6)], first=2
    ),
    "archive": lambda m, ids, cursor: m.archive(),
    "most_viewed": lambda m, ids, cursor: m.most_viewed(5),
    "most_viewed_since": lambda m, ids, cursor: m.most_viewed(5, since=date(2020, 1, 1)),
    "views_by_day": lambda m, ids, cursor: m.views_by_day(ids, date(2020, 1, 1), date(2030, 1, 1)),
    "view_counts": lambda m, ids, cursor: m.view_counts(ids),
}


@pytest.mark.parametrize("name", sorted(CALLS))
async def test_one_statement_per_call(
    name: str, log: Log, project: Project, engine: AsyncEngine, models: ReadModels
) -> None:
    ids = [await log.publish() for _ in range(4)]
    for sid in ids:
        await log.tag(sid, "Syria")
        await log.view(sid, 2)
    await log.link(ids[0], ids[1])
    await project()
    cursor = (await models.statements(first=2)).cursors[-1]

    statements: list[str] = []
    stop = on_statement(engine, lambda statement, _params: statements.append(statement))
    try:
        await CALLS[name](models, ids, cursor)
    finally:
        stop()
    assert len(statements) == 1, statements


async def test_empty_batches_issue_no_statement(engine: AsyncEngine, models: ReadModels) -> None:
    statements: list[str] = []
    stop = on_statement(engine, lambda statement, _params: statements.append(statement))
    try:
        assert await models.statements_by_ids([]) == {}
        assert await models.related_of([]) == {}
        assert await models.related_statements_of([]) == {}
        assert await models.statements_for_topics([], first=3) == {}
        assert await models.statements_for_months([], first=3) == {}
        assert await models.statements_for_minister_topics([], first=3) == {}
        assert await models.view_counts([]) == {}
    finally:
        stop()
    assert statements == []


async def test_reader_and_engine_statements_are_both_counted(
    log: Log, project: Project, engine: AsyncEngine, models: ReadModels
) -> None:
    """The fast methods run on the reader, the cold ones on the engine: both are seen once."""
    sid = await log.publish()
    await project()
    statements: list[str] = []
    stop = on_statement(engine, lambda statement, _params: statements.append(statement))
    try:
        assert sid in await models.statements_by_ids([sid])  # the reader
        assert (await models.most_viewed(5)) == []  # the engine
    finally:
        stop()
    assert len(statements) == 2, statements
    statements.clear()
    await models.statements_by_ids([sid])
    assert statements == []  # stopped listening
