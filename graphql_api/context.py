"""The per-request context every resolver gets as ``info.context``."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from starlette.requests import Request

from domain.commands import CommandMetadata
from domain.handlers import StatementHandlers
from graphql_api.security.auth import Principal

if TYPE_CHECKING:
    from graphql import GraphQLError

    from eventstore import EventRegistry, EventStore
    from eventstore.checkpoints import Checkpointer
    from graphql_api.schema.loaders import Loaders
    from graphql_api.security.ratelimit import ViewRateLimiter, ViewRatePolicy
    from graphql_api.service_layer.consistency import Consistency
    from graphql_api.service_layer.live_hub import LiveHub
    from projections.read_models import ReadModels
    from projections.replicas import ReplicaRouter

ANONYMOUS_ACTOR = "anonymous"


@dataclass(slots=True)
class Context:
    """What one request's resolvers share.

    ``request_id`` comes from a well-formed ``X-Request-ID`` header or is a fresh UUID; it is
    the correlation id of the events the request's commands cause and is echoed in the
    response. The app fills in what it runs (the bootstrap's parts); a part left None is one
    this process does not have, and the resolvers that need it say so. ``loaders`` are made on
    first use, one set of DataLoaders per request.
    """

    handlers: StatementHandlers
    principal: Principal | None = None
    request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    request: Request | None = None
    #: The read models and the request's DataLoaders over them.
    read_models: ReadModels | None = None
    loaders: Loaders | None = None
    #: The log, and the registry that decodes it (the audit fields, time travel).
    store: EventStore | None = None
    registry: EventRegistry | None = None
    #: The process's live hub (subscriptions) and checkpointer (the verifiable log).
    live: LiveHub | None = None
    checkpointer: Checkpointer | None = None
    #: What read-your-writes waits on; without it mutations answer without waiting.
    consistency: Consistency | None = None
    #: The ``recordView`` rate limit; without it views are not limited.
    rate_limiter: ViewRatePolicy | ViewRateLimiter | None = None
    #: The read replicas' router: a query operation over HTTP may read a replica's copy of the
    #: read models (``graphql_api.schema.replicas``); None without replicas.
    replicas: ReplicaRouter | None = None
    #: Errors a mutation found after its field resolved, reported beside its data.
    late_errors: list[GraphQLError] = field(default_factory=list)
    #: The payload of a WebSocket's ``connection_init``.
    connection_params: dict[str, Any] = field(default_factory=dict)

    @property
    def actor(self) -> str:
        """The name recorded as the actor of the events this request causes."""
        return self.principal.name if self.principal is not None else ANONYMOUS_ACTOR

    def command_metadata(self) -> CommandMetadata:
        """The metadata of a command made for this request."""
        return CommandMetadata(actor=self.actor, correlation_id=self.request_id, causation_id=None)
