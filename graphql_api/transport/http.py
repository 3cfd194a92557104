"""GraphQL over HTTP: the ``/graphql`` endpoint, as a small ASGI app around ``schema.execute``.

It follows the GraphQL-over-HTTP specification (graphql-http's ``auditServer`` passes every
audit):

* **Media types.** The response type is negotiated from ``Accept``:
  ``application/graphql-response+json`` when the client prefers it, else ``application/json``
  (also for ``*/*`` and no ``Accept``); 406 when neither is acceptable. POST bodies must be
  ``application/json`` (UTF-8).
* **Status codes.** With ``application/json`` every well-formed request gets 200, even when
  the document does not parse or validate. With ``application/graphql-response+json`` a
  request that fails before execution (parse, validation, variable coercion, a limit, an
  unknown persisted query) gets 400 and the body has no ``data`` entry. Requests that are
  not well-formed get 4xx with either type: 400 (bad JSON or parameters, no query), 401 (a
  bad token), 405 (another method, or a mutation over GET), 406, 413 (a body over
  ``max_body_bytes``: ``Settings.max_request_bytes``, 1 MB by default), 415 (another content
  type).
* **GET** runs queries only (a mutation gets 405 with ``Allow: POST``); ``variables`` and
  ``extensions`` are URL-encoded JSON. Without ``production``, a browser GET without a query
  gets GraphiQL (:mod:`graphql_api.transport.graphiql`, served from the package).
* **CSRF.** A POST whose content type is a "simple" one (text/plain, form-urlencoded,
  multipart/form-data, or none) is refused unless it carries a preflight header
  (``GraphQL-Require-Preflight``, ``X-GraphQL-CSRF``, ``Apollo-Require-Preflight`` or
  ``X-Apollo-Operation-Name``); with one it is still refused (415), since only JSON is read.
  A GET needs such a header when a browser says it is cross-origin (``Sec-Fetch-Site:
  cross-site|same-site``, or an ``Origin`` that is not this server's); GETs from non-browser
  clients and same-origin pages pass, because graphql-http's audits (5A70, D6D5, 6A70) send
  header-less GETs and require 200. GETs can only run queries, and credentials are bearer
  tokens, which browsers never attach by themselves. Pages on ``trusted_origins`` (the CORS
  origins, :mod:`graphql_api.transport.cors`) pass as same-origin pages do. ``strict_csrf=True``
  refuses every GET without a preflight header (Apollo's rule; those three MAY audits then fail).
* **Batching** is off: a JSON array body gets 400. Each operation has its own cost limit;
  persisted queries and HTTP/2 make batches unnecessary.
* **Auth.** ``Authorization: Bearer <token>``; a malformed, unknown, expired or revoked token
  gets 401 (``UNAUTHENTICATED``) for the whole request, so nothing runs. No header means
  anonymous; resolvers check roles (:func:`graphql_api.security.auth.require_role`).
* Every response carries ``X-Request-ID`` (the client's, if well-formed, else a new UUID): the
  correlation id of the events the request's commands cause.
* **Reads at or after a position.** ``X-Min-Position: P`` runs the operation once every read
  model reflects the log up to P (:mod:`graphql_api.service_layer.consistency`); past the bound the
  request gets ``POSITION_NOT_REACHED`` (a request error: 200 with ``application/json``, 503 with
  ``application/graphql-response+json``, ``Retry-After`` either way) and nothing runs. A value
  that is not a position gets 400.
"""

from __future__ import annotations

import inspect
import logging
import re
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

import orjson
import sqlalchemy as sa
from graphql import GraphQLError
from starlette.datastructures import QueryParams
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send
from strawberry.exceptions import MissingQueryError
from strawberry.schema.exceptions import CannotGetOperationTypeError, InvalidOperationTypeError
from strawberry.types import ExecutionResult
from strawberry.types.execution import PreExecutionError
from strawberry.types.graphql import OperationType

from eventstore import read_cache
from eventstore.errors import StoreUnavailableError
from graphql_api.context import Context
from graphql_api.errors import (
    BAD_REQUEST,
    INTERNAL_MESSAGE,
    INTERNAL_SERVER_ERROR,
    POSITION_NOT_REACHED,
    SERVICE_UNAVAILABLE,
    UNAUTHENTICATED,
    UNAVAILABLE_MESSAGE,
    coded_error,
    error_entry,
    is_request_error,
    iter_codes,
)
from graphql_api.metrics import Metrics, sql_statement_scope
from graphql_api.schema.api_schema import ApiSchema
from graphql_api.security.auth import Principal
from graphql_api.service_layer.consistency import (
    MIN_POSITION_HEADER,
    Consistency,
    not_reached,
    parse_min_position,
)
from graphql_api.settings import DEFAULT_MAX_REQUEST_BYTES
from graphql_api.transport.apq import PersistedQueries, PersistedQueryError, Resolved
from graphql_api.transport.graphiql import GraphiQLPage

