"""Error codes, and how every error becomes a safe GraphQL error with ``extensions.code``.

Clients get one of these codes in ``errors[].extensions.code``:

============================  ==========================================================
``BAD_USER_INPUT``            a rule of the domain, a bad argument or variable value
``NOT_FOUND``                 the statement (or the related one, the tag, ...) is unknown
``CONFLICT``                  the state does not allow it, or ``expectedVersion`` is stale
``UNAUTHENTICATED``           no token where one is needed, or a bad/expired/revoked one
``FORBIDDEN``                 the token's role does not allow it
``SERVICE_UNAVAILABLE``       the database is unreachable or busy; retry (``retryable``)
``POSITION_NOT_REACHED``      the read models did not reach the log position in time: a
                              mutation's payload still comes with it, a read is not run
                              (``retryable``, ``position`` asked, ``reached``; see
                              :mod:`graphql_api.service_layer.consistency`)
``INTERNAL_SERVER_ERROR``     a bug; the message says nothing more, the server logs it
``BAD_REQUEST``               not a well-formed GraphQL-over-HTTP request
``GRAPHQL_PARSE_FAILED``      the document does not parse
``GRAPHQL_VALIDATION_FAILED`` the document is not valid against the schema
``QUERY_TOO_DEEP`` / ``TOO_MANY_ALIASES`` / ``TOO_MANY_TOKENS`` / ``TOO_MANY_FIELDS`` /
``QUERY_TOO_COSTLY``
                              a limit of :mod:`graphql_api.security.query_limits`
``PERSISTED_QUERY_NOT_FOUND`` / ``PERSISTED_QUERY_HASH_MISMATCH`` /
``PERSISTED_QUERY_NOT_ALLOWED`` / ``PERSISTED_QUERY_NOT_SUPPORTED``
                              automatic persisted queries, see :mod:`graphql_api.transport.apq`
``RATE_LIMITED``              too many requests of a kind; retry after ``retryAfter`` s
``TOO_MANY_SUBSCRIPTIONS``    a WebSocket connection already runs as many operations as
                              it may; complete one first
============================  ==========================================================

Unexpected exceptions are logged here with their traceback (and the request id) and reach the
client only as ``{"message": "Internal server error", "extensions": {"code":
"INTERNAL_SERVER_ERROR"}}``.
"""

from __future__ import annotations

import logging
import re
import socket
import sqlite3
from collections.abc import Iterator, Mapping
from typing import Any, ClassVar, Final

import asyncpg
import sqlalchemy as sa
from graphql import GraphQLError, GraphQLSyntaxError
from strawberry.exceptions import MissingQueryError
from strawberry.schema.exceptions import CannotGetOperationTypeError, InvalidOperationTypeError
from strawberry.types.execution import ExecutionResult, PreExecutionError
from strawberry.utils.str_converters import to_camel_case

from domain.errors import DomainError, ItemsRejected
from eventstore.errors import StoreUnavailableError

log = logging.getLogger("graphql_api")

