"""An async SQLAlchemy dialect for SQLite that reads on the event loop's thread.

The ``aiosqlite`` dialect hops to a worker thread for every DBAPI call (execute, fetch, commit,
cursor close...); at a few hundred microseconds a hop, that is most of the time of a read-model
query. ``sqlite+inline`` drives a plain :mod:`sqlite3` connection instead:

* statements that only read (``SELECT``, and ``WITH`` without a write keyword) run on the calling
  thread, the event loop's, with no hop: in WAL mode a reader never waits for a lock;
* everything else (DML, DDL, ``BEGIN IMMEDIATE``, pragmas) and ``COMMIT``/``ROLLBACK`` of an open
  transaction run on a thread of the connection's own, as with aiosqlite, so that waiting for the
  write lock (up to ``busy_timeout``) or for fsync never blocks the loop, and two connections of
  one loop can not deadlock on the write lock.

Inside a transaction opened with ``BEGIN IMMEDIATE`` (or ``EXCLUSIVE``), DML runs inline too: the
connection already holds the write lock, and in WAL mode nothing before ``COMMIT`` waits for a lock
or syncs the disk, so a thread hop would only add its cost (and, on a busy loop, a wait for the
GIL) to every statement of a projection's batch.

Rows are fetched eagerly at execute time, as the aiosqlite adapter does, so no statement stays
open (and no WAL snapshot stays pinned) between awaits. A call made after a cancelled write is
still running waits for it on the connection's thread, so calls on one connection never overlap.

Importing this module registers the dialect as ``sqlite+inline``; use it through
``create_async_engine`` only.
"""

from __future__ import annotations

import asyncio
import functools
import re
import sqlite3
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

from sqlalchemy import pool
from sqlalchemy.dialects import registry
from sqlalchemy.dialects.sqlite.pysqlite import SQLiteDialect_pysqlite
from sqlalchemy.engine import URL
from sqlalchemy.util.concurrency import await_, in_greenlet

T = TypeVar("T")

DRIVER = "inline"

_READ_START = re.compile(r"\s*(SELECT|WITH)\b", re.IGNORECASE)
# Pragmas that only read the schema or a setting, or set a setting of this connection alone.
_LOCAL_PRAGMA = re.compile(
    r"\s*PRAGMA\s+(?:\w+\.)?(?:"
    r"(?:table_info|table_xinfo|index_list|index_info|index_xinfo|foreign_key_list)\s*\("
    r"|(?:read_uncommitted|journal_mode|synchronous|busy_timeout)\s*;?\s*$"
    r"|(?:synchronous|busy_timeout)\s*=\s*\w+\s*;?\s*$"
    r")",
    re.IGNORECASE,
)
_WRITE_WORD = re.compile(r"\b(INSERT|UPDATE|DELETE|REPLACE)\b", re.IGNORECASE)
_DML = re.compile(r"\s*(INSERT|UPDATE|DELETE|REPLACE|WITH)\b", re.IGNORECASE)
_BEGIN_LOCKED = re.compile(r"\s*BEGIN\s+(IMMEDIATE|EXCLUSIVE)\b", re.IGNORECASE)


def is_read_only(statement: str) -> bool:
    """Whether a statement surely only reads, so it may run on the event loop's thread.

    Conservative: anything not recognised (a leading comment, most pragmas...) counts as a write.
    """
    match = _READ_START.match(statement)
    if match is None:
        return _LOCAL_PRAGMA.match(statement) is not None
    if match.group(1).upper() == "SELECT":
        return True
    return _WRITE_WORD.search(statement) is None


async def _now(fn: Callable[..., T], *args: Any) -> T:
    return fn(*args)


class InlineConnection:
    """A DBAPI connection over :class:`sqlite3.Connection`: reads inline, writes on a thread."""

    def __init__(self, connection: sqlite3.Connection, busy_timeout: float = 5.0) -> None:
        self._conn = connection
        #: Seconds SQLite waits for the write lock; the process's own write lock waits as long.
        self.busy_timeout = busy_timeout
        self._executor: ThreadPoolExecutor | None = None
        self._last: Future[Any] | None = None
        self._holds_write_lock = False  # inside BEGIN IMMEDIATE / EXCLUSIVE

    def _runs_inline(self, operation: str) -> bool:
        """Whether a statement that writes may still run inline: DML under the write lock."""
        return (
            self._holds_write_lock
            and self._conn.in_transaction
            and _DML.match(operation) is not None
        )

    @property
    def driver_connection(self) -> sqlite3.Connection:
        return self._conn

    @property
    def writer_started(self) -> bool:
        """Whether this connection has started its writer thread (for tests)."""
        return self._executor is not None

    def _run(self, write: bool, fn: Callable[..., T], *args: Any) -> T:
        """Call ``fn`` inline if it reads and the thread is idle, else on the thread."""
        busy = self._last is not None and not self._last.done()
        if not write and not busy:
            if in_greenlet():
                # SQLAlchemy's AsyncConnection.execute insists on an await: a coroutine that
                # finishes without suspending costs a greenlet switch, not a loop iteration.
                return await_(_now(fn, *args))
            return fn(*args)
        if self._executor is None:
            if not in_greenlet():
                return fn(*args)
            self._executor = ThreadPoolExecutor(1, thread_name_prefix="sqlite-inline-writer")
        future = self._executor.submit(fn, *args)
        self._last = future
        if not in_greenlet():  # a synchronous caller (garbage collection, sync engine): block
            return future.result()
        return await_(asyncio.wrap_future(future))

    # PEP 249 -----------------------------------------------------------------------------

    def cursor(self) -> InlineCursor:
        return InlineCursor(self)

    def commit(self) -> None:
        self._holds_write_lock = False
        self._run(self._conn.in_transaction, self._conn.commit)

    def rollback(self) -> None:
        self._holds_write_lock = False
        self._run(self._conn.in_transaction, self._conn.rollback)

    def close(self) -> None:
        # Closing the last connection checkpoints the WAL: file I/O, so on the thread too.
        try:
            self._run(True, self._conn.close)
        finally:
            if self._executor is not None:
                self._executor.shutdown(wait=False)

    def execute(self, operation: str, parameters: Any = None) -> InlineCursor:
        cursor = self.cursor()
        cursor.execute(operation, parameters)
        return cursor

    # what the pysqlite dialect uses besides ------------------------------------------------

    @property
    def isolation_level(self) -> str | None:
        return self._conn.isolation_level

    @isolation_level.setter
    def isolation_level(self, value: str | None) -> None:
        # Switching to autocommit commits an open transaction.
        self._run(self._conn.in_transaction, setattr, self._conn, "isolation_level", value)

    @property
    def in_transaction(self) -> bool:
        return self._conn.in_transaction

    def create_function(self, *args: Any, **kwargs: Any) -> None:
        self._run(False, functools.partial(self._conn.create_function, *args, **kwargs))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._conn, name)