log = logging.getLogger("graphql_api")

JSON: Final = "application/json"
GRAPHQL_RESPONSE_JSON: Final = "application/graphql-response+json"
DEFAULT_MAX_BODY_BYTES: Final = DEFAULT_MAX_REQUEST_BYTES
PREFLIGHT_HEADERS: Final = (
    "graphql-require-preflight",
    "x-graphql-csrf",
    "apollo-require-preflight",
    "x-apollo-operation-name",
)
SIMPLE_CONTENT_TYPES: Final = frozenset(
    {"", "text/plain", "application/x-www-form-urlencoded", "multipart/form-data"}
)
_REQUEST_ID: Final = re.compile(r"[A-Za-z0-9._:\-]{1,128}")
_OPERATION_NAME: Final = re.compile(
    r"\s*(?:query|mutation|subscription)\s+([_A-Za-z][_0-9A-Za-z]*)"
)
_QUERY_ONLY: Final = frozenset({OperationType.QUERY})
_QUERY_OR_MUTATION: Final = frozenset({OperationType.QUERY, OperationType.MUTATION})

ContextFactory = Callable[[Request, Principal | None, str], Context | Awaitable[Context]]
Authenticator = Callable[[str], Awaitable[Principal | None]]
#: Where the read models stand, for X-Min-Position (None until the app has started).
ConsistencySource = Callable[[], Consistency | None]


