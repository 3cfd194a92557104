"""GraphQL over WebSocket on ``/graphql``: graphql-transport-ws, and the legacy graphql-ws.

Built on Strawberry's protocol handlers (0.341.2), which already follow the graphql-transport-ws
specification: ``4400`` for a message that is not valid (not JSON, unknown type, a missing
field, a syntax error), ``4401`` for a ``subscribe`` before ``connection_ack``, ``4403`` when
``connection_init`` is refused, ``4408`` when no ``connection_init`` comes within the timeout,
``4409`` for a second ``subscribe`` with an id still in use, ``4429`` for a second
``connection_init``; ``4406`` for an unknown subprotocol. On close they cancel *and await* every
operation task (the leak of strawberry#3777 is fixed there). What is added here:

* **Auth in ``connection_init``**: ``{"authorization": "Bearer st_..."}`` (or ``Authorization``)
  or ``{"token": "st_..."}``. No token is anonymous; a token that is malformed, unknown,
  expired or revoked is refused with ``4403 Forbidden`` (legacy protocol: ``connection_error``
  then close). Roles are then checked by the resolvers (``eventAppended`` needs ``auditor``).
* **Keep-alive**: after ``connection_ack`` the server sends ``ping`` every ``keep_alive``
  seconds (graphql-transport-ws; clients answer ``pong``) or ``ka`` (graphql-ws).
* **A limit** of ``max_subscriptions`` operations per connection (the next one gets an
  ``error`` message for its id).
* **Error codes**: results go through :func:`graphql_api.errors.classify_result`, as over HTTP,
  so errors carry ``extensions.code`` and unexpected ones are masked.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import uuid
from collections.abc import AsyncGenerator, Awaitable, Callable
from datetime import timedelta
from typing import Any, Final, cast

from starlette.requests import Request
from starlette.websockets import WebSocket
from strawberry.asgi import GraphQL
from strawberry.exceptions import ConnectionRejectionError
from strawberry.schema import BaseSchema
from strawberry.subscriptions import GRAPHQL_TRANSPORT_WS_PROTOCOL, GRAPHQL_WS_PROTOCOL
from strawberry.subscriptions.protocols.graphql_transport_ws.handlers import (
    BaseGraphQLTransportWSHandler,
)
from strawberry.subscriptions.protocols.graphql_transport_ws.types import ConnectionInitMessage
from strawberry.subscriptions.protocols.graphql_ws.handlers import BaseGraphQLWSHandler
from strawberry.subscriptions.protocols.graphql_ws.types import (
    ConnectionInitMessage as LegacyConnectionInitMessage,
)
from strawberry.types import ExecutionResult
from strawberry.types.execution import PreExecutionError
from strawberry.types.unset import UNSET, UnsetType

from graphql_api.auth import Principal
from graphql_api.context import Context
from graphql_api.errors import classify_result
from graphql_api.schema import ApiSchema

log = logging.getLogger(__name__)
_UNSET: Final[UnsetType] = cast(UnsetType, UNSET)

DEFAULT_MAX_SUBSCRIPTIONS: Final = 50
DEFAULT_INIT_TIMEOUT: Final = 10.0
DEFAULT_KEEP_ALIVE: Final = 15.0
PARAMS_KEY: Final = "connection_params"

WsContextFactory = Callable[[Request, Principal | None, str], Context | Awaitable[Context]]
WsAuthenticator = Callable[[str], Awaitable[Principal | None]]


def token_of(params: dict[str, Any] | None) -> str | None:
    """The bearer token in a ``connection_init`` payload, or None; ValueError if malformed."""
    if not params:
        return None
    header = params.get("authorization", params.get("Authorization"))
    if header is not None:
        if not isinstance(header, str):
            raise ValueError("authorization must be a string")
        scheme, _, token = header.strip().partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise ValueError("authorization must be 'Bearer <token>'")
        return token.strip()
    value = params.get("token")
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise ValueError("token must be a non-empty string")
    return value.strip()


class _ClassifyingSchema:
    """The schema, with each streamed result's errors classified as over HTTP."""

    def __init__(self, schema: ApiSchema) -> None:
        self._schema = schema

    def __getattr__(self, name: str) -> Any:
        return getattr(self._schema, name)

    async def stream(self, *args: Any, **kwargs: Any) -> AsyncGenerator[Any, None]:
        return self._classified(await self._schema.stream(*args, **kwargs))

    async def subscribe(self, *args: Any, **kwargs: Any) -> AsyncGenerator[Any, None]:
        return self._classified(await self._schema.subscribe(*args, **kwargs))

    async def _classified(self, results: AsyncGenerator[Any, None]) -> AsyncGenerator[Any, None]:
        try:
            async for result in results:
                # Pre-execution errors are left alone: the handler closes with 4400 on a
                # syntax error by looking at the error's class.
                if isinstance(result, ExecutionResult) and not isinstance(
                    result, PreExecutionError
                ):
                    classify_result(result, production=self._schema.production)
                yield result
        finally:
            await results.aclose()