class InlineCursor:
    """A DBAPI cursor whose rows are fetched when the statement runs."""

    arraysize = 1

    def __init__(self, connection: InlineConnection) -> None:
        self._connection = connection
        self._cursor = connection.driver_connection.cursor()
        self._rows: deque[Any] = deque()

    @property
    def description(self) -> Any:
        return self._cursor.description

    @property
    def rowcount(self) -> int:
        return self._cursor.rowcount

    @property
    def lastrowid(self) -> int | None:
        return self._cursor.lastrowid

    def _execute(self, operation: str, parameters: Any) -> list[Any]:
        if parameters is None:
            self._cursor.execute(operation)
        else:
            self._cursor.execute(operation, parameters)
        return self._cursor.fetchall() if self._cursor.description else []

    def execute(self, operation: str, parameters: Any = None) -> InlineCursor:
        self._rows.clear()
        connection = self._connection
        if not connection.in_transaction:
            connection._holds_write_lock = False  # ended by a COMMIT statement, say
        write = not is_read_only(operation) and not connection._runs_inline(operation)
        self._rows = deque(connection._run(write, self._execute, operation, parameters))
        if _BEGIN_LOCKED.match(operation):
            connection._holds_write_lock = True
        return self

    def executemany(self, operation: str, seq_of_parameters: Any) -> InlineCursor:
        self._rows.clear()
        connection = self._connection
        write = not connection._runs_inline(operation)
        connection._run(write, self._cursor.executemany, operation, seq_of_parameters)
        return self

    def fetchone(self) -> Any:
        return self._rows.popleft() if self._rows else None

    def fetchmany(self, size: int | None = None) -> list[Any]:
        rows = self._rows
        count = min(self.arraysize if size is None else size, len(rows))
        return [rows.popleft() for _ in range(count)]

    def fetchall(self) -> list[Any]:
        rows = list(self._rows)
        self._rows.clear()
        return rows

    def close(self) -> None:
        self._rows.clear()
        self._connection._run(False, self._cursor.close)

    async def _async_soft_close(self) -> None:
        """SQLAlchemy's hook to release a buffered cursor early: rows are all fetched already."""

    def setinputsizes(self, *sizes: Any) -> None:
        pass

    def setoutputsize(self, size: Any, column: Any = None) -> None:
        pass


class InlineDBAPI:
    """The :mod:`sqlite3` module, with ``connect`` returning an :class:`InlineConnection`."""

    paramstyle = "qmark"

    def connect(self, *args: Any, **kwargs: Any) -> InlineConnection:
        # Used from the event loop's thread and the connection's writer thread, never at once.
        kwargs["check_same_thread"] = False
        timeout = float(kwargs.get("timeout", 5.0))  # sqlite3.connect's own default
        return InlineConnection(sqlite3.connect(*args, **kwargs), timeout)

    def __getattr__(self, name: str) -> Any:
        return getattr(sqlite3, name)


class SQLiteDialect_inline(SQLiteDialect_pysqlite):
    """``sqlite+inline``: the pysqlite dialect, async, over :class:`InlineConnection`."""

    driver = DRIVER
    supports_statement_cache = True
    is_async = True

    @classmethod
    def import_dbapi(cls) -> Any:
        return InlineDBAPI()

    @classmethod
    def get_pool_class(cls, url: URL) -> type[pool.Pool]:
        if cls._is_url_file_db(url):
            return pool.AsyncAdaptedQueuePool
        return pool.StaticPool

    def get_driver_connection(self, connection: Any) -> Any:
        if isinstance(connection, InlineConnection):
            return connection.driver_connection
        return connection


registry.register(f"sqlite.{DRIVER}", __name__, "SQLiteDialect_inline")

dialect = SQLiteDialect_inline
