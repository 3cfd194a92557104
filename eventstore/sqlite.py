"""The SQLite backend: WAL with synchronous=FULL, one writer thread, group commit.

aiosqlite hops to its thread for every statement, which caps a one-event append at about 700
per second here; a dedicated writer thread runs each whole batch in one hop instead.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import sqlite3
import threading
from collections.abc import Callable, Collection
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.pool import QueuePool

from eventstore import sql
from eventstore.chain import GENESIS_HASH
from eventstore.errors import SchemaVersionError, StoreUnavailableError
from eventstore.planning import NeedsLookup, Outcome, PendingAppend, Row, plan_batch
from eventstore.records import RecordedEvent
from eventstore.store import EventStore, now_us

T = TypeVar("T")

_INSERT = f"INSERT INTO events ({sql.COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
_SELECT = f"SELECT {sql.COLUMNS} FROM events"
_CHUNK = 500  # bound parameters per IN list, well below SQLite's limit


def sqlite_path(url: str) -> str:
    """The file path (or ':memory:') of a sqlite URL."""
    parsed = make_url(url)
    if not parsed.drivername.startswith("sqlite"):
        raise ValueError(f"not a SQLite URL: {url}")
    return parsed.database or ":memory:"


def _unavailable(exc: sqlite3.Error) -> StoreUnavailableError:
    message = str(exc)
    if "locked" in message or "busy" in message:
        return StoreUnavailableError(f"SQLite database is locked by another writer: {message}")
    return StoreUnavailableError(f"SQLite error: {message}")


class SQLiteEventStore(EventStore):
    """Event store in one SQLite file (synchronous SQLAlchemy engine driven from worker threads)."""

    def __init__(
        self,
        url: str,
        *,
        busy_timeout: float = 5.0,
        synchronous: str = "FULL",
        poll_interval: float = 0.2,
        max_batch_events: int = 10_000,
        readers: int = 4,
    ) -> None:
        super().__init__(poll_interval=poll_interval, max_batch_events=max_batch_events)
        self.path = sqlite_path(url)
        if self.path == ":memory:":
            raise ValueError("the SQLite event store needs a file; use the memory backend instead")
        self.busy_timeout = busy_timeout
        self._synchronous = synchronous
        self.engine: Engine = sa.create_engine(
            f"sqlite+pysqlite:///{self.path}",
            poolclass=QueuePool,
            pool_size=readers + 1,
            max_overflow=readers,
            connect_args={
                "check_same_thread": False,
                "timeout": busy_timeout,
                "isolation_level": None,  # we issue BEGIN IMMEDIATE / COMMIT ourselves
            },
        )
        sa.event.listen(self.engine, "connect", self._on_connect)
        self._writer = concurrent.futures.ThreadPoolExecutor(1, "eventstore-sqlite-writer")
        self._readers = concurrent.futures.ThreadPoolExecutor(readers, "eventstore-sqlite-reader")
        self._writer_conn: Any = None
        self._local = threading.local()
        self._reader_conns: list[Any] = []
        self._reader_lock = threading.Lock()
        self._closed = False

    def _on_connect(self, dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout * 1000)}")
        cursor.execute("PRAGMA journal_mode = WAL")
        cursor.execute(f"PRAGMA synchronous = {self._synchronous}")
        cursor.close()

    # -- threads ---------------------------------------------------------------------------

    async def _in_writer(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._writer, fn, *args)

    async def _in_reader(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._readers, fn, *args)

    def _reader_conn(self) -> Any:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self.engine.raw_connection()
            self._local.conn = conn
            with self._reader_lock:
                self._reader_conns.append(conn)
        return conn

    def _query(self, statement: str, params: tuple[Any, ...] = ()) -> list[Any]:
        try:
            return self._reader_conn().execute(statement, params).fetchall()  # type: ignore[no-any-return]
        except sqlite3.Error as exc:
            raise _unavailable(exc) from exc

    # -- lifecycle -------------------------------------------------------------------------

    async def setup(self) -> None:
        await self._in_writer(self._setup_sync)

    def _setup_sync(self) -> None:
        conn = self._writer_connection()
        conn.execute("BEGIN IMMEDIATE")
        try:
            dialect = self.engine.dialect
            for table in sql.metadata.sorted_tables:
                ddl = str(sa.schema.CreateTable(table, if_not_exists=True).compile(dialect=dialect))
                conn.execute(ddl)
            for guard in sql.SQLITE_GUARDS:
                conn.execute(guard)
            row = conn.execute(
                "SELECT version FROM eventstore_schema WHERE component = 'events'"
            ).fetchone()
            if row is None:
                conn.execute(
                    "INSERT INTO eventstore_schema (component, version) VALUES ('events', ?)",
                    (sql.SCHEMA_VERSION,),
                )
            elif row[0] > sql.SCHEMA_VERSION:
                raise SchemaVersionError(
                    f"{self.path} holds event store schema {row[0]}; this code knows up to "
                    f"{sql.SCHEMA_VERSION}"
                )
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    def _writer_connection(self) -> Any:
        if self._writer_conn is None:
            self._writer_conn = self.engine.raw_connection()
        return self._writer_conn

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        await super().close()

        def close_writer() -> None:
            if self._writer_conn is not None:
                self._writer_conn.close()
                self._writer_conn = None

        await self._in_writer(close_writer)
        self._writer.shutdown(wait=True)
        self._readers.shutdown(wait=True)
        with self._reader_lock:
            for conn in self._reader_conns:
                conn.close()
            self._reader_conns.clear()
        self.engine.dispose()

    # -- writing ---------------------------------------------------------------------------

    async def _write_batch(self, batch: list[PendingAppend]) -> list[Outcome]:
        return await self._in_writer(self._write_batch_sync, batch)

    def _write_batch_sync(self, batch: list[PendingAppend]) -> list[Outcome]:
        conn = self._writer_connection()
        try:
            try:
                return self._write_once(conn, batch, careful=False)
            except sqlite3.IntegrityError:
                # An event id that is already stored, in a request whose version check passed:
                # redo the batch with the ids looked up, so the retry is answered properly.
                return self._write_once(conn, batch, careful=True)
        except sqlite3.Error as exc:
            raise _unavailable(exc) from exc

    def _write_once(self, conn: Any, batch: list[PendingAppend], careful: bool) -> list[Outcome]:
        conn.execute("BEGIN IMMEDIATE")
        try:
            outcomes = self._plan_and_insert(conn, batch, careful)
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        return outcomes

    def _plan_and_insert(
        self, conn: Any, batch: list[PendingAppend], careful: bool
    ) -> list[Outcome]:
        head = conn.execute(
            "SELECT position, hash FROM events ORDER BY position DESC LIMIT 1"
        ).fetchone()
        head_position, head_hash = (head[0], bytes(head[1])) if head else (0, GENESIS_HASH)
        versions = self._versions(conn, {r.stream_id for r in batch})
        stamp = now_us()
        existing = self._lookup(conn, batch) if careful else None
        try:
            rows, outcomes = plan_batch(batch, head_position, head_hash, versions, stamp, existing)
        except NeedsLookup:
            existing = self._lookup(conn, batch)
            rows, outcomes = plan_batch(batch, head_position, head_hash, versions, stamp, existing)
        if rows:
            conn.executemany(_INSERT, rows)
        return outcomes

    @staticmethod
    def _versions(conn: Any, streams: set[str]) -> dict[str, int]:
        versions: dict[str, int] = {}
        names = list(streams)
        for start in range(0, len(names), _CHUNK):
            chunk = names[start : start + _CHUNK]
            marks = ", ".join("?" * len(chunk))
            for stream_id, version in conn.execute(
                f"SELECT stream_id, MAX(version) FROM events WHERE stream_id IN ({marks}) "
                "GROUP BY stream_id",
                chunk,
            ):
                versions[stream_id] = version
        return versions

    @staticmethod
    def _lookup(conn: Any, batch: list[PendingAppend]) -> dict[str, Row]:
        ids = [e.event_id for r in batch for e in r.events]
        found: dict[str, Row] = {}
        for start in range(0, len(ids), _CHUNK):
            chunk = ids[start : start + _CHUNK]
            marks = ", ".join("?" * len(chunk))
            for row in conn.execute(f"{_SELECT} WHERE event_id IN ({marks})", chunk):
                found[row[3]] = Row._make([*row[:9], bytes(row[9])])
        return found

    # -- reading ---------------------------------------------------------------------------

    async def stream_version(self, stream_id: str) -> int:
        rows = await self._in_reader(
            self._query, "SELECT MAX(version) FROM events WHERE stream_id = ?", (stream_id,)
        )
        return int(rows[0][0] or 0)

    async def head_position(self) -> int:
        rows = await self._in_reader(self._query, "SELECT MAX(position) FROM events")
        return int(rows[0][0] or 0)

    async def head(self) -> RecordedEvent | None:
        rows = await self._in_reader(self._query, f"{_SELECT} ORDER BY position DESC LIMIT 1")
        return sql.record_from_row(rows[0]) if rows else None

    async def _read_all_page(
        self,
        after_position: int,
        limit: int,
        types: Collection[str] | None,
        stream_prefix: str | None,
        to_position: int | None = None,
    ) -> list[RecordedEvent]:
        where = ["position > ?"]
        params: list[Any] = [after_position]
        if to_position is not None:
            where.append("position <= ?")
            params.append(to_position)
        if types is not None:
            if not types:
                return []
            where.append(f"type IN ({', '.join('?' * len(types))})")
            params.extend(types)
        if stream_prefix is not None:
            where.append("substr(stream_id, 1, ?) = ?")
            params.extend((len(stream_prefix), stream_prefix))
        statement = f"{_SELECT} WHERE {' AND '.join(where)} ORDER BY position LIMIT ?"
        params.append(limit)
        return await self._in_reader(self._decoded, statement, tuple(params))

    def _decoded(self, statement: str, params: tuple[Any, ...]) -> list[RecordedEvent]:
        decode = sql.record_from_row
        return [decode(row) for row in self._query(statement, params)]

    async def _read_stream_page(
        self, stream_id: str, from_version: int, to_version: int | None, backwards: bool, limit: int
    ) -> list[RecordedEvent]:
        where = "stream_id = ? AND version >= ?"
        params: list[Any] = [stream_id, from_version]
        if to_version is not None:
            where += " AND version <= ?"
            params.append(to_version)
        order = "DESC" if backwards else "ASC"
        statement = f"{_SELECT} WHERE {where} ORDER BY version {order} LIMIT ?"
        params.append(limit)
        return await self._in_reader(self._decoded, statement, tuple(params))
