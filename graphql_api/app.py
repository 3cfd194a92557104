"""The Starlette application; create_app(settings) is the one place where everything is wired."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route, WebSocketRoute

from eventstore.projection import ProjectionRunner, setup_checkpoints
from eventstore.reader import reader_for
from eventstore.watcher import CheckpointWatcher
from graphql_api.bootstrap import Services, open_services
from graphql_api.context import Context
from graphql_api.metrics import Metrics, count_sql_statements
from graphql_api.schema.api_schema import build_schema
from graphql_api.schema.loaders import make_loaders
from graphql_api.schema.query import QUERY_TYPES, Query
from graphql_api.schema.subscriptions import Subscription
from graphql_api.schema.transparency import open_checkpointer
from graphql_api.security.auth import Principal, TokenAuthenticator, setup_tokens
from graphql_api.security.ratelimit import CONTEXT_KEY as RATE_LIMITER_KEY
from graphql_api.security.ratelimit import ViewRatePolicy
from graphql_api.service_layer.consistency import CONTEXT_KEY as CONSISTENCY_KEY
from graphql_api.service_layer.consistency import Consistency
from graphql_api.service_layer.live_hub import LiveHub
from graphql_api.settings import Settings
from graphql_api.transport.apq import persisted_queries
from graphql_api.transport.cors import cors_middleware
from graphql_api.transport.dashboard import dashboard_routes
from graphql_api.transport.graphiql import graphiql_routes
from graphql_api.transport.http import build_graphql_app
from graphql_api.transport.sse import SSEEndpoint
from graphql_api.transport.ws import build_websocket_app
from projections import all_projections
from projections.queries import ReadModels

log = logging.getLogger(__name__)

#: A projection this far behind the head is "not caught up" for /readyz.
READY_LAG_EVENTS = 1000


@dataclass
class AppState:
    """What the app opens at startup and closes at shutdown."""

    services: Services | None = None
    runner: ProjectionRunner | None = None
    watcher: CheckpointWatcher | None = None
    read_models: ReadModels | None = None
    authenticator: TokenAuthenticator | None = None
    hub: LiveHub | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def ready(self) -> Services:
        if self.services is None:
            raise RuntimeError("the app has not started")
        return self.services


@contextlib.contextmanager
def frozen_heap() -> Iterator[None]:
    """Keep what start-up built out of the garbage collector's full passes while serving.

    Those objects live as long as the app; scanning them on every full collection stalled
    the loop for 100-250 ms once a thousand connections were open (subscriptions bench).
    The collection thresholds stay Python's. Queries leave no cyclic garbage any more (see
    ``graphql_api.execution.executor``), and collecting the young generation every 10,000 net
    allocations instead of 700 made the statement page ~15 % faster at 100 connections, but
    the soak's RSS still grew 71 % (subscriptions and mutations do leave cycles): twice now
    (the first time, with the queries' cycles, 42-90 %).
    """
    gc.collect()
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def create_app(settings: Settings) -> Starlette:
    """Build the app; nothing connects to a database until it starts."""
    state = AppState()
    state.extra[RATE_LIMITER_KEY] = ViewRatePolicy(
        rate=settings.view_rate,
        burst=settings.view_burst,
        ingest_rate=settings.ingest_view_rate,
        ingest_burst=settings.ingest_view_burst,
        trusted_proxies=settings.trusted_proxies,
    )
    metrics = Metrics()
    schema = build_schema(
        Query, types=QUERY_TYPES, subscription=Subscription, production=settings.production
    )

    async def context_factory(
        request: Any, principal: Principal | None, request_id: str
    ) -> Context:
        services = state.ready()
        assert state.read_models is not None
        return Context(
            handlers=services.handlers,
            principal=principal,
            request_id=request_id,
            request=request,
            read_models=state.read_models,
            loaders=make_loaders(state.read_models),
            extra={
                "store": services.store,
                "registry": services.registry,
                "live": state.hub,
                **state.extra,
            },
        )

    def consistency() -> Consistency | None:
        value = state.extra.get(CONSISTENCY_KEY)
        return value if isinstance(value, Consistency) else None

    async def authenticate(token: str) -> Principal | None:
        if state.authenticator is None:
            return None
        return await state.authenticator(token)

    websockets = build_websocket_app(
        schema,
        context_factory=context_factory,
        authenticator=authenticate,
        max_message_bytes=settings.max_request_bytes,
    )
    sse = SSEEndpoint(
        schema,
        context_factory=context_factory,
        authenticator=authenticate,
        max_body_bytes=settings.max_request_bytes,
    )
    graphql = build_graphql_app(
        schema,
        production=settings.production,
        context_factory=context_factory,
        authenticator=authenticate,
        persisted_queries=persisted_queries(
            production=settings.production, allow_list_path=settings.allow_list_path
        ),
        metrics=metrics,
        max_body_bytes=settings.max_request_bytes,
        trusted_origins=settings.cors_origins,
        websocket_app=websockets,
        consistency=consistency,
    )

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        services = await open_services(settings)
        try:
            await setup_tokens(services.engine)
            await setup_checkpoints(services.engine)
            count_sql_statements(services.engine)
            state.services = services
            reader_for(services.engine).enable_cache(settings.read_cache_rows)
            state.read_models = ReadModels(services.engine)
            state.authenticator = TokenAuthenticator(services.engine)
            projections = all_projections()
            # One per process, whether or not it runs the projections: read-your-writes and
            # X-Min-Position wait on it.
            watcher = CheckpointWatcher(services.store, services.engine, projections)
            state.watcher = watcher
            await watcher.start()
            state.extra[CONSISTENCY_KEY] = Consistency(watcher, settings.position_wait_seconds)
            runner = ProjectionRunner(services.store, services.engine, projections, watcher=watcher)
            state.runner = runner
            state.extra["runner"] = runner
            if settings.run_projections:
                await runner.start()
            # One feed per process for every live subscriber, whether or not it runs the
            # projections.
            state.hub = LiveHub(services.store, services.engine)
            await state.hub.start()
            checkpointer = open_checkpointer(settings, services.store)
            state.extra["checkpointer"] = checkpointer
            checkpoints = asyncio.get_running_loop().create_task(
                checkpointer.run(), name="checkpoints"
            )
            try:
                with frozen_heap():
                    yield
            finally:
                checkpoints.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await checkpoints
        finally:
            if state.hub is not None:
                await state.hub.stop()
            if state.runner is not None:
                await state.runner.stop()
            if state.watcher is not None:
                await state.watcher.stop()
            await services.close()

    async def lag() -> dict[str, float]:
        if state.runner is None:
            return {}
        return {s.name: float(s.lag_events) for s in await state.runner.status()}

    metrics.gauge(
        "statements_projection_lag_events",
        "Events between a projection and the head",
        lag,
        label="projection",
    )

    def read_cache() -> dict[str, float]:
        if state.services is None:
            return {}
        reader = reader_for(state.services.engine)
        return {"hit": float(reader.cache_hits), "miss": float(reader.cache_misses)}

    metrics.gauge(
        "statements_read_cache_statements",
        "Read-model statements answered from the cache (hit) or run (miss) since start",
        read_cache,
        label="result",
    )

    metrics.gauge(
        "statements_open_subscriptions",
        "Open GraphQL subscriptions",
        lambda: float(state.hub.subscribers if state.hub else 0),
    )
    metrics.gauge(
        "statements_open_websockets",
        "Open GraphQL WebSocket connections",
        lambda: float(websockets.connections),
    )

    async def index(request: Request) -> Response:
        return RedirectResponse("/graphql")

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def readyz(request: Request) -> Response:
        services = state.services
        if services is None or state.runner is None:
            return JSONResponse({"status": "starting"}, status_code=503)
        try:
            head = await services.store.head_position()
            statuses = await state.runner.status()
        except Exception as exc:
            log.warning("readiness check failed: %s", exc)
            return JSONResponse(
                {"status": "unavailable", "error": "database unreachable"}, status_code=503
            )
        projections = {
            s.name: {
                "status": s.status,
                "position": s.position,
                "lag_events": s.lag_events,
                "lag_seconds": round(s.lag_seconds, 3),
                **({"error": s.error, "error_position": s.error_position} if s.error else {}),
            }
            for s in statuses
        }
        failed = [s.name for s in statuses if s.status == "failed"]
        behind = [s.name for s in statuses if s.lag_events > READY_LAG_EVENTS]
        # No checkpoint yet means no tables yet: a query would fail on a missing table.
        starting = [s.name for s in statuses if s.status == "new"]
        ready = not failed and not behind and not starting
        body = {
            "status": "ready" if ready else "not ready",
            "head": head,
            "failed": failed,
            "behind": behind,
            "starting": starting,
            "projections": projections,
        }
        return JSONResponse(body, status_code=200 if ready else 503)

    app = Starlette(
        routes=[
            Route("/", index),
            Route("/graphql", graphql),
            WebSocketRoute("/graphql", graphql),
            Route("/graphql/stream", sse, methods=["GET", "POST"]),
            *(graphiql_routes() if graphql.graphiql else []),
            *dashboard_routes(),
            Route("/healthz", healthz),
            Route("/readyz", readyz),
            Route("/metrics", metrics.endpoint),
        ],
        middleware=cors_middleware(settings.cors_origins),
        lifespan=lifespan,
    )
    app.state.statements = state
    return app


def app_from_env() -> Starlette:
    """Factory for uvicorn workers."""
    return create_app(Settings.from_env())
