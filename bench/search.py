"""Search: the ranked statement list with a search text, on SQLite and PostgreSQL.

Over a demo log (1,000 statements; 200 with ``--quick``) projected into each database, every
query of a fixed set (one common word, a rarer word, several words, a prefix) asks
``ReadModels.statements(filter={search}, order=RELEVANCE, first=20)``: the page with its
total, relevance and snippets, as the API does. The figure is the median time of one such
query in milliseconds. The peer is the bare engine's top 20 for the same words: FTS5's
``MATCH ... ORDER BY bm25`` on SQLite, ``@@ ... ORDER BY ts_rank`` with the same stemming
configuration on PostgreSQL, with no total, snippet or statement columns.

Run: ``python -m bench --only search`` (``STATEMENTS_BENCH_DATABASE_URL`` names the PostgreSQL
server; a schema of its own is made and dropped).
"""

from __future__ import annotations

import asyncio
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable

import asyncpg
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from bench.common import Config, Result, progress
from domain.demo import demo_commands
from domain.handlers import StatementHandlers
from eventstore.memory import MemoryEventStore
from eventstore.projection_runner import ProjectionRunner
from eventstore.urls import create_engine
from graphql_api.service_layer.eventlog import StoreEventLog
from projections import all_projections
from projections.read_models import ReadModels
from projections.registry import event_registry
from projections.rows import StatementFilter, StatementOrder
from projections.search_text import TS_CONFIG, fts5_query, search_terms

QUERIES = {
    "common word": "talks",
    "rarer word": "nuclear",
    "three words": "Iran nuclear programme",
    "prefix": "secur*",
}
PAGE = 20


async def _log(statements: int) -> MemoryEventStore:
    store = MemoryEventStore()
    handlers = StatementHandlers(StoreEventLog(store, event_registry()))
    for command in demo_commands(statements, 0, seed=3):
        await handlers.handle(command)
    return store


async def _project(store: MemoryEventStore, engine: AsyncEngine) -> None:
    runner = ProjectionRunner(store, engine, all_projections())
    async with runner:
        if not await runner.wait_for(await store.head_position(), timeout=600):
            raise RuntimeError(f"projections did not catch up: {await runner.status()}")


async def _median_ms(call: Callable[[], Awaitable[object]], rounds: int) -> float:
    await call()  # warm the caches and the prepared statements
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        await call()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


def _bare(engine: AsyncEngine, text: str) -> Callable[[], Awaitable[object]]:
    terms = search_terms(text)
    if engine.dialect.name == "postgresql":
        # Every word through the stemming configuration, as plain a query as PostgreSQL has.
        words = " & ".join(
            w + (":*" if terms.prefix and i == len(terms.words) - 1 else "")
            for i, w in enumerate(terms.words)
        )
        sql = sa.text(
            f"SELECT statement_id FROM search WHERE document @@ to_tsquery('{TS_CONFIG}', :q) "
            f"ORDER BY ts_rank(document, to_tsquery('{TS_CONFIG}', :q)) DESC LIMIT {PAGE}"
        )
        params = {"q": words}
    else:
        sql = sa.text(
            "SELECT statement_id FROM search WHERE search MATCH :q "
            f"ORDER BY bm25(search) LIMIT {PAGE}"
        )
        params = {"q": fts5_query(terms)}

    async def call() -> object:
        async with engine.connect() as conn:
            return (await conn.execute(sql, params)).all()

    return call


async def _run(config: Config) -> list[Result]:
    statements = 200 if config.quick else 1_000
    rounds = 10 if config.quick else 50
    progress(f"search: a demo log of {statements:,} statements")
    store = await _log(statements)
    schema = f"bench_search_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(config.pg_url)
    await admin.execute(f'CREATE SCHEMA "{schema}"')
    engines = {
        "sqlite": create_engine(f"sqlite:///{config.tmp_dir / 'search.db'}"),
        "postgresql": create_engine(config.pg_url, schema=schema),
    }
    results = []
    try:
        for backend, engine in engines.items():
            progress(f"search: projecting into {backend}")
            await _project(store, engine)
            models = ReadModels(engine)
            for scenario, text in QUERIES.items():
                criteria = StatementFilter(search=text)

                async def ours(
                    criteria: StatementFilter = criteria, models: ReadModels = models
                ) -> object:
                    return await models.statements(criteria, StatementOrder.RELEVANCE, first=PAGE)

                ms = await _median_ms(ours, rounds)
                peer = await _median_ms(_bare(engine, text), rounds)
                results.append(Result(f"search, {scenario} ({text})", backend, "ms", ms, peer))
                progress(f"search: {backend} {scenario}: {ms:.1f} ms (bare {peer:.1f} ms)")
    finally:
        for engine in engines.values():
            await engine.dispose()
        await admin.execute(f'DROP SCHEMA "{schema}" CASCADE')
        await admin.close()
    return results


def run(config: Config) -> list[Result]:
    return asyncio.run(_run(config))