class HTTPError(Exception):
    """A request that is refused before (or instead of) GraphQL execution."""

    def __init__(
        self,
        status: int,
        message: str,
        code: str = BAD_REQUEST,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.headers = dict(headers or {})


def negotiate(accept: str | None) -> str | None:
    """The response media type for an ``Accept`` header, or None if neither is acceptable.

    The supported type with the highest q wins; at equal q the more specific range, then the
    one listed first. ``*/*`` and ``application/*`` give ``application/json``.
    """
    if accept is None or not accept.strip():
        return JSON
    best: tuple[float, int, int] | None = None
    chosen: str | None = None
    for position, part in enumerate(accept.split(",")):
        media, *params = (p.strip() for p in part.split(";"))
        media = media.lower()
        q = 1.0
        for param in params:
            key, _, value = param.partition("=")
            if key.strip().lower() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        if q <= 0:
            continue
        for candidate, specificity in _matches(media):
            score = (q, specificity, -position)
            if best is None or score > best:
                best, chosen = score, candidate
    return chosen


def _matches(media: str) -> list[tuple[str, int]]:
    if media == GRAPHQL_RESPONSE_JSON:
        return [(GRAPHQL_RESPONSE_JSON, 2)]
    if media == JSON:
        return [(JSON, 2)]
    if media in ("*/*", "application/*"):
        return [(JSON, 0)]
    return []


def csrf_refused(
    method: str,
    headers: Mapping[str, str],
    *,
    strict: bool,
    trusted_origins: frozenset[str] = frozenset(),
) -> bool:
    """Whether a request is one a browser may send cross-site without a CORS preflight.

    A GET from a page on one of ``trusted_origins`` (exact ``Origin`` values, which a page
    cannot forge) is treated as a same-origin one.
    """
    if any(headers.get(name) for name in PREFLIGHT_HEADERS):
        return False
    if method == "POST":
        media = headers.get("content-type", "").split(";", 1)[0].strip().lower()
        return media in SIMPLE_CONTENT_TYPES
    if strict:
        return True
    origin = headers.get("origin")
    if origin is not None and origin in trusted_origins:
        return False
    if headers.get("sec-fetch-site", "").lower() in ("cross-site", "same-site"):
        return True
    # Compared without the scheme: a TLS-terminating proxy may pass https requests as http.
    if origin is None:
        return False
    return origin.partition("://")[2].lower() != headers.get("host", "").lower()


def _json_object(value: str | None, name: str) -> dict[str, Any] | None:
    """A URL parameter holding JSON (or nothing)."""
    if value is None or value == "":
        return None
    try:
        decoded = orjson.loads(value)
    except orjson.JSONDecodeError:
        raise HTTPError(400, f"The `{name}` parameter is not valid JSON.") from None
    if decoded is not None and not isinstance(decoded, dict):
        raise HTTPError(400, f"The `{name}` parameter must be a JSON object.")
    return decoded


def _parameters(
    data: Mapping[str, Any],
) -> tuple[str | None, str | None, dict[str, Any] | None, dict[str, Any] | None]:
    query = data.get("query")
    if query is not None and not isinstance(query, str):
        raise HTTPError(400, "`query` must be a string.")
    operation_name = data.get("operationName")
    if operation_name is not None and not isinstance(operation_name, str):
        raise HTTPError(400, "`operationName` must be a string.")
    variables = data.get("variables")
    if variables is not None and not isinstance(variables, dict):
        raise HTTPError(400, "`variables` must be an object.")
    extensions = data.get("extensions")
    if extensions is not None and not isinstance(extensions, dict):
        raise HTTPError(400, "`extensions` must be an object.")
    return query, operation_name, variables, extensions


async def _read_body(receive: Receive, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnect
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise HTTPError(413, f"The request body is larger than {limit} bytes.")
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def _operation_label(operation_name: str | None, query: str | None) -> str | None:
    if operation_name:
        return operation_name
    if query:
        match = _OPERATION_NAME.match(query)
        if match:
            return match.group(1)
    return None


class GraphQLHTTP:
    """The ``/graphql`` endpoint (an ASGI app); build it with :func:`build_graphql_app`."""

    def __init__(
        self,
        schema: ApiSchema,
        *,
        context_factory: ContextFactory,
        production: bool = False,
        authenticator: Authenticator | None = None,
        persisted_queries: PersistedQueries | None = None,
        metrics: Metrics | None = None,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
        graphiql: bool | None = None,
        strict_csrf: bool = False,
        trusted_origins: frozenset[str] = frozenset(),
        websocket_app: ASGIApp | None = None,
        consistency: ConsistencySource | None = None,
    ) -> None:
        self.schema = schema
        self.context_factory = context_factory
        self.production = production
        self.authenticator = authenticator
        self.persisted_queries = persisted_queries
        self.metrics = metrics
        self.max_body_bytes = max_body_bytes
        self.graphiql = (not production) if graphiql is None else graphiql
        self.strict_csrf = strict_csrf
        self.trusted_origins = trusted_origins
        self.websocket_app = websocket_app
        self.consistency = consistency
        self._graphiql = GraphiQLPage() if self.graphiql else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            response = await self.handle(scope, receive)
            await response(scope, receive, send)
        elif scope["type"] == "websocket":
            if self.websocket_app is not None:
                await self.websocket_app(scope, receive, send)
            else:
                await send({"type": "websocket.close", "code": 1008})

    async def handle(self, scope: Scope, receive: Receive) -> Response:
        """Answer one HTTP request; never raises."""
        started = time.perf_counter()
        # One dict, built once: ASGI header names are lowercase; a repeated header keeps
        # its last value.
        headers = {
            name.decode("latin-1"): value.decode("latin-1") for name, value in scope["headers"]
        }
        given_id = headers.get("x-request-id", "")
        request_id = given_id if _REQUEST_ID.fullmatch(given_id) else str(uuid.uuid4())
        state: dict[str, Any] = {"media": JSON, "operation": None}
        with sql_statement_scope() as sql:
            try:
                response = await self._handle(scope, receive, headers, request_id, state)
            except HTTPError as exc:
                response = self._error(exc.status, exc.message, exc.code, state, exc.headers)
            except ClientDisconnect:
                response = Response(status_code=400)
            except Exception:
                log.exception("unexpected error answering request %s", request_id)
                response = self._error(500, INTERNAL_MESSAGE, INTERNAL_SERVER_ERROR, state)
        response.headers["x-request-id"] = request_id
        if self.metrics is not None:
            self.metrics.observe_request(
                state["operation"], response.status_code, time.perf_counter() - started, sql[0]
            )
        return response

    async def _handle(
        self,
        scope: Scope,
        receive: Receive,
        headers: Mapping[str, str],
        request_id: str,
        state: dict[str, Any],
    ) -> Response:
        method = scope["method"]
        if method not in ("GET", "POST"):
            raise HTTPError(
                405, "GraphQL is served over GET and POST.", headers={"allow": "GET, POST"}
            )
        accept = headers.get("accept")
        params = QueryParams(scope.get("query_string", b"")) if method == "GET" else None
        if (
            params is not None
            and self._graphiql is not None
            and accept is not None
            and "text/html" in accept
            and "query" not in params
            and "extensions" not in params
        ):
            return self._graphiql.response()
        media = negotiate(accept)
        if media is None:
            raise HTTPError(
                406, f"Accept {GRAPHQL_RESPONSE_JSON} or {JSON}; nothing else is served."
            )
        state["media"] = media
        if csrf_refused(
            method, headers, strict=self.strict_csrf, trusted_origins=self.trusted_origins
        ):
            raise HTTPError(
                400,
                "This request was refused as a possible cross-site request forgery: send "
                "Content-Type: application/json, or a GraphQL-Require-Preflight header.",
            )
        try:
            min_position = parse_min_position(headers.get(MIN_POSITION_HEADER))
        except ValueError as exc:
            raise HTTPError(400, f"{exc}.") from None

        if params is not None:
            query, operation_name, _, _ = _parameters(
                {"query": params.get("query"), "operationName": params.get("operationName")}
            )
            variables = _json_object(params.get("variables"), "variables")
            extensions = _json_object(params.get("extensions"), "extensions")
        else:
            data = await self._json_body(headers, receive)
            query, operation_name, variables, extensions = _parameters(data)

        resolved = self._resolve(query, extensions)
        if isinstance(resolved, _Refused):
            return self._result(resolved.result, media, extra_headers=resolved.headers)
        state["operation"] = _operation_label(operation_name, resolved.query)
        if not resolved.query:
            raise HTTPError(400, "No GraphQL query: send `query` (or a persisted query hash).")

        principal = await self._authenticate(headers.get("authorization"))
        context = self.context_factory(Request(scope), principal, request_id)
        if inspect.isawaitable(context):
            context = await context
        if min_position is not None:
            refused = await self._at_least(min_position)
            if refused is not None:
                return self._result(refused, media, extra_headers={"retry-after": "1"})
        # The read cache answers this request only from entries known at or after it.
        floor = read_cache.min_position.set(min_position)
        try:
            result = await self.schema.execute(
                resolved.query,
                variable_values=variables,
                context_value=context,
                operation_name=operation_name,
                allowed_operation_types=_QUERY_ONLY if method == "GET" else _QUERY_OR_MUTATION,
                operation_extensions=extensions,
            )
        except InvalidOperationTypeError as exc:
            if method == "GET" and exc.operation_type == OperationType.MUTATION:
                raise HTTPError(
                    405, "Mutations are only allowed over POST.", headers={"allow": "POST"}
                ) from None
            raise HTTPError(
                400, f"{exc.operation_type.value.capitalize()}s are not served over HTTP."
            ) from None
        except CannotGetOperationTypeError as exc:
            result = PreExecutionError(
                data=None, errors=[coded_error(exc.as_http_error_reason(), BAD_REQUEST)]
            )
        except MissingQueryError:
            raise HTTPError(400, "No GraphQL query in the request.") from None
        finally:
            read_cache.min_position.reset(floor)
        if (
            resolved.register_hash is not None
            and self.persisted_queries is not None
            and not isinstance(result, PreExecutionError)
        ):
            self.persisted_queries.register(resolved.register_hash, resolved.query)
        return self._result(result, media)

    async def _json_body(self, headers: Mapping[str, str], receive: Receive) -> Mapping[str, Any]:
        content_type = headers.get("content-type", "")
        media, _, parameters = content_type.partition(";")
        charset = re.search(r"charset\s*=\s*\"?([\w-]+)", parameters, re.IGNORECASE)
        if media.strip().lower() != JSON or (
            charset is not None and charset.group(1).lower() not in ("utf-8", "utf8")
        ):
            raise HTTPError(415, "POST bodies must be application/json (UTF-8).")
        length = headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > self.max_body_bytes:
            raise HTTPError(413, f"The request body is larger than {self.max_body_bytes} bytes.")
        body = await _read_body(receive, self.max_body_bytes)
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError:
            raise HTTPError(400, "The request body is not valid JSON.") from None
        if isinstance(data, list):
            raise HTTPError(400, "Batching is not supported: send one operation per request.")
        if not isinstance(data, dict):
            raise HTTPError(400, "The request body must be a JSON object.")
        return data

    def _resolve(
        self, query: str | None, extensions: Mapping[str, Any] | None
    ) -> Resolved | _Refused:
        if self.persisted_queries is None:
            return Resolved(query)
        try:
            return self.persisted_queries.resolve(query, extensions)
        except PersistedQueryError as exc:
            if exc.code == BAD_REQUEST:
                raise HTTPError(400, exc.message) from None
            return _Refused(
                PreExecutionError(data=None, errors=[coded_error(exc.message, exc.code)]),
                # A miss must not be cached by a CDN in front of GET requests.
                {"cache-control": "private, no-cache, must-revalidate"},
            )

    async def _authenticate(self, authorization: str | None) -> Principal | None:
        if authorization is None:
            return None
        scheme, _, token = authorization.strip().partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise HTTPError(
                401,
                "Authorization: must be 'Bearer <token>'",
                UNAUTHENTICATED,
                {"www-authenticate": 'Bearer error="invalid_request"'},
            )
        principal: Principal | None = None
        if self.authenticator is not None:
            try:
                principal = await self.authenticator(token)
            except (StoreUnavailableError, sa.exc.DBAPIError, OSError, TimeoutError) as exc:
                log.warning("token lookup failed: %s", exc.__class__.__name__)
                raise HTTPError(
                    503, UNAVAILABLE_MESSAGE, SERVICE_UNAVAILABLE, {"retry-after": "1"}
                ) from None
        if principal is None:
            raise HTTPError(
                401,
                "Authorization: the token is unknown, expired or revoked",
                UNAUTHENTICATED,
                {"www-authenticate": 'Bearer error="invalid_token"'},
            )
        return principal

    async def _at_least(self, position: int) -> ExecutionResult | None:
        """None once the read models reach ``position``; else the request error to answer."""
        consistency = self.consistency() if self.consistency is not None else None
        if consistency is None:
            return None  # nothing to wait for: no read models behind this endpoint
        waited = await consistency.at_least(position)
        if waited.ok:
            return None
        return PreExecutionError(data=None, errors=[not_reached(waited)])

    def _result(
        self,
        result: ExecutionResult,
        media: str,
        extra_headers: Mapping[str, str] | None = None,
    ) -> Response:
        request_error = is_request_error(result)
        body: dict[str, Any] = {}
        if result.errors:
            body["errors"] = [_formatted(error) for error in result.errors]
        if not request_error:
            body["data"] = result.data
        if result.extensions:
            body["extensions"] = result.extensions
        status = 200
        if request_error and media == GRAPHQL_RESPONSE_JSON:
            codes = set(iter_codes(result.errors))
            status = (
                503
                if SERVICE_UNAVAILABLE in codes or POSITION_NOT_REACHED in codes
                else 500
                if INTERNAL_SERVER_ERROR in codes
                else 400
            )
        return Response(
            orjson.dumps(body),
            status_code=status,
            headers={
                "content-type": f"{media}; charset=utf-8",
                "vary": "Accept",
                **(extra_headers or {}),
            },
        )

    def _error(
        self,
        status: int,
        message: str,
        code: str,
        state: Mapping[str, Any],
        headers: Mapping[str, str] | None = None,
    ) -> Response:
        return Response(
            orjson.dumps({"errors": [error_entry(message, code)]}),
            status_code=status,
            headers={"content-type": f"{state['media']}; charset=utf-8", **(headers or {})},
        )


@dataclass(frozen=True, slots=True)
class _Refused:
    """A persisted-query refusal, answered as a request error without running anything."""

    result: ExecutionResult
    headers: Mapping[str, str]


def _formatted(error: GraphQLError) -> dict[str, Any]:
    return dict(error.formatted)


def build_graphql_app(
    schema: ApiSchema,
    *,
    production: bool,
    context_factory: ContextFactory,
    authenticator: Authenticator | None = None,
    persisted_queries: PersistedQueries | None = None,
    metrics: Metrics | None = None,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    graphiql: bool | None = None,
    strict_csrf: bool = False,
    trusted_origins: Iterable[str] = (),
    websocket_app: ASGIApp | None = None,
    consistency: ConsistencySource | None = None,
) -> GraphQLHTTP:
    """The ``/graphql`` ASGI app: mount it with ``Route("/graphql", app)``.

    ``context_factory(request, principal, request_id)`` returns the request's
    :class:`~graphql_api.context.Context` (or an awaitable of it). ``authenticator(token)``
    returns the token's principal or None (see
    :class:`graphql_api.security.auth.TokenAuthenticator`); without one, every token is refused.
    GraphiQL defaults to ``not production``; its files are mounted apart
    (:func:`graphql_api.transport.graphiql.graphiql_routes`). ``trusted_origins`` are the CORS
    origins, whose pages pass the CSRF rule for GET as same-origin pages do. ``consistency()`` gives
    what ``X-Min-Position`` waits on; without it the header is ignored.
    """
    return GraphQLHTTP(
        schema,
        context_factory=context_factory,
        production=production,
        authenticator=authenticator,
        persisted_queries=persisted_queries,
        metrics=metrics,
        max_body_bytes=max_body_bytes,
        graphiql=graphiql,
        strict_csrf=strict_csrf,
        trusted_origins=frozenset(trusted_origins),
        websocket_app=websocket_app,
        consistency=consistency,
    )
