"""The SQLite backend: WAL with synchronous=FULL, one writer thread, group commit.

aiosqlite hops to its thread for every statement, which caps a one-event append at about 700
per second here; a dedicated writer thread runs each whole batch in one hop instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import Callable, Collection, Iterable
from typing import Any, Literal, TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.pool import QueuePool

from eventstore import sql
from eventstore.chain import GENESIS_HASH
from eventstore.errors import InvalidAppendError, SchemaVersionError, StoreUnavailableError
from eventstore.planning import NeedsLookup, Outcome, PendingAppend, Row, plan_batch
from eventstore.records import RecordedEvent
from eventstore.sqlite_lock import sqlite_write_lock
from eventstore.store import DirectWrite, EventStore, now_us
from eventstore.worker import Worker

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
        writer: Literal["thread", "inline"] = "thread",
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
            pool_size=2,
            max_overflow=4,
            connect_args={
                "check_same_thread": False,
                "timeout": busy_timeout,
                "isolation_level": None,  # we issue BEGIN IMMEDIATE / COMMIT ourselves
            },
        )
        sa.event.listen(self.engine, "connect", self._on_connect)
        if writer not in ("thread", "inline"):
            raise ValueError(f"writer must be 'thread' or 'inline', not {writer!r}")
        # "thread": commits (and their fsync) run on a thread of their own, so the event loop
        # keeps serving while the disk syncs; the hand-off costs ~170-400 µs per batch here.
        # "inline": commits run on the loop's thread, blocking it for each commit; faster for
        # a single sequential writer (a CLI import), wrong for a server with other work.
        self.writer_mode = writer
        self._writer = Worker("eventstore-sqlite-writer")
        self._writer_conn: Any = None  # the pool's wrapper, closed at the end
        self._writer_sqlite: sqlite3.Connection | None = None  # the sqlite3 connection inside
        # What the writer knows of the log after its last commit; trusted only while
        # PRAGMA data_version says no other connection has committed since.
        self._known_data_version: int | None = None
        self._known_head: tuple[int, bytes] | None = None
        self._known_versions: dict[str, int] = {}
        self._reader: Any = None
        self._closed = False

    def _on_connect(self, dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout * 1000)}")
        cursor.execute("PRAGMA journal_mode = WAL")
        cursor.execute(f"PRAGMA synchronous = {self._synchronous}")
        cursor.close()

    # -- threads ---------------------------------------------------------------------------

    async def _in_writer(self, fn: Callable[..., T], *args: Any) -> T:
        return await self._writer.run(fn, *args)

    def _query(self, statement: str, params: tuple[Any, ...] = ()) -> list[Any]:
        # Reads run on the event loop's thread: in WAL mode they never wait for a writer, and
        # an indexed lookup in the page cache costs less than the two thread switches
        # (about 170 µs here) that offloading it would add.
        if self._reader is None:
            self._reader = self.engine.raw_connection()
        try:
            return self._reader.execute(statement, params).fetchall()  # type: ignore[no-any-return]
        except sqlite3.Error as exc:
            raise _unavailable(exc) from exc

    # -- lifecycle -------------------------------------------------------------------------

    async def setup(self) -> None:
        async with self._write_lock():
            await self._in_writer(self._setup_sync)

    def _write_lock(self) -> sqlite_write_lock:
        # Shared with the projection runner's transactions on the same file, so neither side
        # ever sleeps in SQLite's busy handler while the other commits.
        return sqlite_write_lock(self.path, self.busy_timeout)

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

    def _writer_connection(self) -> sqlite3.Connection:
        if self._writer_sqlite is None:
            self._writer_conn = self.engine.raw_connection()
            # The pool's wrapper forwards every call through __getattr__; the writer talks to
            # the sqlite3 connection directly.
            self._writer_sqlite = self._writer_conn.driver_connection
        assert self._writer_sqlite is not None
        return self._writer_sqlite

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        await super().close()

        def close_writer() -> None:
            if self._writer_conn is not None:
                self._writer_conn.close()
                self._writer_conn = None
                self._writer_sqlite = None

        await self._in_writer(close_writer)
        self._writer.stop()
        if self._reader is not None:
            self._reader.close()
            self._reader = None
        self.engine.dispose()

    # -- writing ---------------------------------------------------------------------------

    async def _write_batch(self, batch: list[PendingAppend]) -> list[Outcome]:
        async with self._write_lock():
            if self.writer_mode == "inline":
                return self._write_batch_sync(batch)
            return await self._in_writer(self._write_batch_sync, batch)

    def _direct_write(self) -> DirectWrite:
        return self._write_direct

    async def _write_direct(self, request: PendingAppend) -> Outcome:
        """A lone append, from its caller's task: no group-commit task in between."""
        lock = self._write_lock()
        await lock.acquire()
        if self.writer_mode == "inline":
            try:
                return self._write_batch_sync([request])[0]
            finally:
                lock.release()
        done: asyncio.Future[list[Outcome]] = asyncio.get_running_loop().create_future()

        def finish(outcomes: list[Outcome] | None, exc: BaseException | None) -> None:
            # Runs when the writer thread is done, even if the caller was cancelled meanwhile:
            # the lock covers the whole transaction, as it does for a group commit.
            lock.release()
            if done.done():
                return
            if exc is not None:
                done.set_exception(exc)
            else:
                done.set_result(outcomes)  # type: ignore[arg-type]

        try:
            self._writer.call(self._write_batch_sync, ([request],), finish)
        except BaseException:
            lock.release()
            raise
        return (await done)[0]

    def _write_batch_sync(self, batch: list[PendingAppend]) -> list[Outcome]:
        conn = self._writer_connection()
        try:
            if len(batch) == 1 and len(batch[0].events) == 1 and self._known_head is not None:
                outcomes = self._insert_alone(conn, batch)
                if outcomes is not None:
                    return outcomes
            try:
                return self._write_once(conn, batch, careful=False)
            except sqlite3.IntegrityError:
                # An event id that is already stored, in a request whose version check passed:
                # redo the batch with the ids looked up, so the retry is answered properly.
                return self._write_once(conn, batch, careful=True)
        except sqlite3.Error as exc:
            raise _unavailable(exc) from exc

    def _insert_alone(
        self, conn: sqlite3.Connection, batch: list[PendingAppend]
    ) -> list[Outcome] | None:
        """One event, one statement in autocommit mode; None when the careful path must decide.

        The row is numbered after the head this writer last saw committed, and versioned after
        the stream's last version it saw. Rows are never changed or deleted, so the log can
        only have grown since: if it has, its next position (the primary key) or the stream's
        next version (a unique index) is taken and the insert fails whole, writing nothing.
        So an insert that succeeds followed the true head and the true version, without the
        BEGIN IMMEDIATE, PRAGMA data_version and COMMIT statements around it (about 15 µs of
        a one-event append); SQLite still takes its write lock and syncs the WAL for it.
        """
        assert self._known_head is not None
        request = batch[0]
        version = self._known_versions.get(request.stream_id)
        if version is None:
            return None  # a stream this writer has not seen: the careful path reads its version
        head_position, head_hash = self._known_head
        try:
            rows, outcomes = plan_batch(
                batch, head_position, head_hash, {request.stream_id: version}, now_us(), None
            )
        except NeedsLookup:
            return None
        if len(rows) != 1:
            return None
        (row,) = rows
        try:
            conn.execute(_INSERT, row)
        except sqlite3.IntegrityError:
            # Somebody else appended, or an id is reused: read everything afresh.
            self._known_data_version = None
            return None
        except BaseException:
            self._forget()
            # SQLite may keep the implicit transaction of a statement that failed in its
            # commit (a full disk, an I/O error) open, and with it the write lock.
            if conn.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
            raise
        self._known_versions[row.stream_id] = row.version
        self._known_head = (row.position, row.hash)
        return outcomes

    def _forget(self) -> None:
        self._known_data_version = None
        self._known_head = None
        self._known_versions.clear()

    def _write_once(
        self, conn: sqlite3.Connection, batch: list[PendingAppend], careful: bool
    ) -> list[Outcome]:
        conn.execute("BEGIN IMMEDIATE")
        try:
            outcomes = self._plan_and_insert(conn, batch, careful)
            conn.execute("COMMIT")
        except BaseException:
            # Planning already moved the head this writer remembers; the one-statement path
            # numbers after it, so it must only ever hold what was committed.
            self._forget()
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        return outcomes

    def _plan_and_insert(
        self, conn: Any, batch: list[PendingAppend], careful: bool
    ) -> list[Outcome]:
        data_version = conn.execute("PRAGMA data_version").fetchone()[0]
        if data_version != self._known_data_version or self._known_head is None:
            row = conn.execute(
                "SELECT position, hash FROM events ORDER BY position DESC LIMIT 1"
            ).fetchone()
            self._known_head = (row[0], bytes(row[1])) if row else (0, GENESIS_HASH)
            self._known_versions.clear()
        head_position, head_hash = self._known_head
        known = self._known_versions
        missing = {r.stream_id for r in batch if r.stream_id not in known}
        if missing:
            found = self._versions(conn, missing)
            for stream_id in missing:
                known[stream_id] = found.get(stream_id, 0)
        versions = {r.stream_id: known[r.stream_id] for r in batch}
        stamp = now_us()
        existing = self._lookup(conn, batch) if careful else None
        try:
            rows, outcomes = plan_batch(batch, head_position, head_hash, versions, stamp, existing)
        except NeedsLookup:
            existing = self._lookup(conn, batch)
            rows, outcomes = plan_batch(batch, head_position, head_hash, versions, stamp, existing)
        if rows:
            conn.executemany(_INSERT, rows)
            if len(known) > 100_000:
                known.clear()
            for row in rows:
                known[row.stream_id] = row.version
            self._known_head = (rows[-1].position, rows[-1].hash)
        self._known_data_version = data_version
        return outcomes

    @staticmethod
    def _versions(conn: Any, streams: set[str]) -> dict[str, int]:
        if len(streams) == 1:
            (stream_id,) = streams
            row = conn.execute(
                "SELECT MAX(version) FROM events WHERE stream_id = ?", (stream_id,)
            ).fetchone()
            return {stream_id: row[0] or 0}
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
        rows = self._query("SELECT MAX(version) FROM events WHERE stream_id = ?", (stream_id,))
        return int(rows[0][0] or 0)

    async def head_position(self) -> int:
        rows = self._query("SELECT MAX(position) FROM events")
        return int(rows[0][0] or 0)

    async def head(self) -> RecordedEvent | None:
        rows = self._query(f"{_SELECT} ORDER BY position DESC LIMIT 1")
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
        return self._decoded(statement, tuple(params))

    async def restore(self, rows: Callable[[], Iterable[Row]]) -> int:
        async with self._write_lock():
            count = await self._in_writer(self._restore_sync, rows)
        if count:
            self._notifier.notify()
        return count

    def _restore_sync(self, rows: Callable[[], Iterable[Row]]) -> int:
        conn = self._writer_connection()
        self._forget()
        conn.execute("BEGIN IMMEDIATE")
        try:
            if conn.execute("SELECT 1 FROM events LIMIT 1").fetchone() is not None:
                raise InvalidAppendError("restore needs an empty log")
            count = 0
            chunk: list[Row] = []
            for row in rows():
                chunk.append(row)
                if len(chunk) >= 5000:
                    conn.executemany(_INSERT, chunk)
                    count += len(chunk)
                    chunk.clear()
            conn.executemany(_INSERT, chunk)
            count += len(chunk)
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        return count

    async def _read_rows_page(self, after_position: int, limit: int) -> list[Row]:
        rows = self._query(
            f"{_SELECT} WHERE position > ? ORDER BY position LIMIT ?", (after_position, limit)
        )
        # sqlite3 returns BLOBs as bytes already: the row tuple is the Row as it is.
        make = Row._make
        return [make(row) for row in rows]

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
        return self._decoded(statement, tuple(params))
