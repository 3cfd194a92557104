"""A small app for the live tests and the benchmark: the real store, projections, hub and
transports, a tiny Query, the real Mutation (recordView, publishStatement).

It is wired the way ``create_app`` should wire the live parts. ``app_from_env`` is a uvicorn
factory (``--factory``) reading ``STATEMENTS_DATABASE_URL`` / ``STATEMENTS_DATABASE_SCHEMA`` and
``LIVE_TICK`` / ``LIVE_INIT_TIMEOUT`` / ``LIVE_KEEP_ALIVE`` / ``LIVE_MAX_SUBSCRIPTIONS``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass

import strawberry
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route, WebSocketRoute

from eventstore.projection_checkpoints import setup_checkpoints
from eventstore.projection_runner import ProjectionRunner
from graphql_api.app import frozen_heap
from graphql_api.bootstrap import Services, open_services
from graphql_api.context import Context
from graphql_api.schema.api_schema import build_schema
from graphql_api.schema.subscriptions import Subscription
from graphql_api.security.auth import Principal, TokenAuthenticator, setup_tokens
from graphql_api.service_layer.live_hub import LiveHub
from graphql_api.settings import Settings
from graphql_api.transport.dashboard import dashboard_routes
from graphql_api.transport.http import build_graphql_app
from graphql_api.transport.sse import SSEEndpoint
from graphql_api.transport.ws import LiveGraphQL, build_websocket_app
from projections import all_projections
from projections.read_models import ReadModels


@strawberry.type
class Query:
    @strawberry.field
    def hello(self) -> str:
        return "hello"


@dataclass
class LiveState:
    services: Services | None = None
    read_models: ReadModels | None = None
    authenticator: TokenAuthenticator | None = None
    hub: LiveHub | None = None
    runner: ProjectionRunner | None = None
    ws: LiveGraphQL | None = None
    sse: SSEEndpoint | None = None


def create_live_app(
    settings: Settings,
    *,
    tick: float = 0.25,
    init_timeout: float = 10.0,
    keep_alive: float | None = 15.0,
    max_subscriptions: int = 50,
) -> Starlette:
    state = LiveState()
    schema = build_schema(Query, subscription=Subscription, production=settings.production)

    async def context_factory(
        request: Request, principal: Principal | None, request_id: str
    ) -> Context:
        assert state.services is not None and state.hub is not None
        return Context(
            handlers=state.services.handlers,
            principal=principal,
            request_id=request_id,
            request=request,
            read_models=state.read_models,
            store=state.services.store,
            live=state.hub,
        )

    async def authenticate(token: str) -> Principal | None:
        return None if state.authenticator is None else await state.authenticator(token)

    ws = build_websocket_app(
        schema,
        context_factory=context_factory,
        authenticator=authenticate,
        max_subscriptions=max_subscriptions,
        init_timeout=init_timeout,
        keep_alive=keep_alive,
        max_message_bytes=settings.max_request_bytes,
    )
    graphql = build_graphql_app(
        schema,
        production=settings.production,
        context_factory=context_factory,
        authenticator=authenticate,
        max_body_bytes=settings.max_request_bytes,
        websocket_app=ws,
    )
    sse = SSEEndpoint(
        schema,
        context_factory=context_factory,
        authenticator=authenticate,
        max_body_bytes=settings.max_request_bytes,
    )
    state.ws, state.sse = ws, sse

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        services = await open_services(settings)
        try:
            await setup_tokens(services.engine)
            await setup_checkpoints(services.engine)
            state.services = services
            state.read_models = ReadModels(services.engine)
            state.authenticator = TokenAuthenticator(services.engine, ttl=0.0)
            runner = ProjectionRunner(services.store, services.engine, all_projections())
            state.runner = runner
            await runner.start()
            state.hub = LiveHub(services.store, services.engine, tick=tick)
            await state.hub.start()
            with frozen_heap():
                yield
        finally:
            if state.hub is not None:
                await state.hub.stop()
            if state.runner is not None:
                await state.runner.stop()
            await services.close()

    async def debug(request: Request) -> Response:
        assert state.hub is not None
        return JSONResponse(
            {
                "tasks": len(asyncio.all_tasks()),
                "connections": ws.connections,
                "streams": sse.streams,
                **state.hub.stats(),
            }
        )

    app = Starlette(
        routes=[
            Route("/graphql", graphql),
            # Route matches HTTP only: WebSocket scopes need their own route.
            WebSocketRoute("/graphql", graphql),
            Route("/graphql/stream", sse, methods=["GET", "POST"]),
            Route("/debug/live", debug),
            *dashboard_routes(),
        ],
        lifespan=lifespan,
    )
    app.state.live = state
    return app


def app_from_env() -> Starlette:
    env = os.environ
    keep_alive = float(env.get("LIVE_KEEP_ALIVE", "15"))
    return create_live_app(
        Settings.from_env(),
        tick=float(env.get("LIVE_TICK", "0.25")),
        init_timeout=float(env.get("LIVE_INIT_TIMEOUT", "10")),
        keep_alive=keep_alive if keep_alive > 0 else None,
        max_subscriptions=int(env.get("LIVE_MAX_SUBSCRIPTIONS", "50")),
    )
