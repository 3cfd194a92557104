"""A tiny Query type for the API tests, and helpers to build the schema, app and context."""

from __future__ import annotations

import base64
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import strawberry
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.routing import Route

from domain.errors import StatementNotFound
from domain.handlers import StatementHandlers
from eventstore.errors import StoreUnavailableError
from eventstore.memory import MemoryEventStore
from graphql_api.context import Context
from graphql_api.metrics import Metrics
from graphql_api.schema.api_schema import ApiSchema, build_schema
from graphql_api.security.auth import AuditorRequired, Principal
from graphql_api.security.query_limits import Limits
from graphql_api.service_layer.eventlog import StoreEventLog
from graphql_api.transport.apq import PersistedQueries
from graphql_api.transport.http import Authenticator, GraphQLHTTP, build_graphql_app
from projections.registry import event_registry


@strawberry.type
class Item:
    id: strawberry.ID

    @strawberry.field
    def tags(self) -> list[str]:
        return ["a", "b"]

    @strawberry.field
    def children(
        self,
        first: int | None = None,
        after: str | None = None,
        last: int | None = None,
        before: str | None = None,
    ) -> ItemConnection:
        return _connection(first or last or 10)


@strawberry.type
class ItemEdge:
    cursor: str
    node: Item


@strawberry.type
class ItemConnection:
    edges: list[ItemEdge]
    total_count: int


def _connection(count: int) -> ItemConnection:
    return ItemConnection(
        edges=[
            ItemEdge(
                cursor=base64.b64encode(str(i).encode()).decode(),
                node=Item(id=strawberry.ID(str(i))),
            )
            for i in range(count)
        ],
        total_count=count,
    )


@strawberry.type
class Query:
    @strawberry.field
    def hello(self, name: str = "world") -> str:
        return f"hello {name}"

    @strawberry.field
    def boom(self) -> str:
        raise RuntimeError("secret detail: password=hunter2")

    @strawberry.field
    def missing(self) -> str:
        raise StatementNotFound("00000000-0000-4000-8000-000000000000")

    @strawberry.field
    def unavailable(self) -> str:
        raise StoreUnavailableError("database is locked")

    @strawberry.field
    def whoami(self, info: strawberry.Info[Context, None]) -> str:
        principal = info.context.principal
        return f"{principal.name}:{principal.role}" if principal else "anonymous"

    @strawberry.field(permission_classes=[AuditorRequired])
    def audit_trail(self) -> str:
        return "trail"

    @strawberry.field
    def request_id(self, info: strawberry.Info[Context, None]) -> str:
        return info.context.request_id

    @strawberry.field
    def items(
        self,
        first: int | None = None,
        after: str | None = None,
        last: int | None = None,
        before: str | None = None,
    ) -> ItemConnection:
        return _connection(first or last or 10)


def make_handlers(store: MemoryEventStore) -> StatementHandlers:
    return StatementHandlers(StoreEventLog(store, event_registry()))


def make_schema(*, production: bool = False, limits: Limits | None = None) -> ApiSchema:
    return build_schema(Query, production=production, limits=limits)


def context_of(
    handlers: StatementHandlers, principal: Principal | None = None, request_id: str = "req-1"
) -> Context:
    return Context(handlers=handlers, principal=principal, request_id=request_id)


@dataclass
class App:
    app: Starlette
    endpoint: GraphQLHTTP
    metrics: Metrics


def make_app(
    handlers: StatementHandlers,
    *,
    production: bool = False,
    authenticator: Authenticator | None = None,
    persisted_queries: PersistedQueries | None = None,
    limits: Limits | None = None,
    max_body_bytes: int = 1_000_000,
    strict_csrf: bool = False,
    extra_routes: Sequence[Route] = (),
) -> App:
    schema = make_schema(production=production, limits=limits)
    metrics = Metrics()

    def context_factory(request: Request, principal: Principal | None, request_id: str) -> Any:
        return Context(
            handlers=handlers, principal=principal, request_id=request_id, request=request
        )

    endpoint = build_graphql_app(
        schema,
        production=production,
        context_factory=context_factory,
        authenticator=authenticator,
        persisted_queries=persisted_queries,
        metrics=metrics,
        max_body_bytes=max_body_bytes,
        strict_csrf=strict_csrf,
    )
    app = Starlette(
        routes=[
            Route("/graphql", endpoint),
            Route("/metrics", metrics.endpoint),
            *extra_routes,
        ]
    )
    return App(app=app, endpoint=endpoint, metrics=metrics)
