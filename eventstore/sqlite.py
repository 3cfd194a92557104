"""The SQLite backend: WAL with synchronous=FULL, one writer thread, group commit.

aiosqlite hops to its thread for every statement, which caps a one-event append at about 700
per second here; a dedicated writer thread runs each whole batch in one hop instead.

Even one hop per batch is a third of a lone append on this machine: the commit's fsync of the
WAL takes ~150-200 µs, the hop there and back 60-110 µs (both threads sleep meanwhile, and
waking an idle vCPU is slow). So by default (``writer="auto"``) a lone, uncontended append whose
writer knows the head commits on the event loop's own thread, in one INSERT, while commits are
fast (under ``INLINE_COMMIT_BUDGET`` on average). The price is that the loop stops for that
commit (an fsync, and an occasional slow one) instead of serving other tasks meanwhile; it never
stops to wait for a lock (a file locked by another process sends the append to the thread), nor
for a checkpoint (those run on the thread), nor for more than about a millisecond of
back-to-back appends (the store then gives the loop a turn). Concurrent appends (group commit),
slow disks and anything that needs a transaction go to the writer thread. ``writer="thread"``
sends every commit there; ``writer="inline"`` runs every commit on the loop, for single-writer
tools.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import sqlite3
import time
from collections.abc import Callable, Collection, Iterable, Sequence
from typing import Any, Literal, TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.pool import QueuePool

from eventstore import sql
from eventstore.chain import GENESIS_HASH
from eventstore.errors import InvalidAppendError, SchemaVersionError, StoreUnavailableError
from eventstore.merkle import TreeBuilder
from eventstore.planning import NeedsLookup, Outcome, PendingAppend, Planned, Row, plan_batch
from eventstore.records import NO_STREAM, Checkpoint, RecordedEvent
from eventstore.sqlite_lock import sqlite_write_lock
from eventstore.store import DirectWrite, EventStore, now_us
from eventstore.worker import Worker

T = TypeVar("T")

log = logging.getLogger(__name__)

Writer = Literal["auto", "thread", "inline"]

#: writer="auto" commits a lone append on the loop's thread only while commits take less than
#: this on average (a moving average over the last twenty or so commits, either thread): a slow
#: disk sends every commit to the thread, an occasional slow fsync does not.
INLINE_COMMIT_BUDGET = 0.002
#: Rows in one multi-row INSERT statement (10 parameters each); larger batches use a transaction.
_MAX_STATEMENT_ROWS = 1000
#: The loop's own writer connection never checkpoints (that copies pages into the database file
#: and syncs it: milliseconds). When its commits have written about this many WAL pages, a
#: checkpoint runs on the writer thread instead (SQLite's own default is 1000 pages). Python's
#: sqlite3 does not expose the WAL hook that counts them, so they are estimated (_wal_pages).
_CHECKPOINT_PAGES = 1000
_PAGE_SIZE = 4096
#: Seconds a sequence of commits on the loop's thread may go without letting other tasks run.
_MAX_LOOP_HOLD = 0.001

_ROW = "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
_TREE_ROW = "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
_INSERT = f"INSERT INTO events ({sql.COLUMNS}) VALUES {_ROW}"
_INSERT_TREE = f"INSERT INTO events ({sql.TREE_COLUMNS}) VALUES {_TREE_ROW}"
_SELECT = f"SELECT {sql.COLUMNS} FROM events"
_CHUNK = 500  # bound parameters per IN list, well below SQLite's limit
# An event's Merkle nodes: written with it, or (events older than the tree) beside it.
_NODES = (
    "SELECT e.position, COALESCE(e.tree, m.nodes) FROM events e "
    "LEFT JOIN merkle_nodes m ON m.position = e.position"
)


@functools.lru_cache(maxsize=256)
def _insert_rows(count: int, tree: bool = False) -> str:
    if tree:
        return f"INSERT INTO events ({sql.TREE_COLUMNS}) VALUES {', '.join([_TREE_ROW] * count)}"
    return f"INSERT INTO events ({sql.COLUMNS}) VALUES {', '.join([_ROW] * count)}"


def _with_trees(planned: Planned) -> list[tuple[Any, ...]]:
    """Each row's values, followed by its Merkle node blob when the store keeps the tree."""
    if planned.nodes is None:
        return planned.rows  # type: ignore[return-value]
    return [(*row, blob) for row, blob in zip(planned.rows, planned.nodes, strict=True)]


