"""Tagging a statement that has a million recorded views (target: under 10 ms).

Ours keeps views in a stream of their own, so tagging loads only the statement's handful of
events. The peer is the design this avoids, measured in the same run on the same store: one
stream per statement holding its views too, which a handler must replay before deciding.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import statistics
import time
import uuid

from bench.common import Config, Result, pg_schema, progress, sqlite_file
from domain.commands import CommandMetadata, PublishStatement, TagStatement
from domain.events import MinisterRef, Viewed
from domain.handlers import StatementHandlers
from domain.statement import replay
from domain.streams import statement_stream, views_stream
from eventstore import ANY, EventStore, NewEvent, open_store
from graphql_api.service_layer.eventlog import StoreEventLog
from projections.registry import event_registry

META = CommandMetadata(actor="bench", correlation_id="bench")


async def _fill_views(store: EventStore, stream: str, statement_id: str, count: int) -> None:
    data = {"statement_id": statement_id}
    batch = 10_000
    for start in range(0, count, batch):
        size = min(batch, count - start)
        await store.append(stream, [NewEvent("Viewed", data) for _ in range(size)], ANY)


async def _scenario(store: EventStore, views: int) -> tuple[float, float]:
    registry = event_registry()
    log = StoreEventLog(store, registry)
    handlers = StatementHandlers(log)
    statement_id = str(uuid.uuid4())
    await handlers.handle(
        PublishStatement(
            statement_id=statement_id,
            title="Benchmark statement",
            kind="comment",
            minister=MinisterRef("sergey-lavrov", "Sergey Lavrov", "Minister"),
            occurred_on=dt.date(2020, 1, 1),
            published_at=dt.datetime(2020, 1, 2, tzinfo=dt.UTC),
            paragraphs=("Body.",),
            meta=META,
        )
    )
    progress(f"  recording {views:,} views in the views stream")
    await _fill_views(store, views_stream(statement_id), statement_id, views)
    ours = []
    for i in range(5):
        started = time.perf_counter()
        await handlers.handle(
            TagStatement(statement_id=statement_id, topics=(f"Topic {i}",), meta=META)
        )
        ours.append(time.perf_counter() - started)

    # The peer design: the same views inside the statement's own stream, replayed on load.
    other = str(uuid.uuid4())
    stream = statement_stream(other)
    _, own = await log.load(statement_stream(statement_id))
    published = dataclasses.replace(own[0], statement_id=other)  # type: ignore[type-var]
    progress(f"  recording {views:,} views in one statement stream (the peer design)")
    await store.append(stream, [registry.new_event(published)])
    await _fill_views(store, stream, other, views)
    peer = []
    for _ in range(2):
        started = time.perf_counter()
        version, events = await log.load(stream)
        state = replay([e for e in events if not isinstance(e, Viewed)])
        assert state.exists and version == views + 1
        peer.append(time.perf_counter() - started)
    return statistics.median(ours) * 1000, statistics.median(peer) * 1000


def run(config: Config) -> list[Result]:
    views = 20_000 if config.quick else 1_000_000
    results = []
    with sqlite_file(config, "domain") as path:
        progress(f"domain: tag with {views:,} views, sqlite")

        async def sqlite_run() -> tuple[float, float]:
            async with open_store(f"sqlite:///{path}") as store:
                return await _scenario(store, views)

        ours, peer = asyncio.run(sqlite_run())
        results.append(
            Result(
                f"tag a statement with {views:,} views (ms, lower is better)",
                "sqlite",
                "ms",
                ours,
                peer,
            )
        )
    pg_views = views if (config.full or config.quick) else 200_000
    with pg_schema(config.pg_url, "domain") as schema:
        progress(f"domain: tag with {pg_views:,} views, postgresql")

        async def pg_run() -> tuple[float, float]:
            async with open_store(config.pg_url, schema=schema) as store:
                return await _scenario(store, pg_views)

        ours, peer = asyncio.run(pg_run())
        results.append(
            Result(
                f"tag a statement with {pg_views:,} views (ms, lower is better)",
                "postgresql",
                "ms",
                ours,
                peer,
            )
        )
    return results
