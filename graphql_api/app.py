"""The Starlette application; create_app(settings) is the one place where everything is wired."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route, WebSocketRoute

from eventstore.checkpoints import Checkpointer
from eventstore.projection import ProjectionRunner
from eventstore.reader import reader_for
from eventstore.watcher import CheckpointWatcher
from graphql_api.bootstrap import Services, serving, start_execution
from graphql_api.context import Context
from graphql_api.metrics import Metrics
from graphql_api.schema.api_schema import ApiSchema, build_schema
from graphql_api.schema.loaders import make_loaders
from graphql_api.schema.query import QUERY_TYPES, Query
from graphql_api.schema.replicas import ReadFromReplicas
from graphql_api.schema.subscriptions import Subscription
from graphql_api.security.auth import Principal, TokenAuthenticator
from graphql_api.security.ratelimit import ViewRatePolicy
from graphql_api.service_layer.consistency import Consistency
from graphql_api.service_layer.live_hub import LiveHub
from graphql_api.service_layer.replicas import replica_metrics
from graphql_api.settings import Settings
from graphql_api.site.client import SiteClient
from graphql_api.site.documents import SiteDocuments
from graphql_api.site.routes import Site
from graphql_api.site.validators import Validators
from graphql_api.transport.access_log import AccessLogMiddleware
from graphql_api.transport.apq import persisted_queries
from graphql_api.transport.cors import cors_middleware
from graphql_api.transport.dashboard import dashboard_routes
from graphql_api.transport.graphiql import graphiql_routes
from graphql_api.transport.http import build_graphql_app
from graphql_api.transport.sse import SSEEndpoint
from graphql_api.transport.ws import build_websocket_app
from projections.queries import ReadModels
from projections.replicas import ReplicaRouter

log = logging.getLogger(__name__)

#: A projection this far behind the head is "not caught up" for /readyz.
READY_LAG_EVENTS = 1000


@dataclass
class AppState:
    """What the app runs (:class:`graphql_api.bootstrap.Runtime`), set while it serves."""

    rate_limiter: ViewRatePolicy
    services: Services | None = None
    runner: ProjectionRunner | None = None
    watcher: CheckpointWatcher | None = None
    read_models: ReadModels | None = None
    authenticator: TokenAuthenticator | None = None
    hub: LiveHub | None = None
    consistency: Consistency | None = None
    checkpointer: Checkpointer | None = None
    replicas: ReplicaRouter | None = None

    def ready(self) -> Services:
        if self.services is None:
            raise RuntimeError("the app has not started")
        return self.services


@contextlib.contextmanager
def frozen_heap() -> Iterator[None]:
    """Keep what start-up built out of the garbage collector's full passes while serving.

    Those objects live as long as the app; scanning them on every full collection stalled
    the loop for 100-250 ms once a thousand connections were open (subscriptions bench).
    The collection thresholds stay Python's: queries leave no cyclic garbage
    (``graphql_api.execution``), but subscriptions and mutations do, and rarer young-generation
    collections made the soak's RSS grow (docs/ARCHITECTURE.md).
    """
    gc.collect()
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def api_schema(*, production: bool = False, replicas: bool = False) -> ApiSchema:
    """The schema the app serves; ``statements schema`` prints it for client code generators.

    With ``replicas``, query operations read the copy of the read models the replica router
    chooses (:mod:`graphql_api.schema.replicas`).
    """
    return build_schema(
        Query,
        types=QUERY_TYPES,
        subscription=Subscription,
        production=production,
        extensions=[ReadFromReplicas] if replicas else [],
    )


def create_app(settings: Settings) -> Starlette:
    """Build the app; nothing connects to a database until it starts."""
    state = AppState(
        rate_limiter=ViewRatePolicy(
            rate=settings.view_rate,
            burst=settings.view_burst,
            ingest_rate=settings.ingest_view_rate,
            ingest_burst=settings.ingest_view_burst,
            trusted_proxies=settings.trusted_proxies,
        )
    )
    metrics = Metrics()
    start_execution(settings)
    schema = api_schema(production=settings.production, replicas=bool(settings.read_replica_urls))

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
            # With replicas, a query's loaders are made once its read models are chosen.
            loaders=None if state.replicas is not None else make_loaders(state.read_models),
            store=services.store,
            registry=services.registry,
            live=state.hub,
            checkpointer=state.checkpointer,
            consistency=state.consistency,
            rate_limiter=state.rate_limiter,
            replicas=state.replicas,
        )

    def consistency() -> Consistency | None:
        return state.consistency

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
        async with serving(settings) as runtime:
            state.services = runtime.services
            state.read_models = runtime.read_models
            state.authenticator = runtime.authenticator
            state.watcher = runtime.watcher
            state.consistency = runtime.consistency
            state.runner = runtime.runner
            state.hub = runtime.hub
            state.checkpointer = runtime.checkpointer
            state.replicas = runtime.replicas
            # Each worker keeps its own gauges current for the scrapes other workers answer.
            gauges = asyncio.get_running_loop().create_task(metrics.keep_fresh(), name="gauges")
            try:
                with frozen_heap():
                    yield
            finally:
                gauges.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await gauges
                metrics.close()

    async def lag() -> dict[str, float]:
        if state.runner is None:
            return {}
        return {s.name: float(s.lag_events) for s in await state.runner.status()}

    metrics.gauge(
        "statements_projection_lag_events",
        "Events between a projection and the head",
        lag,
        label="projection",
        mode="mostrecent",  # read from the database: every worker sees the same lag
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
    replica_metrics(metrics, lambda: state.replicas)

    def read_cache_drops() -> dict[str, float]:
        if state.services is None:
            return {}
        cache = reader_for(state.services.engine).cache
        return {"read_model": float(cache.drops), "all": float(cache.clears)}

    metrics.gauge(
        "statements_read_cache_drops",
        "Times the read cache dropped a read model's entries (read_model) or all (all)",
        read_cache_drops,
        label="scope",
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

    def positions() -> dict[str, int] | None:
        return state.watcher.reaches() if state.watcher is not None else None

    # The site is a client of the schema: its pages run their documents through the same
    # schema and context as /graphql (graphql_api.site).
    site = Site(
        SiteClient(schema, context_factory, SiteDocuments.load()),
        Validators(positions),
        count_views=settings.site_count_views,
        bot_agents=settings.site_bot_agents,
    )

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
            Route("/graphql", graphql),
            WebSocketRoute("/graphql", graphql),
            Route("/graphql/stream", sse, methods=["GET", "POST"]),
            *(graphiql_routes() if graphql.graphiql else []),
            *dashboard_routes(),
            Route("/healthz", healthz),
            Route("/readyz", readyz),
            Route("/metrics", metrics.endpoint),
            *site.routes(),
        ],
        middleware=[
            # Outermost, so that it times (and sees the status of) everything below.
            Middleware(
                AccessLogMiddleware,
                mode=settings.access_log,
                rate=settings.access_log_rate,
                slow_ms=settings.slow_request_ms,
            ),
            *cors_middleware(settings.cors_origins),
        ],
        lifespan=lifespan,
    )
    app.state.statements = state
    return app


def app_from_env() -> Starlette:
    """Factory for uvicorn workers."""
    return create_app(Settings.from_env())
