"""A fast path for read-only queries: SQL text and positional parameters in, tuples out.

Running a one-row primary-key lookup through SQLAlchemy's async engine costs about 330 µs
(pool checkout and return, statement bookkeeping, result wrapping) where the driver alone needs
15 µs on SQLite. A :class:`Reader` skips all of that for queries whose SQL is written (or
compiled) once by the caller:

* on a SQLite file, it keeps its own :mod:`sqlite3` connection with ``PRAGMA query_only`` and
  runs each statement synchronously on the calling (event loop's) thread: in WAL mode a reader
  never waits for the write lock, and a page-cache lookup costs less than a thread hop (the
  same reasoning as :mod:`eventstore.sqlite_inline`);
* on PostgreSQL, it keeps a small pool of its own asyncpg connections, opened with the engine's
  connection parameters and ``search_path``, and uses asyncpg's prepared-statement cache.
  asyncpg's own pool resets every connection it takes back (a round trip); nothing here needs
  that, because a reader runs single statements outside any transaction and sets nothing;
* anything else (a ``:memory:`` SQLite database, which only the engine's own connection can
  see) goes through the engine as before.

SQL is passed in the driver's parameter style: ``?`` on SQLite, ``$1, $2, ...`` on PostgreSQL
(:attr:`Reader.dialect` says which). Results are the driver's plain values: a SQLite Date column
is ISO text and a Boolean is 0/1, as stored.

A reader can also keep the rows of recent statements (:meth:`Reader.enable_cache`, a
:class:`~eventstore.read_cache.RowCache`), keyed by SQL text and parameters, and answer a
repeated statement from memory while it is known to be current:

* on a SQLite file, ``PRAGMA data_version`` (≈ 5 µs, read from the WAL index in shared memory,
  no I/O) changes whenever any other connection, in this process or another, commits to the
  file; it is read before every statement and a new value empties the cache. So a cached answer
  is always the one the statement would give now; how often it helps depends on how often
  anything commits;
* on PostgreSQL there is no such cheap signal: the cache holds only statements that name the
  read models they read (``models``), and serves only while it follows the projections'
  checkpoint notifications (:func:`eventstore.read_cache.follow_checkpoints`), which drop a read
  model's entries when its checkpoint moves.

Statements counted by SQLAlchemy's ``before_cursor_execute`` would miss the reader's, so
:func:`on_statement` listens to both. :func:`reader_for` gives each engine one reader, closed
when the engine is disposed (a disposed engine reconnects on next use; so does its reader).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import sqlite3
import threading
import weakref
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Final

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.util import await_, greenlet_spawn
from sqlalchemy.util.concurrency import in_greenlet

from eventstore.errors import StoreUnavailableError
from eventstore.read_cache import RowCache
from eventstore.urls import PG_KEEPALIVES

if TYPE_CHECKING:
    import asyncpg

__all__ = [
    "EngineReader",
    "PostgresReader",
    "Reader",
    "SQLiteReader",
    "StatementListener",
    "on_statement",
    "reader_for",
]

#: Called with the SQL text and parameters of each statement, before it runs.
StatementListener = Callable[[str, Sequence[Any]], None]
Rows = list[tuple[Any, ...]]


@functools.cache
def _pg_connection_lost() -> tuple[type[BaseException], ...]:
    """Driver errors after which a PostgreSQL connection is unusable: drop it, report a
    retryable fault. (asyncpg is imported only by those who read PostgreSQL.)"""
    import asyncpg

    return (
        OSError,
        TimeoutError,
        asyncpg.exceptions.InterfaceError,
        asyncpg.exceptions.InternalClientError,
        asyncpg.exceptions.PostgresConnectionError,
        asyncpg.exceptions.CannotConnectNowError,
        asyncpg.exceptions.AdminShutdownError,
    )


# Options of SQLAlchemy's asyncpg dialect that asyncpg.connect does not take.
_SA_ONLY_OPTIONS: Final = ("prepared_statement_cache_size", "prepared_statement_name_func")


class Reader:
    """Runs read-only statements and returns their rows as tuples."""

    #: ``"sqlite"`` or ``"postgresql"``: which SQL and parameter style :meth:`fetch` takes.
    dialect: str

    def __init__(self, dialect: str) -> None:
        self.dialect = dialect
        self._listeners: list[StatementListener] = []
        #: Recent results (off until :meth:`enable_cache`).
        self.cache = RowCache(0)

    def listen(self, listener: StatementListener) -> None:
        """Call ``listener`` before each statement this reader sends on its own connections."""
        self._listeners.append(listener)

    def remove(self, listener: StatementListener) -> None:
        self._listeners.remove(listener)

    def _notify(self, sql: str, params: Sequence[Any]) -> None:
        for listener in self._listeners:
            listener(sql, params)

    async def fetch(
        self, sql: str, params: Sequence[Any] = (), *, models: frozenset[str] = frozenset()
    ) -> Rows:
        """All rows of one read-only statement.

        ``models`` names the read models (projections) whose tables the statement reads: a
        PostgreSQL reader caches only such statements (see the module's docstring).
        """
        raise NotImplementedError

    def enable_cache(self, max_rows: int) -> None:
        """Keep up to ``max_rows`` rows of recent results while they are known to be current.

        A SQLite file reader and a PostgreSQL reader cache (see the module's docstring); others
        ignore this. ``max_rows`` of 0 turns the cache off.
        """
        if max_rows < 0:
            raise ValueError(f"max_rows must be >= 0, not {max_rows}")

    @property
    def cache_hits(self) -> int:
        """Statements answered from the cache, since the reader was made."""
        return self.cache.hits

    @property
    def cache_misses(self) -> int:
        """Statements run while the cache was on, since the reader was made."""
        return self.cache.misses

    async def close(self) -> None:
        """Close the reader's connections; a later :meth:`fetch` opens new ones."""

    def close_now(self) -> None:
        """Close what can be closed without awaiting (for synchronous callers)."""


class SQLiteReader(Reader):
    """Reads a SQLite file through one :mod:`sqlite3` connection, on the calling thread."""

    def __init__(self, path: str, *, uri: bool = False, timeout: float = 5.0) -> None:
        super().__init__("sqlite")
        self.path = path
        self._uri = uri
        self._timeout = timeout
        self._conn: sqlite3.Connection | None = None
        # Normally only the event loop's thread reads; the lock makes any other caller wait
        # rather than share a statement in flight.
        self._lock = threading.Lock()
        self._data_version: int | None = None

    def enable_cache(self, max_rows: int) -> None:
        super().enable_cache(max_rows)
        with self._lock:
            self.cache.limit = max_rows
            self.cache.clear()

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(
            self.path,
            uri=self._uri,
            timeout=self._timeout,
            isolation_level=None,  # autocommit: no read transaction outlives its statement
            check_same_thread=False,
            cached_statements=256,
        )
        try:
            conn.execute("PRAGMA query_only = 1")
        except BaseException:
            conn.close()
            raise
        return conn

    async def fetch(
        self, sql: str, params: Sequence[Any] = (), *, models: frozenset[str] = frozenset()
    ) -> Rows:
        return self.fetch_now(sql, params, models=models)

    def fetch_now(
        self, sql: str, params: Sequence[Any] = (), *, models: frozenset[str] = frozenset()
    ) -> Rows:
        """:meth:`fetch`, synchronously."""
        with self._lock:
            conn = self._conn
            if conn is None:
                conn = self._conn = self._connect()
            if not self.cache.active:
                return self._run(conn, sql, params)
            return self._fetch_cached(conn, sql, params, models)

    def _run(self, conn: sqlite3.Connection, sql: str, params: Sequence[Any]) -> Rows:
        if self._listeners:
            self._notify(sql, params)
        return conn.execute(sql, params).fetchall()

    def _fetch_cached(
        self, conn: sqlite3.Connection, sql: str, params: Sequence[Any], models: frozenset[str]
    ) -> Rows:
        version = conn.execute("PRAGMA data_version").fetchone()[0]
        cache = self.cache
        if version != self._data_version:
            cache.clear()
            self._data_version = version
        key = (sql, tuple(params))
        found = cache.get(key)
        if found is not None:
            return found
        rows = self._run(conn, sql, params)
        # A commit between the data_version read and this statement leaves rows newer than
        # the version they are filed under; every later read sees the new version and
        # empties the cache first, so they are never served for the old one.
        cache.put(key, rows, models)
        return rows

    async def close(self) -> None:
        self.close_now()

    def close_now(self) -> None:
        with self._lock:
            conn, self._conn = self._conn, None
            # data_version values only compare within one connection.
            self.cache.clear()
            self._data_version = None
        if conn is not None:
            conn.close()


class PostgresReader(Reader):
    """Reads PostgreSQL through a small pool of asyncpg connections of its own."""

    def __init__(self, engine: AsyncEngine, *, max_size: int = 10) -> None:
        super().__init__("postgresql")
        # Serves only once something keeps it current (follow_checkpoints).
        self.cache.serving = False
        self._engine = engine
        self._max_size = max_size
        self._slots: asyncio.Semaphore | None = None
        self._idle: list[asyncpg.Connection] = []
        self._options: dict[str, Any] | None = None
        # Bumped by close(): connections of an older generation are closed when returned.
        self._generation = 0
        self._generations: weakref.WeakKeyDictionary[asyncpg.Connection, int] = (
            weakref.WeakKeyDictionary()
        )

    async def _connection_options(self) -> dict[str, Any]:
        if self._options is None:
            options = dict(self._engine.dialect.create_connect_args(self._engine.url)[1])
            for name in _SA_ONLY_OPTIONS:
                options.pop(name, None)
            # The engine may set search_path (a schema per deployment or test): read it from
            # one of its connections, without a statement its listeners would count.
            raw = await self._engine.raw_connection()
            try:
                driver: asyncpg.Connection = raw.driver_connection
                search_path = await driver.fetchval("SHOW search_path")
            finally:
                await greenlet_spawn(raw.close)
            options["server_settings"] = {
                **PG_KEEPALIVES,
                **dict(options.get("server_settings") or {}),
                "search_path": str(search_path),
            }
            self._options = options
        return self._options

    async def _acquire(self) -> asyncpg.Connection:
        while self._idle:
            conn = self._idle.pop()
            if not conn.is_closed():
                return conn
        import asyncpg

        options = await self._connection_options()
        try:
            conn = await asyncpg.connect(**options)
        except _pg_connection_lost() as exc:
            raise _unavailable(exc) from exc
        self._generations[conn] = self._generation
        return conn

    def _release(self, conn: asyncpg.Connection) -> None:
        if conn.is_closed():
            return
        if self._generations.get(conn) != self._generation:
            conn.terminate()
            return
        self._idle.append(conn)

    def enable_cache(self, max_rows: int) -> None:
        super().enable_cache(max_rows)
        self.cache.limit = max_rows
        self.cache.clear()

    async def fetch(
        self, sql: str, params: Sequence[Any] = (), *, models: frozenset[str] = frozenset()
    ) -> Rows:
        cache = self.cache
        if not models or not cache.active:
            return await self._fetch(sql, params)
        # Id lists are bound as arrays (lists): keyed as tuples.
        key = (sql, tuple(tuple(p) if isinstance(p, list) else p for p in params))
        found = cache.get(key)
        if found is not None:
            return found
        generation = cache.generation
        rows = await self._fetch(sql, params)
        # Kept only if no read model moved while the statement ran (see eventstore.read_cache).
        cache.put(key, rows, models, generation)
        return rows

    async def _fetch(self, sql: str, params: Sequence[Any]) -> Rows:
        import asyncpg

        lost = _pg_connection_lost()
        if self._listeners:
            self._notify(sql, params)
        if self._slots is None:
            self._slots = asyncio.Semaphore(self._max_size)
        async with self._slots:
            conn = await self._acquire()
            try:
                records = await conn.fetch(sql, *params)
            except asyncpg.PostgresError as exc:
                # The server refused the statement; the connection is fine unless the error
                # says the session is going away.
                if isinstance(exc, lost):
                    conn.terminate()
                    raise _unavailable(exc) from exc
                self._release(conn)
                raise
            except lost as exc:
                conn.terminate()
                raise _unavailable(exc) from exc
            except BaseException:
                # Cancelled mid-statement, say: the protocol state is unknown.
                conn.terminate()
                raise
            self._release(conn)
        return [tuple(record) for record in records]

    async def close(self) -> None:
        self._generation += 1
        idle, self._idle = self._idle, []
        for conn in idle:
            with contextlib.suppress(Exception):
                await conn.close(timeout=5)
            if not conn.is_closed():
                conn.terminate()

    def close_now(self) -> None:
        self._generation += 1
        idle, self._idle = self._idle, []
        for conn in idle:
            conn.terminate()


class EngineReader(Reader):
    """Reads through the engine itself: for databases only its own connections can see.

    Its statements reach the engine's ``before_cursor_execute`` listeners, not this reader's:
    :func:`on_statement` counts each statement once either way.
    """

    def __init__(self, engine: AsyncEngine) -> None:
        super().__init__(engine.dialect.name)
        self._engine = engine

    async def fetch(
        self, sql: str, params: Sequence[Any] = (), *, models: frozenset[str] = frozenset()
    ) -> Rows:
        async with self._engine.connect() as conn:
            result = await conn.exec_driver_sql(sql, tuple(params))
            return [tuple(row) for row in result.all()]


def _unavailable(exc: BaseException) -> StoreUnavailableError:
    return StoreUnavailableError(f"PostgreSQL is unavailable: {type(exc).__name__}: {exc}")


def _sqlite_file(engine: AsyncEngine) -> tuple[str, bool] | None:
    """The file an engine's SQLite URL names, and whether it is a URI; None if in memory."""
    url = engine.url
    database = url.database or ""
    uri = str(url.query.get("uri", "")).lower() in ("true", "1")
    if database in ("", ":memory:") or (uri and "mode=memory" in database):
        return None
    return database, uri


def _new_reader(engine: AsyncEngine) -> Reader:
    name = engine.dialect.name
    if name == "sqlite":
        found = _sqlite_file(engine)
        if found is not None:
            path, uri = found
            timeout = engine.dialect.create_connect_args(engine.url)[1].get("timeout", 5.0)
            return SQLiteReader(path, uri=uri, timeout=float(timeout))
    if name == "postgresql" and engine.dialect.driver == "asyncpg":
        pool = engine.sync_engine.pool
        size = getattr(pool, "size", lambda: 5)() + max(getattr(pool, "_max_overflow", 0), 0)
        return PostgresReader(engine, max_size=max(int(size), 1))
    return EngineReader(engine)


_readers: weakref.WeakKeyDictionary[sa.Engine, Reader] = weakref.WeakKeyDictionary()
_readers_lock = threading.Lock()


def reader_for(engine: AsyncEngine) -> Reader:
    """The engine's reader (one per engine, made on first use; it connects on first fetch)."""
    sync_engine = engine.sync_engine
    reader = _readers.get(sync_engine)
    if reader is not None:
        return reader
    with _readers_lock:
        reader = _readers.get(sync_engine)
        if reader is None:
            reader = _readers[sync_engine] = _new_reader(engine)
            # Closed with the engine's pool, so tests and servers that dispose their engine
            # leave no connection behind.
            sa.event.listen(sync_engine, "engine_disposed", _closer(reader))
    return reader


def _closer(reader: Reader) -> Callable[[sa.Engine], None]:
    def close(_engine: sa.Engine) -> None:
        if in_greenlet():
            await_(reader.close())
        else:
            reader.close_now()

    return close


def on_statement(engine: AsyncEngine, listener: StatementListener) -> Callable[[], None]:
    """Call ``listener`` for every statement run through ``engine`` or its reader.

    Returns a function that stops listening.
    """

    def before_cursor_execute(
        _conn: Any, _cursor: Any, statement: str, parameters: Any, *_args: Any
    ) -> None:
        listener(statement, parameters)

    sync_engine = engine.sync_engine
    reader = reader_for(engine)
    sa.event.listen(sync_engine, "before_cursor_execute", before_cursor_execute)
    reader.listen(listener)

    def stop() -> None:
        sa.event.remove(sync_engine, "before_cursor_execute", before_cursor_execute)
        with contextlib.suppress(ValueError):
            reader.remove(listener)

    return stop
