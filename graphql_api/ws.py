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
* **Shared streams** (graphql-transport-ws): subscribers of ``viewCount`` or ``topViewed`` with
  the same document, operation name, variables and role share one stream, executed and
  encoded once per update; each subscriber gets the latest encoded payload with its own id.
  Those values are the same for everyone (no resolver below them reads the context), and
  executing the selection and running Strawberry's per-result hooks once per subscriber was
  most of the worker's time at 1,000 subscribers. The first result decides: if it is not a
  plain result without errors, every subscriber runs its own stream as before, so errors and
  close codes are exactly Strawberry's.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
import json
import logging
import uuid
from collections.abc import AsyncGenerator, Awaitable, Callable, Hashable
from datetime import timedelta
from typing import Any, Final, cast

from graphql import FieldNode, GraphQLError, OperationDefinitionNode, OperationType, parse
from starlette.requests import Request
from starlette.websockets import WebSocket, WebSocketDisconnect
from strawberry.asgi import GraphQL
from strawberry.exceptions import ConnectionRejectionError
from strawberry.http.exceptions import WebSocketDisconnected
from strawberry.schema import BaseSchema
from strawberry.subscriptions import GRAPHQL_TRANSPORT_WS_PROTOCOL, GRAPHQL_WS_PROTOCOL
from strawberry.subscriptions.protocols.graphql_transport_ws.handlers import (
    BaseGraphQLTransportWSHandler,
    Operation,
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
from graphql_api.subscriptions import StreamingSchema

log = logging.getLogger(__name__)
_UNSET: Final[UnsetType] = cast(UnsetType, UNSET)

DEFAULT_MAX_SUBSCRIPTIONS: Final = 50
DEFAULT_INIT_TIMEOUT: Final = 10.0
DEFAULT_KEEP_ALIVE: Final = 15.0
PARAMS_KEY: Final = "connection_params"
#: Root fields whose updates are latest values, the same for every subscriber (see above).
SHARED_FIELDS: Final = frozenset({"viewCount", "topViewed"})

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
        self._schema = StreamingSchema(schema)
        self.production = schema.production

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
                    classify_result(result, production=self.production)
                yield result
        finally:
            await results.aclose()


class _Params:
    """Stores the connection_init payload where :meth:`LiveGraphQL.on_ws_connect` finds it."""

    @staticmethod
    def keep(context: Any, payload: object) -> None:
        if isinstance(context, Context):
            context.extra[PARAMS_KEY] = payload if isinstance(payload, dict) else {}


@functools.lru_cache(maxsize=256)
def _shareable(query: str, operation_name: str | None) -> bool:
    """Whether the operation subscribes to one field of SHARED_FIELDS and nothing else."""
    try:
        document = parse(query)
    except GraphQLError:
        return False  # Strawberry's own path reports it
    operations = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
    if operation_name is not None:
        operations = [o for o in operations if o.name and o.name.value == operation_name]
    if len(operations) != 1:
        return False
    operation = operations[0]
    selections = operation.selection_set.selections
    if operation.operation != OperationType.SUBSCRIPTION or operation.directives:
        return False
    if len(selections) != 1 or not isinstance(selections[0], FieldNode):
        return False
    return selections[0].name.value in SHARED_FIELDS and not selections[0].directives


class _SharedStream:
    """One stream's latest encoded payload, and the wake-ups of the subscribers sharing it."""

    def __init__(self) -> None:
        self.members: set[asyncio.Event] = set()
        self.latest = ""
        self.seq = 0  # results published so far
        self.decided = asyncio.Event()  # set once the first result says whether it is shared
        self.shared = False
        self.done = False
        self.task: asyncio.Task[None] | None = None

    def publish(self, payload: str) -> None:
        self.latest = payload
        self.seq += 1
        for wake in self.members:
            wake.set()

    def finish(self) -> None:
        self.done = True
        self.decided.set()
        for wake in self.members:
            wake.set()


class SharedStreams:
    """The shared streams of one app (one per process), by document, variables and role."""

    def __init__(self) -> None:
        self._streams: dict[Hashable, _SharedStream] = {}

    def __len__(self) -> int:
        return len(self._streams)

    @staticmethod
    def key(operation: Operation[Context, None], context: Context) -> Hashable | None:
        if not _shareable(operation.query, operation.operation_name):
            return None
        try:
            variables = json.dumps(operation.variables or {}, sort_keys=True)
        except (TypeError, ValueError):
            return None
        role = context.principal.role if context.principal is not None else None
        return (operation.query, operation.operation_name, variables, role)

    def join(
        self,
        key: Hashable,
        operation: Operation[Context, None],
        context: Context,
        schema: Any,
        encode: Callable[[object], str | bytes],
    ) -> tuple[_SharedStream, asyncio.Event]:
        stream = self._streams.get(key)
        if stream is None or stream.done:
            stream = self._streams[key] = _SharedStream()
            # The first subscriber's context serves everyone: nothing below these fields
            # reads it (SHARED_FIELDS), and the role is part of the key.
            stream.task = asyncio.create_task(
                self._run(key, stream, operation, context, schema, encode),
                name="shared-subscription",
            )
        wake = asyncio.Event()
        stream.members.add(wake)
        return stream, wake

    def leave(self, key: Hashable, stream: _SharedStream, wake: asyncio.Event) -> None:
        stream.members.discard(wake)
        if not stream.members:
            if self._streams.get(key) is stream:
                del self._streams[key]
            if stream.task is not None and not stream.task.done():
                stream.task.cancel()

    async def _run(
        self,
        key: Hashable,
        stream: _SharedStream,
        operation: Operation[Context, None],
        context: Context,
        schema: Any,
        encode: Callable[[object], str | bytes],
    ) -> None:
        try:
            results = await schema.stream(
                operation.query,
                variable_values=operation.variables,
                context_value=context,
                operation_name=operation.operation_name,
            )
            async with contextlib.aclosing(results):
                async for result in results:
                    if not stream.shared:
                        if (
                            not isinstance(result, ExecutionResult)
                            or isinstance(result, PreExecutionError)
                            or result.errors
                        ):
                            return  # each subscriber runs its own stream instead
                        stream.shared = True
                        stream.decided.set()
                    payload: dict[str, Any] = {"data": result.data}
                    if result.errors:
                        payload["errors"] = [e.formatted for e in result.errors]
                    if result.extensions:
                        payload["extensions"] = result.extensions
                    encoded = encode(payload)
                    stream.publish(encoded if isinstance(encoded, str) else encoded.decode())
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("shared subscription stream failed")
        finally:
            if self._streams.get(key) is stream:
                del self._streams[key]
            stream.finish()


class TransportWSHandler(BaseGraphQLTransportWSHandler[Context, None]):
    """graphql-transport-ws with server pings after the ack, and shared streams."""

    keep_alive_task: asyncio.Task[None] | None = None

    async def run_operation(self, operation: Operation[Context, None]) -> None:
        streams = getattr(self.view, "shared_streams", None)
        if isinstance(streams, SharedStreams) and isinstance(self.context, Context):
            key = streams.key(operation, self.context)
            if key is not None and await self._run_shared(streams, key, operation):
                return
        await super().run_operation(operation)

    async def _run_shared(
        self, streams: SharedStreams, key: Hashable, operation: Operation[Context, None]
    ) -> bool:
        """Send the shared stream's payloads; False when it turned out not to be shared."""
        encode = self.view.encode_json
        stream, wake = streams.join(key, operation, self.context, self.schema, encode)
        # Strawberry's ASGI adapter keeps the Starlette WebSocket as ``ws``; the payload is
        # already encoded, so it goes out as text without another json.dumps.
        ws: WebSocket = self.websocket.ws  # type: ignore[attr-defined]
        prefix = f'{{"id":{json.dumps(operation.id)},"type":"next","payload":'
        try:
            await stream.decided.wait()
            if not stream.shared:
                return False
            sent = 0
            while True:
                if stream.seq > sent:
                    # Only the latest payload: a slow consumer skips intermediate values.
                    sent = stream.seq
                    await ws.send_text(prefix + stream.latest + "}")
                elif stream.done:
                    break
                else:
                    wake.clear()
                    await wake.wait()
        except (WebSocketDisconnect, WebSocketDisconnected):
            return True  # the connection is gone; the handler's shutdown cleans up
        finally:
            streams.leave(key, stream, wake)
        await operation.send_operation_message({"id": operation.id, "type": "complete"})
        return True

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
        self.shared_streams = SharedStreams()

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


__all__ = ["LiveGraphQL", "SharedStreams", "WebSocket", "build_websocket_app", "token_of"]
