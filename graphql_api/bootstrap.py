"""The composition root's parts: the store, the serializer, the command handlers, read models."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from domain.handlers import StatementHandlers
from eventstore import EventRegistry, EventStore, open_store
from eventstore.urls import backend_of, create_engine
from graphql_api.service_layer.eventlog import StoreEventLog
from graphql_api.settings import Settings
from projections.queries import ReadModels
from projections.registry import event_registry


class ReadModelTopics:
    """The domain's TopicDirectory over the topics read model.

    The read model holds exactly the answer (one indexed row per topic); the log could only
    give it by reading every ``Tagged`` event. It lags the log by the projection's delay, so
    renaming a topic tagged a moment ago may find it unknown (NOT_FOUND) until the read models
    show that tag, as they do for any query the client sends.
    """

    def __init__(self, read_models: ReadModels) -> None:
        self._read_models = read_models

    async def topic_name(self, topic_slug: str) -> str | None:
        row = (await self._read_models.topics_by_slugs([topic_slug])).get(topic_slug)
        return row.name if row is not None else None


class ReadModelStatements:
    """The domain's StatementDirectory over the statements read model: one query per batch.

    A statement published moments ago may not be there yet; the handler then reads its stream.
    One withdrawn moments ago may still take a batch's views until the read model shows it, as
    a lone recordView racing a withdrawal may.
    """

    def __init__(self, read_models: ReadModels) -> None:
        self._read_models = read_models

    async def withdrawn(self, statement_ids: Collection[str]) -> Mapping[str, bool]:
        return await self._read_models.withdrawn(statement_ids)


@dataclass
class Services:
    """Everything a process needs to run commands and answer queries, opened once."""

    settings: Settings
    store: EventStore
    registry: EventRegistry
    handlers: StatementHandlers
    engine: AsyncEngine

    async def close(self) -> None:
        await self.store.close()
        await self.engine.dispose()


async def open_services(settings: Settings) -> Services:
    """Open the store (creating its schema) and the read-model engine for ``settings``."""
    url = settings.database_url
    if backend_of(url) == "memory":
        raise ValueError("the server needs a database: use sqlite:///FILE or postgresql://...")
    options: dict[str, Any] = {}
    if settings.database_schema:
        options["schema"] = settings.database_schema
    store = open_store(url, **options)
    try:
        await store.setup()
    except BaseException:
        await store.close()
        raise
    registry = event_registry()
    engine = create_engine(url, schema=settings.database_schema)
    read_models = ReadModels(engine)
    handlers = StatementHandlers(
        StoreEventLog(store, registry),
        topics=ReadModelTopics(read_models),
        statements=ReadModelStatements(read_models),
        max_batch_views=settings.ingest_max_batch_views,
    )
    return Services(settings, store, registry, handlers, engine)