BAD_USER_INPUT: Final = "BAD_USER_INPUT"
NOT_FOUND: Final = "NOT_FOUND"
CONFLICT: Final = "CONFLICT"
UNAUTHENTICATED: Final = "UNAUTHENTICATED"
FORBIDDEN: Final = "FORBIDDEN"
SERVICE_UNAVAILABLE: Final = "SERVICE_UNAVAILABLE"
POSITION_NOT_REACHED: Final = "POSITION_NOT_REACHED"
INTERNAL_SERVER_ERROR: Final = "INTERNAL_SERVER_ERROR"
BAD_REQUEST: Final = "BAD_REQUEST"
GRAPHQL_PARSE_FAILED: Final = "GRAPHQL_PARSE_FAILED"
GRAPHQL_VALIDATION_FAILED: Final = "GRAPHQL_VALIDATION_FAILED"
QUERY_TOO_DEEP: Final = "QUERY_TOO_DEEP"
TOO_MANY_ALIASES: Final = "TOO_MANY_ALIASES"
TOO_MANY_TOKENS: Final = "TOO_MANY_TOKENS"
TOO_MANY_FIELDS: Final = "TOO_MANY_FIELDS"
QUERY_TOO_COSTLY: Final = "QUERY_TOO_COSTLY"
PERSISTED_QUERY_NOT_FOUND: Final = "PERSISTED_QUERY_NOT_FOUND"
PERSISTED_QUERY_HASH_MISMATCH: Final = "PERSISTED_QUERY_HASH_MISMATCH"
PERSISTED_QUERY_NOT_ALLOWED: Final = "PERSISTED_QUERY_NOT_ALLOWED"
PERSISTED_QUERY_NOT_SUPPORTED: Final = "PERSISTED_QUERY_NOT_SUPPORTED"
RATE_LIMITED: Final = "RATE_LIMITED"
TOO_MANY_SUBSCRIPTIONS: Final = "TOO_MANY_SUBSCRIPTIONS"

#: Every code of the table above: no error reaches a client with any other.
CODES: Final = frozenset(
    {
        BAD_USER_INPUT,
        NOT_FOUND,
        CONFLICT,
        UNAUTHENTICATED,
        FORBIDDEN,
        SERVICE_UNAVAILABLE,
        POSITION_NOT_REACHED,
        INTERNAL_SERVER_ERROR,
        BAD_REQUEST,
        GRAPHQL_PARSE_FAILED,
        GRAPHQL_VALIDATION_FAILED,
        QUERY_TOO_DEEP,
        TOO_MANY_ALIASES,
        TOO_MANY_TOKENS,
        TOO_MANY_FIELDS,
        QUERY_TOO_COSTLY,
        PERSISTED_QUERY_NOT_FOUND,
        PERSISTED_QUERY_HASH_MISMATCH,
        PERSISTED_QUERY_NOT_ALLOWED,
        PERSISTED_QUERY_NOT_SUPPORTED,
        RATE_LIMITED,
        TOO_MANY_SUBSCRIPTIONS,
    }
)

INTERNAL_MESSAGE: Final = "Internal server error"
UNAVAILABLE_MESSAGE: Final = "The service is temporarily unavailable; retry the request"
LOCKED_MESSAGE: Final = "The database is locked by another writer; retry the request"
DISK_FULL_MESSAGE: Final = "The database disk is full; retry the request once space is freed"

_SUGGESTION: Final = re.compile(r"\s*Did you mean .*$", re.DOTALL)
#: graphql-core's parser, stopped by the ``max_tokens`` parse option.
_TOKEN_LIMIT: Final = re.compile(r"Syntax Error: Document contains more than (\d+) tokens\.")


class ApiError(Exception):
    """An error of the API itself (not of the domain) with the code clients see."""

    code: ClassVar[str] = BAD_REQUEST

    def __init__(self, message: str, **extensions: Any) -> None:
        super().__init__(message)
        self.message = message
        self.extensions = extensions


class Unauthenticated(ApiError):
    """No credentials where they are needed, or credentials that are not valid."""

    code: ClassVar[str] = UNAUTHENTICATED


class Forbidden(ApiError):
    """Valid credentials whose role does not allow the operation."""

    code: ClassVar[str] = FORBIDDEN


class BadUserInput(ApiError):
    """An argument the API itself refuses before any command is made."""

    code: ClassVar[str] = BAD_USER_INPUT


#: Command fields filled from input fields of another name; the others are the input field's
#: Python name, which Strawberry camel-cases for the schema.
_INPUT_FIELDS: Final = {
    "paragraphs": "body",
    "minister": "ministerName",
    "minister.id": "ministerId",
    "minister.name": "ministerName",
}


