"""Database faults raised by read-model queries (SQLAlchemy, unwrapped) map to a clear,
retryable SERVICE_UNAVAILABLE; other database errors stay internal errors."""

from __future__ import annotations

import socket
import sqlite3

import asyncpg
import pytest
import sqlalchemy as sa
from graphql import GraphQLError

from eventstore.errors import StoreUnavailableError
from graphql_api.errors import (
    DISK_FULL_MESSAGE,
    INTERNAL_MESSAGE,
    LOCKED_MESSAGE,
    UNAVAILABLE_MESSAGE,
    classify,
    is_unexpected,
    store_fault,
)


def _wrapped(orig: BaseException, *, invalidated: bool = False) -> sa.exc.DBAPIError:
    """As SQLAlchemy raises it; a driver error that is not a DB-API one (asyncpg's) arrives
    as the ``__cause__`` of the dialect's adapted error, like ``AsyncAdapt_asyncpg_dbapi``."""
    if not isinstance(orig, sqlite3.Error):
        adapted = Exception(str(orig))
        adapted.__cause__ = orig
        orig = adapted
    return sa.exc.DBAPIError("SELECT 1", None, orig, connection_invalidated=invalidated)


def _classified(exc: Exception) -> tuple[str, dict[str, object]]:
    error = classify(
        GraphQLError("boom", original_error=exc, path=["statements"]),
        "execution",
        production=True,
    )
    return error.message, dict(error.extensions or {})


@pytest.mark.parametrize(
    ("exc", "message"),
    [
        (_wrapped(sqlite3.OperationalError("database is locked")), LOCKED_MESSAGE),
        (_wrapped(sqlite3.OperationalError("database or disk is full")), DISK_FULL_MESSAGE),
        (sqlite3.OperationalError("database or disk is full"), DISK_FULL_MESSAGE),
        (_wrapped(asyncpg.exceptions.AdminShutdownError("terminating")), UNAVAILABLE_MESSAGE),
        (
            _wrapped(asyncpg.exceptions.ConnectionDoesNotExistError("closed mid-operation")),
            UNAVAILABLE_MESSAGE,
        ),
        (_wrapped(Exception("whatever"), invalidated=True), UNAVAILABLE_MESSAGE),
        (StoreUnavailableError("SQLite database is locked by another writer"), LOCKED_MESSAGE),
        (
            _wrapped(
                asyncpg.exceptions.DiskFullError(
                    'could not extend file "base/1/2": No space left on device'
                )
            ),
            DISK_FULL_MESSAGE,
        ),
        # Opening a pooled connection while PostgreSQL restarts: the socket error, unwrapped.
        (
            ConnectionRefusedError(111, "Connect call failed ('127.0.0.1', 5432)"),
            UNAVAILABLE_MESSAGE,
        ),
        (socket.gaierror(-2, "Name or service not known"), UNAVAILABLE_MESSAGE),
    ],
)
def test_database_faults_are_retryable(exc: Exception, message: str) -> None:
    assert store_fault(exc) is not None
    assert _classified(exc) == (message, {"code": "SERVICE_UNAVAILABLE", "retryable": True})
    assert not is_unexpected(GraphQLError("boom", original_error=exc))


@pytest.mark.parametrize(
    "exc",
    [
        _wrapped(sqlite3.IntegrityError("UNIQUE constraint failed: statements.slug")),
        _wrapped(sqlite3.OperationalError("no such table: statements")),
        sqlite3.OperationalError("no such column: x"),
        TimeoutError("not from a database"),
        ValueError("a bug"),
    ],
)
def test_other_errors_stay_internal(exc: Exception) -> None:
    assert store_fault(exc) is None
    assert _classified(exc) == (INTERNAL_MESSAGE, {"code": "INTERNAL_SERVER_ERROR"})
    assert is_unexpected(GraphQLError("boom", original_error=exc))
