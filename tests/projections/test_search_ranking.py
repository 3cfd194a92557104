"""Search on SQLite and PostgreSQL alike: the demo data in both, a fixed set of queries, the
same statements found, the same relevance, the same top results."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from domain.demo import demo_commands
from domain.handlers import StatementHandlers
from eventstore.memory import MemoryEventStore
from eventstore.urls import create_engine
from graphql_api.service_layer.eventlog import StoreEventLog
from projections.read_models import ReadModels
from projections.registry import event_registry
from projections.rows import StatementFilter, StatementOrder, StatementRow
from projections.search_sql import SNIPPET_START
from tests.projections.conftest import catch_up

STATEMENTS = 400
TOP = 5
FETCHED = 50
#: Relevance values closer than this (relatively) are equal: a tie.
TOLERANCE = 1e-9

QUERIES = [
    # single words, in several forms
    "talks",
    "talk",
    "discuss",
    "discussed",
    "nuclear",
    "Lavrov",
    "Ryabkov",
    "settlement",
    "cooperate",
    "US",
    # several words, some rare and some common
    "Iran nuclear programme",
    "Geneva talks",
    "international law",
    "Security Council",
    "Russia's position",
    "Deputy Foreign Minister interview",
    "Syria dialogue partners",
    # prefixes
    "nucl*",
    "Geneva tal*",
    "coop*",
    "Ukr*",
]


@pytest.fixture
async def demo_log() -> MemoryEventStore:
    store = MemoryEventStore()
    handlers = StatementHandlers(StoreEventLog(store, event_registry()))
    for command in demo_commands(STATEMENTS, 0, seed=5):
        await handlers.handle(command)
    return store


@pytest.fixture
async def engines(
    demo_log: MemoryEventStore, tmp_path: Path, pg_schema: tuple[str, str]
) -> AsyncIterator[dict[str, AsyncEngine]]:
    url, schema = pg_schema
    made = {
        "sqlite": create_engine(f"sqlite:///{tmp_path / 'read.db'}"),
        "postgresql": create_engine(url, schema=schema),
    }
    for engine in made.values():
        await catch_up(demo_log, engine)
    yield made
    for engine in made.values():
        await engine.dispose()


def _close(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=TOLERANCE)


def _rank(row: StatementRow) -> float:
    assert row.rank is not None
    return row.rank


@pytest.mark.postgres
async def test_both_databases_find_and_rank_alike(engines: dict[str, AsyncEngine]) -> None:
    lite, pg = ReadModels(engines["sqlite"]), ReadModels(engines["postgresql"])
    for text in QUERIES:
        criteria = StatementFilter(search=text)
        a = await lite.statements(criteria, StatementOrder.RELEVANCE, first=FETCHED)
        b = await pg.statements(criteria, StatementOrder.RELEVANCE, first=FETCHED)
        assert a.total_count == b.total_count > 0, text
        # The same relevance for the same statement.
        ranks = {r.id: _rank(r) for r in a.items}
        for row in b.items:
            if row.id in ranks:
                assert _close(_rank(row), ranks[row.id]), (text, row.id)
        # The same top results; statements of equal relevance may trade places.
        top_a, top_b = a.items[:TOP], b.items[:TOP]
        assert len(top_a) == len(top_b), text
        for mine, theirs in zip(top_a, top_b, strict=True):
            assert theirs.id in ranks, (text, theirs.id)
            assert _close(ranks[theirs.id], _rank(mine)), (text, [r.id for r in top_a])
        # Both mark what matched.
        for row in (*top_a, *top_b):
            assert row.snippet and SNIPPET_START in row.snippet, (text, row.snippet)
    await _assert_statistics_agree_with_fts5(engines)


async def _assert_statistics_agree_with_fts5(engines: dict[str, AsyncEngine]) -> None:
    # PostgreSQL's relevance uses search_stats where FTS5 uses its own counts: they must be
    # equal, which also shows that both databases index the same words.
    async with engines["sqlite"].connect() as conn:
        await conn.exec_driver_sql(
            "CREATE VIRTUAL TABLE temp.search_vocab USING fts5vocab('main', 'search', 'row')"
        )
        fts5_tokens = (await conn.execute(sa.text("SELECT sum(cnt) FROM search_vocab"))).scalar()
        fts5_rows = (await conn.execute(sa.text("SELECT count(*) FROM search"))).scalar()
        lite = (await conn.execute(sa.text("SELECT documents, tokens FROM search_stats"))).one()
    async with engines["postgresql"].connect() as conn:
        pg = (await conn.execute(sa.text("SELECT documents, tokens FROM search_stats"))).one()
        lengths = (await conn.execute(sa.text("SELECT count(*), sum(length) FROM search"))).one()
    assert tuple(lite) == tuple(pg) == (fts5_rows, fts5_tokens) == tuple(lengths)
    assert 0 < fts5_rows <= STATEMENTS
