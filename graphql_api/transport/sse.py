"""Subscriptions over Server-Sent Events, for dashboards behind proxies that block WebSockets.

``GET /graphql/stream?query=...&variables=...&operationName=...`` (what ``EventSource`` can send)
or ``POST /graphql/stream`` with a JSON body ``{query, variables, operationName}`` and
``Accept: text/event-stream``. This is the "distinct connections" mode of the graphql-sse
protocol: each result is ``event: next`` with the JSON result as ``data``; the stream ends with
``event: complete``. A comment line is sent every ``keep_alive`` seconds so that proxies keep the
connection open. Only subscriptions are served here (queries and mutations use ``/graphql``).

Auth: ``Authorization: Bearer <token>`` as on ``/graphql`` (401 when the token is not valid,
503 when it cannot be checked). A request that fails before execution (parse, validation,
variables, a limit) gets 400 with a JSON body ``{"errors": [...]}``; a POST body over
``max_body_bytes`` (``Settings.max_request_bytes``) gets 413. Every error has
``extensions.code``.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from typing import Any, Final

import orjson
import sqlalchemy as sa
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from strawberry.types import ExecutionResult
from strawberry.types.execution import PreExecutionError
from strawberry.types.graphql import OperationType

from eventstore.errors import StoreUnavailableError
from graphql_api.context import Context
from graphql_api.errors import (
    BAD_REQUEST,
    SERVICE_UNAVAILABLE,
    UNAUTHENTICATED,
    UNAVAILABLE_MESSAGE,
    classify_stream_result,
    error_entry,
)
from graphql_api.schema.api_schema import ApiSchema
from graphql_api.schema.subscriptions import StreamingSchema
from graphql_api.security.auth import Principal
from graphql_api.settings import DEFAULT_MAX_REQUEST_BYTES

log = logging.getLogger(__name__)

DEFAULT_KEEP_ALIVE: Final = 15.0

SseContextFactory = Callable[[Request, Principal | None, str], Context | Awaitable[Context]]
SseAuthenticator = Callable[[str], Awaitable[Principal | None]]


class _Refusal(Exception):
    def __init__(self, status: int, message: str, code: str = BAD_REQUEST) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code


def _error(status: int, message: str, code: str = BAD_REQUEST) -> Response:
    return JSONResponse({"errors": [error_entry(message, code)]}, status_code=status)


def _result_body(result: ExecutionResult) -> dict[str, Any]:
    body: dict[str, Any] = {}
    if result.data is not None or not result.errors:
        body["data"] = result.data
    if result.errors:
        body["errors"] = [dict(e.formatted) for e in result.errors]
    return body


class SSEEndpoint:
    """A Starlette endpoint: ``Route("/graphql/stream", SSEEndpoint(...), methods=[...])``."""

    def __init__(
        self,
        schema: ApiSchema,
        *,
        context_factory: SseContextFactory,
        authenticator: SseAuthenticator | None,
        keep_alive: float = DEFAULT_KEEP_ALIVE,
        max_body_bytes: int = DEFAULT_MAX_REQUEST_BYTES,
    ) -> None:
        self.schema = schema
        self.max_body_bytes = max_body_bytes
        self._streaming = StreamingSchema(schema)
        self.context_factory = context_factory
        self.authenticator = authenticator
        self.keep_alive = keep_alive
        self.streams = 0

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        request = Request(scope, receive)
        response = await self.handle(request)
        await response(scope, receive, send)

    async def _params(self, request: Request) -> tuple[str, dict[str, Any] | None, str | None]:
        if request.method == "GET":
            query = request.query_params.get("query")
            raw_variables = request.query_params.get("variables")
            operation_name = request.query_params.get("operationName")
            try:
                variables = orjson.loads(raw_variables) if raw_variables else None
            except orjson.JSONDecodeError:
                raise ValueError("`variables` must be URL-encoded JSON") from None
        else:
            if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
                raise ValueError("POST bodies must be application/json")
            try:
                data = orjson.loads(await self._body(request))
            except orjson.JSONDecodeError:
                raise ValueError("the request body is not valid JSON") from None
            if not isinstance(data, dict):
                raise ValueError("the request body must be a JSON object")
            query, variables, operation_name = (
                data.get("query"),
                data.get("variables"),
                data.get("operationName"),
            )
        if not isinstance(query, str) or not query.strip():
            raise ValueError("send a subscription in `query`")
        if variables is not None and not isinstance(variables, dict):
            raise ValueError("`variables` must be an object")
        if operation_name is not None and not isinstance(operation_name, str):
            raise ValueError("`operationName` must be a string")
        return query, variables, operation_name

    async def _body(self, request: Request) -> bytes:
        """The body, refused (413) as soon as it is over the cap, before it is all read."""
        too_large = _Refusal(413, f"The request body is larger than {self.max_body_bytes} bytes.")
        length = request.headers.get("content-length", "")
        if length.isdigit() and int(length) > self.max_body_bytes:
            raise too_large
        chunks: list[bytes] = []
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > self.max_body_bytes:
                raise too_large
            chunks.append(chunk)
        return b"".join(chunks)

    async def _principal(self, request: Request) -> Principal | None:
        header = request.headers.get("authorization")
        if header is None:
            return None
        scheme, _, token = header.strip().partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise _Refusal(
                401, "Send credentials as 'Authorization: Bearer <token>'.", UNAUTHENTICATED
            )
        principal: Principal | None = None
        if self.authenticator is not None:
            try:
                principal = await self.authenticator(token.strip())
            except (StoreUnavailableError, sa.exc.DBAPIError, OSError, TimeoutError) as exc:
                log.warning("token lookup failed: %s", exc.__class__.__name__)
                raise _Refusal(503, UNAVAILABLE_MESSAGE, SERVICE_UNAVAILABLE) from None
        if principal is None:
            raise _Refusal(
                401, "The token is not valid: it is unknown, expired or revoked.", UNAUTHENTICATED
            )
        return principal

    async def handle(self, request: Request) -> Response:
        if request.method not in ("GET", "POST"):
            return Response(status_code=405, headers={"allow": "GET, POST"})
        try:
            query, variables, operation_name = await self._params(request)
            principal = await self._principal(request)
        except ValueError as exc:
            return _error(400, str(exc))
        except _Refusal as refusal:
            return _error(refusal.status, refusal.message, refusal.code)
        context = self.context_factory(request, principal, str(uuid.uuid4()))
        if inspect.isawaitable(context):
            context = await context
        results = await self._streaming.stream(
            query,
            variable_values=variables,
            context_value=context,
            operation_name=operation_name,
            allowed_operation_types=(OperationType.SUBSCRIPTION,),
        )
        # Parse and validation errors come at once; a subscription's first value may take long
        # (statementPublished), so the stream starts without waiting for it.
        pending: asyncio.Task[Any] = asyncio.ensure_future(_first(results))
        done, _ = await asyncio.wait({pending}, timeout=0.2)
        if done:
            first = pending.result()
            if isinstance(first, PreExecutionError) or first is None:
                await results.aclose()
                if first is None:
                    return _error(400, "The subscription ended before its first result.")
                classify_stream_result(first, production=self.schema.production)
                errors = [dict(e.formatted) for e in first.errors or ()]
                return JSONResponse({"errors": errors}, status_code=400)
        return StreamingResponse(
            self._events(pending, results),
            media_type="text/event-stream",
            headers={"cache-control": "no-cache", "x-accel-buffering": "no"},
        )

    async def _events(
        self, first: asyncio.Task[Any], results: AsyncGenerator[Any, None]
    ) -> AsyncIterator[str]:
        self.streams += 1
        pending: asyncio.Task[Any] | None = first
        try:
            yield ":\n\n"  # the headers go out now
            while True:
                if pending is None:
                    pending = asyncio.ensure_future(_first(results))
                done, _ = await asyncio.wait({pending}, timeout=self.keep_alive)
                if not done:
                    yield ":\n\n"
                    continue
                result, pending = pending.result(), None
                if result is None:
                    break
                if isinstance(result, ExecutionResult):
                    yield _next(result, self.schema.production)
            yield "event: complete\ndata:\n\n"
        finally:
            self.streams -= 1
            if pending is not None:
                pending.cancel()
                with contextlib.suppress(BaseException):
                    await pending
            with contextlib.suppress(Exception):
                await results.aclose()


async def _first(results: AsyncGenerator[Any, None]) -> Any:
    try:
        return await results.__anext__()
    except StopAsyncIteration:
        return None


def _next(result: ExecutionResult, production: bool) -> str:
    classify_stream_result(result, production=production)
    return "event: next\ndata: " + orjson.dumps(_result_body(result)).decode() + "\n\n"
