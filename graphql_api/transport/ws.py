"""GraphQL over WebSocket on ``/graphql``: graphql-transport-ws, and the legacy graphql-ws.

Built on Strawberry's protocol handlers (0.341), which already follow the graphql-transport-ws
specification: ``4400`` for a message that is not valid (not JSON, unknown type, a missing
field), ``4401`` for a ``subscribe`` before ``connection_ack``, ``4403`` when
``connection_init`` is refused, ``4408`` when no ``connection_init`` comes within the timeout,
``4409`` for a second ``subscribe`` with an id still in use, ``4429`` for a second
``connection_init``; ``4406`` for an unknown subprotocol. On close they cancel *and await* every
operation task (the leak of strawberry#3777 is fixed there). What is added here:

* **A size cap**: a message over ``max_message_bytes`` (``Settings.max_request_bytes``, the cap
  of HTTP bodies) closes the connection with ``1009`` ("message too big") before anything
  parses it, ``connection_init`` included. ``statements serve`` sets uvicorn's ``ws_max_size``
  to the same value, so uvicorn refuses such a frame from its header without buffering it;
  the check here covers any other ASGI server.
* **Auth**: the handshake's ``Authorization: Bearer st_...`` header, or in ``connection_init``
  ``{"authorization": "Bearer st_..."}`` (or ``Authorization``) or ``{"token": "st_..."}``.
  No token is anonymous. A token that is malformed, unknown, expired or revoked, or a header
  and a payload carrying different tokens, is refused: graphql-transport-ws closes with
  ``4403`` and a reason saying why; the legacy protocol sends ``connection_error`` (payload
  ``{message, extensions: {code}}``) then closes. When the token cannot be checked (the
  database is down) graphql-transport-ws closes with ``1013`` (try again later). Roles are
  then checked by the resolvers (``eventAppended`` needs ``auditor``).
* **Errors with codes**: every result goes through
  :func:`graphql_api.errors.classify_stream_result`, so errors carry ``extensions.code`` and
  unexpected ones are masked. A document that does not parse or validate, or names no
  operation it can run, gets an ``error`` message (graphql-transport-ws: the list of errors;
  legacy: the first) and the connection stays open.
* **Message shapes**: on both protocols, a message that is not an object, an operation
  without a string ``id``, or one whose ``payload`` is not an object with a string ``query``
  (and an object ``variables``, a string ``operationName``) closes with ``4400`` and a reason
  naming what is wrong; Strawberry's handlers would end the connection with a traceback.
* **Keep-alive**: after ``connection_ack`` the server sends ``ping`` every ``keep_alive``
  seconds (graphql-transport-ws; clients answer ``pong``) or ``ka`` (graphql-ws).
* **A limit** of ``max_subscriptions`` operations per connection (the next one gets an
  ``error`` message for its id, code ``TOO_MANY_SUBSCRIPTIONS``).
* **Shared streams** (graphql-transport-ws): subscribers of ``viewCount`` or ``topViewed`` with
  the same document, operation name, variables and role share one stream, executed and
  encoded once per update; each subscriber gets the latest encoded payload with its own id.
  Those values are the same for everyone (no resolver below them reads the context), and
  executing the selection and running Strawberry's per-result hooks once per subscriber was
  most of the worker's time at 1,000 subscribers. The first result decides: if it is not a
  plain result without errors, every subscriber runs its own stream as before, so errors and
  close codes are exactly Strawberry's.

Strawberry's internals used here, all in the two handler classes: the handlers'
``connection_init_timeout_task``, ``connection_init_received``, ``connection_timed_out``,
``connection_acknowledged``, ``operations`` (graphql-transport-ws) and ``tasks`` (legacy),
``max_subscriptions_per_connection``, ``view``, ``websocket`` and the ASGI adapter's ``ws``;
``Operation`` and its ``send_operation_message``; ``handle_message``, ``handle_start`` and
``handle_subscribe`` as the places where a message is handled.
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

import sqlalchemy as sa
from graphql import FieldNode, GraphQLError, OperationDefinitionNode, OperationType, parse
from starlette.requests import Request
from starlette.types import Message, Receive, Scope, Send
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
from strawberry.subscriptions.protocols.graphql_transport_ws.types import (
    ConnectionInitMessage,
    SubscribeMessage,
)
from strawberry.subscriptions.protocols.graphql_transport_ws.types import (
    ErrorMessage as TransportErrorMessage,
)
from strawberry.subscriptions.protocols.graphql_transport_ws.types import (
    Message as TransportMessage,
)
from strawberry.subscriptions.protocols.graphql_ws.handlers import BaseGraphQLWSHandler
from strawberry.subscriptions.protocols.graphql_ws.types import (
    ConnectionInitMessage as LegacyConnectionInitMessage,
)
from strawberry.subscriptions.protocols.graphql_ws.types import (
    ErrorMessage as LegacyErrorMessage,
)
from strawberry.subscriptions.protocols.graphql_ws.types import OperationMessage, StartMessage
from strawberry.types import ExecutionResult
from strawberry.types.execution import PreExecutionError
from strawberry.types.unset import UNSET, UnsetType

from eventstore.errors import StoreUnavailableError
from graphql_api.context import Context
from graphql_api.errors import (
    SERVICE_UNAVAILABLE,
    TOO_MANY_SUBSCRIPTIONS,
    UNAUTHENTICATED,
    UNAVAILABLE_MESSAGE,
    classify_stream_result,
    coded_error,
    error_entry,
)
from graphql_api.schema.api_schema import ApiSchema
from graphql_api.schema.subscriptions import StreamingSchema
from graphql_api.security.auth import Principal
from graphql_api.settings import DEFAULT_MAX_REQUEST_BYTES

log = logging.getLogger(__name__)
_UNSET: Final[UnsetType] = cast(UnsetType, UNSET)

DEFAULT_MAX_SUBSCRIPTIONS: Final = 50
DEFAULT_INIT_TIMEOUT: Final = 10.0
DEFAULT_KEEP_ALIVE: Final = 15.0
#: Close codes: a message over the size cap, a refusal the client may retry (RFC 6455), and
#: graphql-transport-ws's refused ``connection_init``.
CLOSE_TOO_BIG: Final = 1009
CLOSE_TRY_AGAIN_LATER: Final = 1013
CLOSE_FORBIDDEN: Final = 4403
_TOO_BIG: Final = {"code": CLOSE_TOO_BIG, "reason": "message too big"}
INVALID_TOKEN_MESSAGE: Final = "The token is not valid: it is unknown, expired or revoked."
#: Root fields whose updates are latest values, the same for every subscriber (see above).
SHARED_FIELDS: Final = frozenset({"viewCount", "topViewed"})

WsContextFactory = Callable[[Request, Principal | None, str], Context | Awaitable[Context]]
WsAuthenticator = Callable[[str], Awaitable[Principal | None]]


def _bearer(value: object, where: str) -> str:
    if not isinstance(value, str):
        raise ValueError(f"{where}: must be a string 'Bearer <token>'")
    scheme, _, token = value.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise ValueError(f"{where}: must be 'Bearer <token>'")
    return token.strip()


def token_of(params: dict[str, Any] | None) -> str | None:
    """The bearer token in a ``connection_init`` payload, or None; ValueError if malformed."""
    if not params:
        return None
    for key in ("authorization", "Authorization"):
        if params.get(key) is not None:
            return _bearer(params[key], f"connection_init payload {key}")
    value = params.get("token")
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise ValueError("connection_init payload token: must be a non-empty string")
    return value.strip()


def connection_token(header: str | None, params: dict[str, Any] | None) -> str | None:
    """The token of a connection: the handshake's ``Authorization`` header or the payload's.

    ValueError if either is malformed, or if both are given and differ: which one the client
    meant cannot be guessed, and taking either would act under an identity it may not expect.
    """
    from_header = None if header is None else _bearer(header, "Authorization header")
    from_payload = token_of(params)
    if from_header is not None and from_payload is not None and from_header != from_payload:
        raise ValueError(
            "Authorization header: differs from the token in the connection_init payload; "
            "send one token"
        )
    return from_header if from_header is not None else from_payload


class Refused(ConnectionRejectionError):
    """A refused ``connection_init``: the close code and reason, and the legacy payload."""

    def __init__(
        self,
        message: str,
        code: str,
        *,
        close_code: int = CLOSE_FORBIDDEN,
        reason: str | None = None,
    ) -> None:
        super().__init__(error_entry(message, code))
        self.message = message
        self.close_code = close_code
        # A close reason is at most 123 bytes (RFC 6455).
        self.reason = (reason or f"Forbidden: {message}").encode()[:123].decode(errors="ignore")


#: Per message type, what its ``id`` and ``payload`` must be; the payload's fields below.
_OPERATION_TYPES: Final = {"subscribe", "start"}
_ID_TYPES: Final = {"subscribe", "complete", "start", "stop"}
_PAYLOAD_FIELDS: Final = (
    ("query", str, False),
    ("variables", dict, True),
    ("operationName", str, True),
    ("extensions", dict, True),
)


def message_problem(message: object) -> str | None:
    """What is wrong with a protocol message (either protocol), or None if nothing is.

    Only the shapes Strawberry's handlers take for granted are checked: a message they could
    not index would end the connection with a traceback instead of a close code.
    """
    if not isinstance(message, dict):
        return "a message must be a JSON object"
    kind = message.get("type")
    if not isinstance(kind, str):
        return "type: must be a string"
    if kind in _ID_TYPES:
        identifier = message.get("id")
        if not isinstance(identifier, str) or not identifier:
            return f"{kind} id: must be a non-empty string"
    if kind in _OPERATION_TYPES:
        payload = message.get("payload")
        if not isinstance(payload, dict):
            return f"{kind} payload: must be an object"
        for name, kind_of, optional in _PAYLOAD_FIELDS:
            value = payload.get(name)
            if not (isinstance(value, kind_of) or (optional and value is None)):
                article = "an object" if kind_of is dict else "a string"
                return f"{kind} payload.{name}: must be {article}"
    return None


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
                # Pre-execution errors too: the classified errors are plain GraphQLErrors, so
                # Strawberry answers a syntax error (or an unknown operation name) with an
                # ``error`` message instead of closing the connection with 4400.
                if isinstance(result, ExecutionResult):
                    classify_stream_result(result, production=self.production)
                yield result
        finally:
            await results.aclose()


class _Params:
    """Stores the connection_init payload where :meth:`LiveGraphQL.on_ws_connect` finds it."""

    @staticmethod
    def keep(context: Any, payload: object) -> None:
        if isinstance(context, Context):
            context.connection_params = payload if isinstance(payload, dict) else {}


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

    async def handle_message(self, message: TransportMessage) -> None:
        problem = message_problem(message)
        if problem is not None:
            await self.handle_invalid_message(problem)
            return
        await super().handle_message(message)

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
        # Strawberry's own, but a refusal closes with the refusal's code and reason instead
        # of always 4403 "Forbidden", so that the client learns why.
        if self.connection_timed_out:
            return
        if self.connection_init_timeout_task:
            self.connection_init_timeout_task.cancel()
        payload = message.get("payload", {})
        if not isinstance(payload, dict):
            await self.websocket.close(code=4400, reason="Invalid connection init payload")
            return
        if self.connection_init_received:
            await self.websocket.close(code=4429, reason="Too many initialisation requests")
            return
        self.connection_init_received = True
        _Params.keep(self.context, payload)
        try:
            ack = await self.view.on_ws_connect(self.context)
        except Refused as refused:
            await self.websocket.close(code=refused.close_code, reason=refused.reason)
            return
        except ConnectionRejectionError:
            await self.websocket.close(code=CLOSE_FORBIDDEN, reason="Forbidden")
            return
        if isinstance(ack, UnsetType):
            await self.send_message({"type": "connection_ack"})
        else:
            await self.send_message({"type": "connection_ack", "payload": ack})
        self.connection_acknowledged = True
        interval = getattr(self.view, "ping_interval", None)
        if interval and self.keep_alive_task is None:
            self.keep_alive_task = asyncio.create_task(self._pings(float(interval)))

    async def handle_subscribe(self, message: SubscribeMessage) -> None:
        limit = self.max_subscriptions_per_connection
        if (
            self.connection_acknowledged
            and limit is not None
            and message["id"] not in self.operations  # Strawberry closes with 4409 then
            and len(self.operations) >= limit
        ):
            error = _limit_error(limit)
            await self.send_message(
                TransportErrorMessage(id=message["id"], type="error", payload=[error.formatted])
            )
            return
        await super().handle_subscribe(message)

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

    async def handle_message(self, message: OperationMessage) -> None:
        problem = message_problem(message)
        if problem is not None:
            # The legacy protocol has no code for this; graphql-transport-ws's is clear.
            await self.websocket.close(code=4400, reason=problem)
            return
        await super().handle_message(message)

    async def handle_connection_init(self, message: LegacyConnectionInitMessage) -> None:
        _Params.keep(self.context, message.get("payload"))
        await super().handle_connection_init(message)

    async def handle_start(self, message: StartMessage) -> None:
        operation_id = message["id"]
        limit = self.max_subscriptions_per_connection
        if (
            self.connection_acknowledged
            and limit is not None
            and operation_id not in self.tasks  # Strawberry replaces that operation
            and len(self.tasks) >= limit
        ):
            await self.send_message(
                LegacyErrorMessage(
                    type="error", id=operation_id, payload=_limit_error(limit).formatted
                )
            )
            return
        await super().handle_start(message)


def _limit_error(limit: int) -> GraphQLError:
    return coded_error(
        f"Subscription limit reached: this connection runs {limit} operations, the most it "
        "may; complete one first.",
        TOO_MANY_SUBSCRIPTIONS,
    )


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
        max_message_bytes: int = DEFAULT_MAX_REQUEST_BYTES,
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
        self.max_message_bytes = max_message_bytes
        self.connections = 0
        self.shared_streams = SharedStreams()

    async def get_context(self, request: Any, response: Any) -> Context:
        context = self.context_factory(cast(Request, request), None, str(uuid.uuid4()))
        if inspect.isawaitable(context):
            context = await context
        return context

    async def on_ws_connect(self, context: Context) -> UnsetType | dict[str, object] | None:
        context.principal = await self.principal_of(context)
        return _UNSET

    async def principal_of(self, context: Context) -> Principal | None:
        """The connection's principal (None: anonymous); :class:`Refused` if it has none."""
        params = context.connection_params
        header = context.request.headers.get("authorization") if context.request else None
        try:
            token = connection_token(header, params)
        except ValueError as exc:
            raise Refused(str(exc), UNAUTHENTICATED) from None
        if token is None:
            return None
        principal: Principal | None = None
        if self.authenticator is not None:
            try:
                principal = await self.authenticator(token)
            except (StoreUnavailableError, sa.exc.DBAPIError, OSError, TimeoutError) as exc:
                log.warning("websocket token lookup failed: %s", exc.__class__.__name__)
                raise Refused(
                    UNAVAILABLE_MESSAGE,
                    SERVICE_UNAVAILABLE,
                    close_code=CLOSE_TRY_AGAIN_LATER,
                    reason="Try again later: the token could not be checked",
                ) from None
        if principal is None:
            raise Refused(INVALID_TOKEN_MESSAGE, UNAUTHENTICATED)
        return principal

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "websocket":
            await super().__call__(scope, receive, send)
            return
        self.connections += 1
        try:
            capped = _SizeCap(receive, send, self.max_message_bytes)
            await super().__call__(scope, capped.receive, capped.send)
        finally:
            self.connections -= 1