class _Params:
    """Stores the connection_init payload where :meth:`LiveGraphQL.on_ws_connect` finds it."""

    @staticmethod
    def keep(context: Any, payload: object) -> None:
        if isinstance(context, Context):
            context.extra[PARAMS_KEY] = payload if isinstance(payload, dict) else {}


class TransportWSHandler(BaseGraphQLTransportWSHandler[Context, None]):
    """graphql-transport-ws with server pings after the ack."""

    keep_alive_task: asyncio.Task[None] | None = None

    async def handle_connection_init(self, message: ConnectionInitMessage) -> None:
        _Params.keep(self.context, message.get("payload", {}))
        await super().handle_connection_init(message)
        interval = getattr(self.view, "ping_interval", None)
        if self.connection_acknowledged and interval and self.keep_alive_task is None:
            self.keep_alive_task = asyncio.create_task(self._pings(float(interval)))

    async def _pings(self, interval: float) -> None:
        with contextlib.suppress(Exception):
            while True:
                await asyncio.sleep(interval)
                await self.send_message({"type": "ping"})

    async def shutdown(self) -> None:
        if self.keep_alive_task is not None:
            self.keep_alive_task.cancel()
            with contextlib.suppress(BaseException):
                await self.keep_alive_task
        await super().shutdown()


class LegacyWSHandler(BaseGraphQLWSHandler[Context, None]):
    """The legacy graphql-ws (subscriptions-transport-ws) protocol."""

    async def handle_connection_init(self, message: LegacyConnectionInitMessage) -> None:
        _Params.keep(self.context, message.get("payload"))
        await super().handle_connection_init(message)


class LiveGraphQL(GraphQL[Context, None]):
    """The WebSocket side of ``/graphql``: pass it as ``websocket_app`` to build_graphql_app."""

    graphql_transport_ws_handler_class = TransportWSHandler
    graphql_ws_handler_class = LegacyWSHandler

    def __init__(
        self,
        schema: ApiSchema,
        *,
        context_factory: WsContextFactory,
        authenticator: WsAuthenticator | None,
        max_subscriptions: int = DEFAULT_MAX_SUBSCRIPTIONS,
        init_timeout: float = DEFAULT_INIT_TIMEOUT,
        keep_alive: float | None = DEFAULT_KEEP_ALIVE,
        allowed_origins: tuple[str, ...] = (),
    ) -> None:
        super().__init__(
            cast(BaseSchema, _ClassifyingSchema(schema)),
            graphql_ide=None,
            keep_alive=keep_alive is not None,
            keep_alive_interval=keep_alive or 1.0,
            subscription_protocols=(GRAPHQL_TRANSPORT_WS_PROTOCOL, GRAPHQL_WS_PROTOCOL),
            connection_init_wait_timeout=timedelta(seconds=init_timeout),
            max_subscriptions_per_connection=max_subscriptions,
            allowed_origins=allowed_origins,
        )
        self.context_factory = context_factory
        self.authenticator = authenticator
        self.ping_interval = keep_alive
        self.connections = 0

    async def get_context(self, request: Any, response: Any) -> Context:
        context = self.context_factory(cast(Request, request), None, str(uuid.uuid4()))
        if inspect.isawaitable(context):
            context = await context
        return context

    async def on_ws_connect(self, context: Context) -> UnsetType | dict[str, object] | None:
        params = context.extra.get(PARAMS_KEY)
        try:
            token = token_of(params if isinstance(params, dict) else None)
        except ValueError as exc:
            raise ConnectionRejectionError({"message": str(exc)}) from None
        if token is None:
            return _UNSET
        principal: Principal | None = None
        if self.authenticator is not None:
            try:
                principal = await self.authenticator(token)
            except Exception as exc:
                log.warning("websocket token lookup failed: %s", exc.__class__.__name__)
                raise ConnectionRejectionError({"message": "try again later"}) from None
        if principal is None:
            raise ConnectionRejectionError(
                {"message": "The token is not valid: it is unknown, expired or revoked."}
            )
        context.principal = principal
        return _UNSET

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "websocket":
            await super().__call__(scope, receive, send)
            return
        self.connections += 1
        try:
            await super().__call__(scope, receive, send)
        finally:
            self.connections -= 1


def build_websocket_app(
    schema: ApiSchema,
    *,
    context_factory: WsContextFactory,
    authenticator: WsAuthenticator | None,
    max_subscriptions: int = DEFAULT_MAX_SUBSCRIPTIONS,
    init_timeout: float = DEFAULT_INIT_TIMEOUT,
    keep_alive: float | None = DEFAULT_KEEP_ALIVE,
) -> LiveGraphQL:
    """The ASGI app for WebSocket scopes of ``/graphql``."""
    return LiveGraphQL(
        schema,
        context_factory=context_factory,
        authenticator=authenticator,
        max_subscriptions=max_subscriptions,
        init_timeout=init_timeout,
        keep_alive=keep_alive,
    )


__all__ = ["LiveGraphQL", "WebSocket", "build_websocket_app", "token_of"]
