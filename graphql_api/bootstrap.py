"""The composition root: the one place that opens and wires what a process runs.

:func:`open_services` gives what every command needs (the store, the registry, the command
handlers, the read-model engine); the CLI stops there. :func:`serving` adds what a server runs
beside it: the read models, the token authenticator, the checkpoint watcher and read-your-writes,
the projection runner, the live hub, the checkpointer and the read replicas' router; the app
(:mod:`graphql_api.app`) puts them in every request's context. :func:`start_execution` chooses
the executor.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from domain.handlers import StatementHandlers
from eventstore import EventRegistry, EventStore, open_store
from eventstore.checkpoints import Checkpointer, load_key_file
from eventstore.projection import ProjectionRunner, setup_checkpoints
from eventstore.read_cache import follow_checkpoints
from eventstore.reader import reader_for
from eventstore.urls import backend_of, create_engine
from eventstore.watcher import CheckpointWatcher
from graphql_api import execution
from graphql_api.metrics import count_sql_statements
from graphql_api.security.auth import TokenAuthenticator, setup_tokens
from graphql_api.service_layer.consistency import Consistency
from graphql_api.service_layer.eventlog import StoreEventLog
from graphql_api.service_layer.live_hub import LiveHub
from graphql_api.service_layer.replicas import open_replicas
from graphql_api.service_layer.statement_directory import ReadModelStatements
from graphql_api.service_layer.topic_directory import ReadModelTopics
from graphql_api.settings import Settings
from projections import all_projections
from projections.queries import ReadModels
from projections.registry import event_registry
from projections.replicas import ReplicaRouter


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


def open_checkpointer(settings: Settings, store: EventStore) -> Checkpointer:
    """The process's checkpointer: signing with the key file the settings name, if any."""
    path = settings.signing_key_path
    signer = load_key_file(Path(path)) if path else None
    return Checkpointer(store, signer, settings.log_origin, settings.checkpoint_interval)


@dataclass
class Runtime:
    """What a serving process runs, from start-up to shutdown."""

    services: Services
    read_models: ReadModels
    authenticator: TokenAuthenticator
    watcher: CheckpointWatcher
    consistency: Consistency
    runner: ProjectionRunner
    hub: LiveHub
    checkpointer: Checkpointer
    #: The streaming replicas queries may read (``STATEMENTS_READ_REPLICA_URLS``), if any.
    replicas: ReplicaRouter | None = None


@contextlib.asynccontextmanager
async def serving(settings: Settings) -> AsyncIterator[Runtime]:
    """Open and start everything a server runs; stop and close it all on leaving."""
    services = await open_services(settings)
    stack = contextlib.AsyncExitStack()
    stack.push_async_callback(services.close)
    async with stack:
        await setup_tokens(services.engine)
        await setup_checkpoints(services.engine)
        count_sql_statements(services.engine)
        reader_for(services.engine).enable_cache(settings.read_cache_rows)
        projections = all_projections()
        # One per process, whether or not it runs the projections: read-your-writes and
        # X-Min-Position wait on it.
        watcher = CheckpointWatcher(services.store, services.engine, projections)
        await watcher.start()
        stack.push_async_callback(watcher.stop)
        reader = reader_for(services.engine)
        if reader.dialect == "postgresql":
            # SQLite's cache follows the file's data_version; PostgreSQL's the checkpoints.
            stack.callback(follow_checkpoints(reader.cache, watcher))
        read_models = ReadModels(services.engine)
        replicas = open_replicas(settings, read_models, watcher)
        if replicas is not None:
            await replicas.start()
            stack.push_async_callback(replicas.stop)
        runner = ProjectionRunner(services.store, services.engine, projections, watcher=watcher)
        stack.push_async_callback(runner.stop)
        if settings.run_projections:
            await runner.start()
        # One feed per process for every live subscriber, whether or not it runs the
        # projections.
        hub = LiveHub(services.store, services.engine)
        stack.push_async_callback(hub.stop)
        await hub.start()
        checkpointer = open_checkpointer(settings, services.store)
        checkpoints = asyncio.get_running_loop().create_task(checkpointer.run(), name="checkpoints")
        stack.push_async_callback(_cancelled, checkpoints)
        yield Runtime(
            services=services,
            read_models=read_models,
            authenticator=TokenAuthenticator(services.engine),
            watcher=watcher,
            consistency=Consistency(watcher, settings.position_wait_seconds),
            runner=runner,
            hub=hub,
            checkpointer=checkpointer,
            replicas=replicas,
        )


async def _cancelled(task: asyncio.Task[Any]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


def start_execution(settings: Settings) -> None:
    """Choose the executor before any schema is built: the compiled one unless the settings
    switch it off, and only if its start-up check finds every private hook it relies on."""
    if not settings.compiled_executor:
        execution.switch_off()
    execution.check()