class _SizeCap:
    """An ASGI WebSocket's receive and send, closing with 1009 on a message over ``limit``.

    The message is dropped before anything decodes it, and the app sees a disconnect; what
    the app sends after that is dropped too, since the connection is closing.
    """

    def __init__(self, receive: Receive, send: Send, limit: int) -> None:
        self._receive = receive
        self._send = send
        self.limit = limit
        self.closed = False

    def too_big(self, message: Message) -> bool:
        data = message.get("bytes")
        if data is not None:
            return len(data) > self.limit
        text = message.get("text") or ""
        # A character is 1 to 4 bytes in UTF-8: most messages are decided without encoding.
        if len(text) > self.limit:
            return True
        return len(text) * 4 > self.limit and len(text.encode()) > self.limit

    async def receive(self) -> Message:
        message = await self._receive()
        if message["type"] == "websocket.receive" and self.too_big(message):
            del message
            if not self.closed:
                self.closed = True
                await self._send({"type": "websocket.close", **_TOO_BIG})
            return {"type": "websocket.disconnect", **_TOO_BIG}
        return message

    async def send(self, message: Message) -> None:
        if not self.closed:
            await self._send(message)


def build_websocket_app(
    schema: ApiSchema,
    *,
    context_factory: WsContextFactory,
    authenticator: WsAuthenticator | None,
    max_subscriptions: int = DEFAULT_MAX_SUBSCRIPTIONS,
    init_timeout: float = DEFAULT_INIT_TIMEOUT,
    keep_alive: float | None = DEFAULT_KEEP_ALIVE,
    max_message_bytes: int = DEFAULT_MAX_REQUEST_BYTES,
) -> LiveGraphQL:
    """The ASGI app for WebSocket scopes of ``/graphql``."""
    return LiveGraphQL(
        schema,
        context_factory=context_factory,
        authenticator=authenticator,
        max_subscriptions=max_subscriptions,
        init_timeout=init_timeout,
        keep_alive=keep_alive,
        max_message_bytes=max_message_bytes,
    )


__all__ = [
    "LiveGraphQL",
    "Refused",
    "SharedStreams",
    "WebSocket",
    "build_websocket_app",
    "connection_token",
    "token_of",
]
