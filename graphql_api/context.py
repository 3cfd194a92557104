"""The per-request context every resolver gets as ``info.context``."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

from starlette.requests import Request

from domain.commands import CommandMetadata
from domain.handlers import StatementHandlers
from graphql_api.security.auth import Principal

ANONYMOUS_ACTOR = "anonymous"


@dataclass(slots=True)
class Context:
    """What one request's resolvers share.

    ``request_id`` comes from a well-formed ``X-Request-ID`` header or is a fresh UUID; it is
    the correlation id of the events the request's commands cause and is echoed in the
    response. ``read_models`` and ``loaders`` are filled by the query layer (one set of
    DataLoaders per request); ``extra`` is for whatever else a layer needs to carry.
    """

    handlers: StatementHandlers
    principal: Principal | None = None
    request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    request: Request | None = None
    read_models: Any = None
    loaders: Any = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def actor(self) -> str:
        """The name recorded as the actor of the events this request causes."""
        return self.principal.name if self.principal is not None else ANONYMOUS_ACTOR

    def command_metadata(self) -> CommandMetadata:
        """The metadata of a command made for this request."""
        return CommandMetadata(actor=self.actor, correlation_id=self.request_id, causation_id=None)