def input_field(command_field: str) -> str:
    """The GraphQL name of the input field a command's field came from (``publishedAt``)."""
    return _INPUT_FIELDS.get(command_field) or to_camel_case(command_field)


def domain_message(error: DomainError) -> str:
    """A domain error's message as clients read it: ``field: what is wrong``, the field named
    as they write it; an error about the command as a whole names the mutation's ``input``."""
    field = input_field(error.field) if error.field is not None else "input"
    return f"{field}: {error.problem}"


def items_message(problems: list[str], total: int) -> str:
    """One message for wrong items of a list (each ``views[3].statementId: problem``)."""
    more = f" (and {total - len(problems)} more)" if total > len(problems) else ""
    return "; ".join(problems) + more


def item_entry(message: str) -> dict[str, str]:
    """``{"field": "views[3].statementId", "message": "..."}`` from ``field: problem``."""
    field, _, problem = message.partition(": ")
    return {"field": field, "message": problem}


def items_rejected(error: ItemsRejected) -> tuple[str, dict[str, Any]]:
    """The message and ``extensions.problems`` of a refused list, fields named as in GraphQL."""
    listed = [
        f"{input_field(error.list_field)}[{p.index}].{input_field(p.field)}: {p.problem}"
        for p in error.problems
    ]
    return items_message(listed, error.total), {"problems": [item_entry(m) for m in listed]}


class NotFound(ApiError):
    """An argument names an object that does not exist, where null is no answer."""

    code: ClassVar[str] = NOT_FOUND


def coded_error(message: str, code: str, **extensions: Any) -> GraphQLError:
    """A request-level GraphQL error (no path, no location) with ``extensions.code``."""
    return GraphQLError(message, extensions={"code": code, **extensions})


def error_entry(message: str, code: str, **extensions: Any) -> dict[str, Any]:
    """One entry of a response's ``errors`` list, for errors raised outside GraphQL."""
    return {"message": message, "extensions": {"code": code, **extensions}}


def strip_suggestions(message: str) -> str:
    """The message without its "Did you mean ...?" part, which leaks schema names."""
    return _SUGGESTION.sub("", message)


def _code_of(error: GraphQLError) -> str | None:
    code = (error.extensions or {}).get("code")
    return code if isinstance(code, str) else None


def _with(
    error: GraphQLError, message: str, code: str, extra: Mapping[str, Any] | None = None
) -> GraphQLError:
    extensions: dict[str, Any] = {**(error.extensions or {}), **(extra or {}), "code": code}
    return GraphQLError(
        message,
        nodes=error.nodes,
        source=error.source,
        positions=error.positions,
        path=error.path,
        original_error=None,
        extensions=extensions,
    )


def root_cause(error: GraphQLError) -> Exception | None:
    """The exception behind an error, through GraphQLErrors that wrap others."""
    original = error.original_error
    while isinstance(original, GraphQLError) and original.original_error is not None:
        original = original.original_error
    return original


#: Driver errors that mean "the connection or the server went away": retry on a new one.
_CONNECTION_LOST: Final = (
    ConnectionError,
    TimeoutError,
    asyncpg.exceptions.ConnectionDoesNotExistError,
    asyncpg.exceptions.InterfaceError,
    asyncpg.exceptions.InternalClientError,
    asyncpg.exceptions.PostgresConnectionError,
    asyncpg.exceptions.CannotConnectNowError,
    asyncpg.exceptions.AdminShutdownError,
)
#: SQLSTATE classes of transient PostgreSQL faults: connection, rollback (serialization,
#: deadlock), insufficient resources (disk full), operator intervention (shutdown).
_TRANSIENT_SQLSTATE_CLASSES: Final = frozenset({"08", "40", "53", "57"})
_SQLITE_TRANSIENT: Final = ("locked", "busy", "disk is full", "disk i/o error")