def _nodes_sync(conn: Any, positions: Sequence[int]) -> dict[int, bytes]:
    found: dict[int, bytes] = {}
    for start in range(0, len(positions), _CHUNK):
        chunk = positions[start : start + _CHUNK]
        marks = ", ".join("?" * len(chunk))
        for position, blob in conn.execute(f"{_NODES} WHERE e.position IN ({marks})", chunk):
            if blob is not None:
                found[position] = bytes(blob)
    return found


def _wal_pages(batch: list[PendingAppend]) -> int:
    """About how many WAL pages a batch's commit writes; only the checkpoints' cadence uses it.

    The leaf pages of the table and its two indexes, plus the pages the rows fill, with room
    for index entries and splits: measured 3.4 frames for one 500-byte event, 31 for a hundred.
    """
    size = sum(len(e.data) + len(e.metadata) + 250 for r in batch for e in r.events)
    return 3 + size * 3 // (2 * _PAGE_SIZE)


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
        writer: Writer = "auto",
        merkle: bool = True,
    ) -> None:
        super().__init__(
            poll_interval=poll_interval, max_batch_events=max_batch_events, merkle=merkle
        )
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
        if writer not in ("auto", "thread", "inline"):
            raise ValueError(f"writer must be 'auto', 'thread' or 'inline', not {writer!r}")
        # "thread": every commit (and its fsync) runs on a thread of its own, so the event loop
        # keeps serving while the disk syncs, at the cost of a thread hand-off per batch.
        # "inline": every commit runs on the loop's thread, which also waits there for a lock
        # held by another process: for a single sequential writer (a CLI import) only.
        # "auto": see the module's docstring.
        self.writer_mode = writer
        self._writer = Worker("eventstore-sqlite-writer")
        self._writer_conn: Any = None  # the pool's wrapper, closed at the end
        self._writer_sqlite: sqlite3.Connection | None = None  # the sqlite3 connection inside
        # What the writer knows of the log after its last commit; trusted only while
        # PRAGMA data_version says no other connection has committed since.
        self._known_data_version: int | None = None
        self._known_head: tuple[int, bytes] | None = None
        # The Merkle tree's frontier at _known_head (None: not known, read it with the head).
        self._known_frontier: list[bytes] | None = None
        self._known_versions: dict[str, int] = {}
        self._reader: Any = None
        # writer="auto": the loop's own connection for lone appends, never waiting for a lock.
        self._loop_writer: sqlite3.Connection | None = None
        self._commit_seconds: float | None = None  # moving average of commit durations
        self._loop_commits = 0
        self._pages_since_checkpoint = 0
        self._holding_loop_since: float | None = None
        self._checkpointing: asyncio.Task[None] | None = None
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
        # an indexed lookup in the page cache costs less than the two thread switches that
        # offloading it would add.
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
            elif row[0] < sql.SCHEMA_VERSION:
                conn.execute(
                    "UPDATE eventstore_schema SET version = ? WHERE component = 'events'",
                    (sql.SCHEMA_VERSION,),
                )
            columns = {info[1] for info in conn.execute("PRAGMA table_info(events)")}
            if "tree" not in columns:
                # A schema-1 database: the column is added, never written into old rows.
                conn.execute("ALTER TABLE events ADD COLUMN tree BLOB")
            if self.merkle:
                self._complete_tree_sync(conn)
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    def _complete_tree_sync(self, conn: sqlite3.Connection) -> None:
        """Build the Merkle nodes of events that have none (an upgrade, or a store that kept
        no tree), into merkle_nodes: events are never updated."""
        head = conn.execute("SELECT MAX(position) FROM events").fetchone()[0] or 0
        if head == 0 or _nodes_sync(conn, [head]):
            return
        first = conn.execute(
            "SELECT MIN(e.position) FROM events e LEFT JOIN merkle_nodes m "
            "ON m.position = e.position WHERE e.tree IS NULL AND m.position IS NULL"
        ).fetchone()[0]
        from eventstore.tree import frontier_of, frontier_positions, row_leaf

        size = first - 1
        builder = TreeBuilder(size, frontier_of(size, _nodes_sync(conn, frontier_positions(size))))
        position = size
        while True:
            page = conn.execute(
                f"SELECT {sql.COLUMNS}, tree FROM events WHERE position > ? "
                "ORDER BY position LIMIT 5000",
                (position,),
            ).fetchall()
            if not page:
                break
            missing: list[tuple[int, bytes]] = []
            for values in page:
                row = Row._make(values[:10])
                if row.position != builder.size + 1:
                    raise StoreUnavailableError(f"the log has a gap before position {row.position}")
                blob = builder.add(row_leaf(row))
                if values[10] is None:
                    missing.append((row.position, blob))
            conn.executemany(
                "INSERT OR REPLACE INTO merkle_nodes (position, nodes) VALUES (?, ?)", missing
            )
            position = page[-1][0]
        log.info("built the Merkle tree of %s from position %d to %d", self.path, first, head)

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

        if self._checkpointing is not None:
            await asyncio.gather(self._checkpointing, return_exceptions=True)
        await self._in_writer(close_writer)
        self._writer.stop()
        if self._loop_writer is not None:
            self._loop_writer.close()
            self._loop_writer = None
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
        batch = [request]
        if self.writer_mode == "inline":
            try:
                return self._write_batch_sync(batch)[0]
            finally:
                lock.release()
        average = self._commit_seconds
        if self.writer_mode == "auto" and average is not None and average < INLINE_COMMIT_BUDGET:
            try:
                outcomes = self._write_on_loop(batch)
            finally:
                lock.release()
            if outcomes is not None:
                await self._share_the_loop()
                return outcomes[0]
            await lock.acquire()
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
            self._writer.call(self._write_timed, (batch,), finish)
        except BaseException:
            lock.release()
            raise
        return (await done)[0]

    def _write_on_loop(self, batch: list[PendingAppend]) -> list[Outcome] | None:
        """writer="auto": one INSERT on the loop's connection, or None to use the thread."""
        if self._known_head is None:
            return None
        conn = self._loop_connection()
        started = time.perf_counter()
        try:
            outcomes = self._insert_at_known_head(conn, batch)
        except sqlite3.OperationalError as exc:
            if "locked" in str(exc) or "busy" in str(exc):
                return None  # another process is writing: wait for it on the writer thread
            raise _unavailable(exc) from exc
        except sqlite3.Error as exc:
            raise _unavailable(exc) from exc
        if outcomes is None:
            return None
        self._note_commit(time.perf_counter() - started)
        self._loop_commits += 1
        self._pages_since_checkpoint += _wal_pages(batch)
        if self._pages_since_checkpoint >= _CHECKPOINT_PAGES:
            self._pages_since_checkpoint = 0
            self._checkpoint_soon()
        return outcomes

    async def _share_the_loop(self) -> None:
        """Yield to the event loop if appends on its thread have held it for a while.

        A commit on the loop's thread never suspends the caller, so a client appending in a
        tight loop would otherwise starve every other task (and the checkpoint) for good.
        A callback scheduled after the first such commit tells whether the loop has run since;
        if it has not for _MAX_LOOP_HOLD, give it one turn. A caller that awaits anything else
        between appends (a server's request handler) never pays for that turn.
        """
        now = time.perf_counter()
        if self._holding_loop_since is None:
            self._holding_loop_since = now
            asyncio.get_running_loop().call_soon(self._loop_ran)
        elif now - self._holding_loop_since > _MAX_LOOP_HOLD:
            await asyncio.sleep(0)

    def _loop_ran(self) -> None:
        self._holding_loop_since = None

    def _loop_connection(self) -> sqlite3.Connection:
        if self._loop_writer is None:
            conn = sqlite3.connect(
                self.path, isolation_level=None, check_same_thread=False, timeout=0
            )
            self._on_connect(conn, None)
            # Never wait on the loop's thread: a locked file sends the append to the thread.
            conn.execute("PRAGMA busy_timeout = 0")
            conn.execute("PRAGMA wal_autocheckpoint = 0")
            self._loop_writer = conn
        return self._loop_writer

    def _note_commit(self, seconds: float) -> None:
        average = self._commit_seconds
        self._commit_seconds = seconds if average is None else average + (seconds - average) / 20

    def _write_timed(self, batch: list[PendingAppend]) -> list[Outcome]:
        started = time.perf_counter()
        outcomes = self._write_batch_sync(batch)
        self._note_commit(time.perf_counter() - started)
        return outcomes

    def _checkpoint_soon(self) -> None:
        if self._checkpointing is None or self._checkpointing.done():
            self._checkpointing = asyncio.get_running_loop().create_task(
                self._checkpoint(), name="eventstore-sqlite-checkpoint"
            )

    async def _checkpoint(self) -> None:
        # Under the write lock, like SQLite's own automatic checkpoint inside a COMMIT: with
        # appends still arriving, a checkpoint never catches up with the end of the WAL, the
        # WAL is never restarted and grows (47 MB after 3,000 appends, against 5 MB), and every
        # commit that extends the file costs its fsync a metadata update (half the appends/s).
        # Appends wait for it, the loop does not.
        try:
            async with self._write_lock():
                await self._in_writer(self._checkpoint_sync)
        except Exception as exc:  # a later checkpoint (or SQLite's own) will do
            log.warning("event store checkpoint of %s failed: %s", self.path, exc)

    def _checkpoint_sync(self) -> None:
        # PASSIVE: copies what it can without waiting for readers, so it cannot stall.
        self._writer_connection().execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()

    def _write_batch_sync(self, batch: list[PendingAppend]) -> list[Outcome]:
        conn = self._writer_connection()
        try:
            if self._known_head is not None:
                outcomes = self._insert_at_known_head(conn, batch)
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

    def _insert_at_known_head(
        self, conn: sqlite3.Connection, batch: list[PendingAppend]
    ) -> list[Outcome] | None:
        """The batch as one statement in autocommit mode; None when a transaction must decide.

        The rows are numbered after the head this writer last saw committed, and versioned
        after the versions it last saw. Rows are never changed or deleted, so the log can only
        have grown since: if it has, its next position (the primary key) or a stream's next
        version (a unique index) is taken and the statement fails whole, writing nothing. So a
        statement that succeeds followed the true head and the true versions, without the
        BEGIN IMMEDIATE, PRAGMA data_version and COMMIT around it (about 15 µs of a one-event
        append); SQLite still takes its write lock and syncs the WAL for it. A stream this
        writer has not seen is assumed empty only when the request says it is (NO_STREAM or
        version 0); any other request for it goes to the transaction, which reads its version.
        """
        assert self._known_head is not None
        known = self._known_versions
        versions: dict[str, int] = {}
        for request in batch:
            version = known.get(request.stream_id)
            if version is None:
                if request.expected is not NO_STREAM and request.expected != 0:
                    return None
                version = 0
            versions.setdefault(request.stream_id, version)
        head_position, head_hash = self._known_head
        frontier = self._known_frontier
        if self.merkle and frontier is None:
            return None
        try:
            planned = plan_batch(
                batch, head_position, head_hash, versions, now_us(), None, frontier
            )
        except NeedsLookup:
            return None
        rows = planned.rows
        if not rows or len(rows) > _MAX_STATEMENT_ROWS:
            return None
        tree = planned.nodes is not None
        try:
            values = _with_trees(planned)
            if len(rows) == 1:
                conn.execute(_INSERT_TREE if tree else _INSERT, values[0])
            else:
                conn.execute(_insert_rows(len(rows), tree), [v for row in values for v in row])
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
        if len(known) > 100_000:
            known.clear()
        for row in rows:
            known[row.stream_id] = row.version
        self._known_head = (rows[-1].position, rows[-1].hash)
        self._known_frontier = planned.frontier
        return planned.outcomes

    def _forget(self) -> None:
        self._known_data_version = None
        self._known_head = None
        self._known_frontier = None
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
            self._known_frontier = None
            self._known_versions.clear()
        head_position, head_hash = self._known_head
        frontier = self._known_frontier
        if self.merkle and frontier is None:
            from eventstore.tree import frontier_of, frontier_positions

            positions = frontier_positions(head_position)
            frontier = frontier_of(head_position, _nodes_sync(conn, positions))
        elif not self.merkle:
            frontier = None
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
            planned = plan_batch(
                batch, head_position, head_hash, versions, stamp, existing, frontier
            )
        except NeedsLookup:
            existing = self._lookup(conn, batch)
            planned = plan_batch(
                batch, head_position, head_hash, versions, stamp, existing, frontier
            )
        rows = planned.rows
        if rows:
            conn.executemany(
                _INSERT if planned.nodes is None else _INSERT_TREE, _with_trees(planned)
            )
            if len(known) > 100_000:
                known.clear()
            for row in rows:
                known[row.stream_id] = row.version
            self._known_head = (rows[-1].position, rows[-1].hash)
            self._known_frontier = planned.frontier
        else:
            self._known_frontier = frontier
        self._known_data_version = data_version
        return planned.outcomes

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
            builder = TreeBuilder() if self.merkle else None
            statement = _INSERT if builder is None else _INSERT_TREE
            chunk: list[tuple[Any, ...]] = []
            for row in rows():
                if builder is None:
                    chunk.append(row)
                else:
                    from eventstore.tree import row_leaf

                    chunk.append((*row, builder.add(row_leaf(row))))
                if len(chunk) >= 5000:
                    conn.executemany(statement, chunk)
                    count += len(chunk)
                    chunk.clear()
            conn.executemany(statement, chunk)
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

    async def _read_streams(self, stream_ids: Sequence[str]) -> list[RecordedEvent]:
        marks = ", ".join("?" * len(stream_ids))
        statement = f"{_SELECT} WHERE stream_id IN ({marks}) ORDER BY stream_id, version"
        return self._decoded(statement, tuple(stream_ids))

    # -- the Merkle tree and checkpoints ---------------------------------------------------

    async def read_tree_nodes(self, positions: Sequence[int]) -> dict[int, bytes]:
        found: dict[int, bytes] = {}
        for start in range(0, len(positions), _CHUNK):
            chunk = tuple(positions[start : start + _CHUNK])
            marks = ", ".join("?" * len(chunk))
            for position, blob in self._query(f"{_NODES} WHERE e.position IN ({marks})", chunk):
                if blob is not None:
                    found[position] = bytes(blob)
        return found

    async def read_tree_range(self, first: int, last: int) -> dict[int, bytes]:
        rows = self._query(f"{_NODES} WHERE e.position BETWEEN ? AND ?", (first, last))
        return {position: bytes(blob) for position, blob in rows if blob is not None}

    async def save_checkpoint(self, checkpoint: Checkpoint) -> None:
        async with self._write_lock():
            await self._in_writer(self._save_checkpoint_sync, checkpoint)

    def _save_checkpoint_sync(self, checkpoint: Checkpoint) -> None:
        conn = self._writer_connection()
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.execute(
                "INSERT INTO eventstore_checkpoints "
                "(tree_size, root_hash, origin, note, signed, created_at) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (
                    checkpoint.tree_size,
                    checkpoint.root_hash,
                    checkpoint.origin,
                    checkpoint.note,
                    checkpoint.signed,
                    checkpoint.created_at_us,
                ),
            )
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    async def checkpoints_at(self, tree_size: int) -> list[Checkpoint]:
        rows = self._query(
            "SELECT origin, tree_size, root_hash, note, signed, created_at "
            "FROM eventstore_checkpoints WHERE tree_size = ? ORDER BY id",
            (tree_size,),
        )
        return [Checkpoint(r[0], r[1], bytes(r[2]), r[3], bool(r[4]), r[5]) for r in rows]