def _transient_driver_error(exc: BaseException) -> bool:
    if isinstance(exc, _CONNECTION_LOST):
        return True
    sqlstate = getattr(exc, "sqlstate", None)
    if isinstance(sqlstate, str) and (
        sqlstate[:2] in _TRANSIENT_SQLSTATE_CLASSES or sqlstate == "55P03"
    ):
        return True
    if isinstance(exc, sqlite3.OperationalError):
        message = str(exc).lower()
        return any(word in message for word in _SQLITE_TRANSIENT)
    return False


def store_fault(exc: BaseException | None) -> StoreUnavailableError | None:
    """The database fault behind an exception, as a :class:`StoreUnavailableError`, if it is one.

    The event store wraps its own driver errors; the read models query through SQLAlchemy,
    whose ``DBAPIError`` (a lost connection, a locked SQLite file, a full disk) arrives here
    unwrapped. Anything else (a bug, a constraint violation) gives None.
    """
    if isinstance(exc, StoreUnavailableError):
        return exc
    if isinstance(exc, ConnectionError | socket.gaierror):
        # Opening a new pooled connection raises the driver's socket error unwrapped: the
        # server refuses connections while it restarts, or its host name does not resolve.
        return StoreUnavailableError(f"{type(exc).__name__}: {exc}")
    if not isinstance(exc, sa.exc.DBAPIError | sqlite3.Error | asyncpg.PostgresError):
        return None
    if isinstance(exc, sa.exc.DBAPIError) and exc.connection_invalidated:
        return StoreUnavailableError(f"connection lost: {exc.orig}")
    seen: set[int] = set()
    cause: BaseException | None = exc
    while cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        if _transient_driver_error(cause):
            return StoreUnavailableError(f"{type(cause).__name__}: {cause}")
        orig = cause.orig if isinstance(cause, sa.exc.DBAPIError) else None
        cause = orig if isinstance(orig, BaseException) else cause.__cause__
    return None


def unavailable_message(error: StoreUnavailableError) -> str:
    """A safe message for an unavailable store: the kind of fault, none of the driver's text."""
    text = str(error).lower()
    if "locked" in text or "busy" in text:
        return LOCKED_MESSAGE
    # SQLite says "disk is full"; PostgreSQL's SQLSTATE 53100 arrives as asyncpg's DiskFullError
    # (its message text may be translated) or, from the OS, "No space left on device".
    if "disk is full" in text or "diskfullerror" in text or "no space left on device" in text:
        return DISK_FULL_MESSAGE
    return UNAVAILABLE_MESSAGE


#: What Strawberry raises for a request that names no operation it can run (an unknown
#: ``operationName``, a query where only subscriptions are served, no document at all); the
#: streaming transports get them wrapped in a GraphQLError.
_MALFORMED_REQUEST: Final = (
    CannotGetOperationTypeError | InvalidOperationTypeError | MissingQueryError
)


def is_unexpected(error: GraphQLError) -> bool:
    """Whether the error comes from an exception no rule expected: a bug, to be logged."""
    original = root_cause(error)
    return (
        original is not None
        and not isinstance(original, DomainError | ApiError | GraphQLError | _MALFORMED_REQUEST)
        and store_fault(original) is None
    )


def classify(error: GraphQLError, phase: str, *, production: bool) -> GraphQLError:
    """The error as clients see it: a known code, a safe message, nothing of the internals.

    ``phase`` is ``"request"`` for errors raised before execution (parse, validation,
    variable coercion, limits) and ``"execution"`` for errors raised by resolvers.
    """
    original = root_cause(error)
    if isinstance(original, ItemsRejected):
        message, extra = items_rejected(original)
        return _with(error, message, original.code, extra)
    if isinstance(original, DomainError):
        return _with(error, domain_message(original), original.code)
    if isinstance(original, ApiError):
        return _with(error, original.message, original.code, original.extensions)
    if isinstance(original, _MALFORMED_REQUEST):
        return _with(error, error.message, BAD_REQUEST)
    fault = store_fault(original)
    if fault is not None:
        message = unavailable_message(fault)
        return _with(error, message, SERVICE_UNAVAILABLE, {"retryable": True})
    if original is not None and not isinstance(original, GraphQLError):
        return _with(error, INTERNAL_MESSAGE, INTERNAL_SERVER_ERROR)
    message = strip_suggestions(error.message) if production else error.message
    code = _code_of(error)
    if code is not None:
        return error if message == error.message else _with(error, message, code)
    if isinstance(error, GraphQLSyntaxError) or isinstance(original, GraphQLSyntaxError):
        too_long = _TOKEN_LIMIT.match(error.message)
        if too_long is not None:
            limit = too_long.group(1)
            message = f"query: has more than {limit} tokens; at most {limit} are allowed"
            return _with(error, message, TOO_MANY_TOKENS)
        return _with(error, message, GRAPHQL_PARSE_FAILED)
    if phase == "validation":
        return _with(error, message, GRAPHQL_VALIDATION_FAILED)
    if phase == "request":
        # Raised by graphql-core before executing anything: variable coercion.
        return _with(error, message, BAD_USER_INPUT)
    # A field error graphql-core made itself, such as a null for a non-null field: a bug.
    return _with(error, message, INTERNAL_SERVER_ERROR)


def with_code(error: GraphQLError, code: str) -> GraphQLError:
    """The error with ``extensions.code`` set to ``code`` unless it has one already."""
    return error if _code_of(error) is not None else _with(error, error.message, code)


def result_phase(result: object) -> str:
    """Where a result's errors were raised: before validation ended, before or in execution."""
    if isinstance(result, PreExecutionError):
        return "validation"
    data = getattr(result, "data", None)
    errors = getattr(result, "errors", None) or ()
    if data is None and errors and all(e.path is None for e in errors):
        return "request"
    return "execution"


def is_request_error(result: ExecutionResult) -> bool:
    """Whether the request failed before execution: the response then has no ``data`` entry."""
    return bool(result.errors) and result_phase(result) != "execution"


def classify_result(result: ExecutionResult, *, production: bool) -> ExecutionResult:
    """Give every error of ``result`` a code and a safe message (in place; idempotent)."""
    if result.errors:
        phase = result_phase(result)
        result.errors = [classify(error, phase, production=production) for error in result.errors]
    return result


def classify_stream_result(result: ExecutionResult, *, production: bool) -> ExecutionResult:
    """:func:`classify_result` for a result of ``Schema.stream`` (WebSocket, SSE).

    Strawberry reports there as a :class:`PreExecutionError` both the document's errors and
    graphql-core's refusals before execution (variable coercion). The validation errors have
    their code already (:class:`graphql_api.schema.api_schema.DocumentValidationCache`), a syntax
    error is recognised by its class, so an error without a code is a bad variable value.
    """
    if isinstance(result, PreExecutionError) and result.errors:
        result.errors = [classify(e, "request", production=production) for e in result.errors]
        return result
    return classify_result(result, production=production)


def log_errors(errors: list[GraphQLError], request_id: str | None) -> None:
    """Log the unexpected errors with their traceback; the expected ones are the client's."""
    for error in errors:
        if is_unexpected(error):
            original = root_cause(error)
            log.error(
                "unexpected error in %s (request %s): %s",
                ".".join(str(p) for p in error.path or ()) or "operation",
                request_id or "-",
                original.__class__.__name__ if original else error.message,
                exc_info=(type(original), original, original.__traceback__)
                if original is not None
                else None,
            )
        elif (fault := store_fault(root_cause(error))) is not None:
            log.warning("store unavailable (request %s): %s", request_id, fault)


def iter_codes(errors: list[GraphQLError] | None) -> Iterator[str]:
    """The codes of a list of (classified) errors."""
    for error in errors or ():
        code = _code_of(error)
        if code is not None:
            yield code
