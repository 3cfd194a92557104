"""Projections: checkpointed consumers of the log that fold events into SQL read-model tables.

The contract, for a projection author:

* A projection owns the tables named in ``tables`` (plain lower-case identifiers). It never
  writes them itself outside ``create`` and ``apply``, and it addresses them only through the
  ``TableNames`` mapping it is handed: ``tables["statements"]`` is ``"statements"`` for the live
  tables and ``"statements__rb1f2e3d4c"`` while a rebuild fills an aside copy. Every other object
  it creates (indexes, triggers) must be named after a mapped table name, e.g.
  ``f"{tables['statements']}_by_date"``, so that an aside copy never clashes with the live one;
  after a swap the live table keeps the aside copy's index names, which is harmless since each
  rebuild picks a new suffix. FTS5 tables rename along with their shadow tables. On SQLite, no
  view may refer to a projection's tables: SQLite refuses the rename while a view is dangling.
* ``create(conn, tables)`` creates those tables, empty. ``apply(conn, events, tables)`` folds a
  batch of events, in log order, into them. Both run inside a transaction the runner owns (do not
  commit or roll back) together with the checkpoint update, so each event takes effect exactly
  once. Applying a batch must have the same effect as applying its events one by one, since a
  failing batch is split to find the failing event.
* ``apply`` only sees events whose type is in ``types`` (``None``: every event); the checkpoint
  still moves over the others, so an idle projection never lags behind the head.
* Bumping ``version`` means "my tables must be rebuilt": the runner rebuilds from position 0 into
  aside tables and swaps them in within one transaction (drop the old tables, rename the new ones,
  move the checkpoint), so readers see the old tables until the new ones are complete.
* An exception from ``apply`` stops that projection alone, at the failing event, with the error
  recorded in its checkpoint row. Once the cause is fixed, ``retry`` (or a restart) resumes it from
  that event. Database errors that are transient (lost connection, SQLite busy, deadlock) are not
  failures: the batch is retried after a pause.

The checkpoint table ``projection_checkpoints`` holds one row per projection: the position of the
last event processed (never "the end of the last page read"), the version its tables were built
with, its status (``active`` or ``failed``) and the error that stopped it. A projection without a
row owns no data: its tables are dropped and created afresh on first start.

On PostgreSQL, each projection runs in one process at a time: the leader holds a session advisory
lock (see ``eventstore.leader``) and the others retry every second. Every checkpoint update is also
a compare-and-set on the previous position, so even two processes that both believe they lead (or
a rebuild swapping tables under a running projection) cannot apply an event twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import logging
import re
import secrets
from collections.abc import (
    AsyncGenerator,
    AsyncIterator,
    Awaitable,
    Callable,
    Iterable,
    Iterator,
    Mapping,
    Sequence,
)
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, Protocol

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from eventstore.errors import StoreUnavailableError
from eventstore.leader import LeaderElection, exclusive, leader_election_for
from eventstore.records import RecordedEvent, us_to_datetime
from eventstore.sqlite_lock import sqlite_write_lock
from eventstore.store import EventStore, now_us
from eventstore.watcher import (
    LOCAL_FAILED,
    LOCAL_NONE,
    LOCAL_RUNNING,
    LOCAL_STARTING,
    CheckpointWatcher,
)

log = logging.getLogger(__name__)

#: Checkpoint statuses stored in the table.
ACTIVE: Final = "active"
FAILED: Final = "failed"
#: Statuses that only ``ProjectionStatus`` reports.
NEW: Final = "new"  # no checkpoint yet
STALE: Final = "stale"  # built by another version of the projection; a rebuild is pending
REBUILDING: Final = "rebuilding"  # this runner is rebuilding it

_ASIDE_PREFIX: Final = "__rb"
#: How often at most an idle projection (nothing of its types arrived) writes its checkpoint.
IDLE_CHECKPOINT_INTERVAL: Final = 1.0
_TABLE_NAME = re.compile(r"[a-z_][a-z0-9_]{0,49}")  # leaves room for the aside suffix in 63
_MAX_ERROR = 4000
_DEFAULT_BUSY_TIMEOUT: Final = 5.0  # for SQLite drivers that do not report theirs
_SETUP_KEY: Final = 0x70726F6A5F736574  # advisory lock serializing first starts ("proj_set")

checkpoint_metadata = sa.MetaData()

checkpoints = sa.Table(
    "projection_checkpoints",
    checkpoint_metadata,
    sa.Column("name", sa.Text(), primary_key=True),
    sa.Column("position", sa.BigInteger(), nullable=False),
    sa.Column("version", sa.Integer(), nullable=False),
    sa.Column("updated_at", sa.BigInteger(), nullable=False),  # microseconds since the epoch, UTC
    sa.Column("error", sa.Text()),
    sa.Column("error_position", sa.BigInteger()),
    sa.Column("status", sa.Text(), nullable=False),
)


class TableNames(Mapping[str, str]):
    """Maps each table a projection owns to the physical table to use: itself or an aside copy."""

    def __init__(self, tables: Iterable[str], suffix: str = "") -> None:
        self._tables = tuple(tables)
        for table in self._tables:
            if not _TABLE_NAME.fullmatch(table):
                raise ValueError(
                    f"projection table name {table!r} must be a lower-case identifier of at most "
                    "50 characters"
                )
        self.suffix = suffix

    def __getitem__(self, table: str) -> str:
        if table not in self._tables:
            raise KeyError(f"{table!r} is not one of the projection's tables {self._tables}")
        return table + self.suffix

    def __iter__(self) -> Iterator[str]:
        return iter(self._tables)

    def __len__(self) -> int:
        return len(self._tables)

    def __repr__(self) -> str:
        return f"TableNames({dict(self)!r})"


class Projection(Protocol):
    """A named, versioned fold of the log into SQL tables; see the module docstring's contract."""

    @property
    def name(self) -> str:
        """Unique among projections; the checkpoint row's key."""

    @property
    def version(self) -> int:
        """Bumped whenever the tables' shape or meaning changes: a rebuild is then needed."""

    @property
    def types(self) -> frozenset[str] | None:
        """The event types ``apply`` needs, or None for every event."""

    @property
    def tables(self) -> Sequence[str]:
        """The tables the projection owns, in creation order (they are dropped in reverse)."""

    async def create(self, conn: AsyncConnection, tables: TableNames) -> None:
        """Create the (empty) tables and their indexes under the names in ``tables``."""

    async def apply(
        self, conn: AsyncConnection, events: Sequence[RecordedEvent], tables: TableNames
    ) -> None:
        """Fold a batch of events into ``tables``, inside the runner's transaction."""


@dataclass(frozen=True, slots=True)
class ProjectionStatus:
    """Where a projection stands: its checkpoint, the head, its lag and what stopped it."""

    name: str
    status: str  # active, failed, new, stale or rebuilding
    position: int
    head: int
    lag_events: int
    lag_seconds: float
    version: int | None  # the version its tables were built with; None before the first start
    error: str | None
    error_position: int | None
    updated_at: datetime | None
    running: bool | None = None  # whether this process runs it; None when asked without a runner


class ProjectionError(Exception):
    """A projection raised on an event: its name, the event's position and the cause."""

    def __init__(self, name: str, position: int, cause: BaseException) -> None:
        self.name = name
        self.position = position
        self.cause = cause
        super().__init__(f"projection {name!r} failed at position {position}: {_describe(cause)}")


@dataclass(frozen=True, slots=True)
class _Checkpoint:
    position: int
    version: int
    status: str
    error: str | None
    error_position: int | None
    updated_at: int


async def _wait_event(event: asyncio.Event, timeout: float) -> None:
    """Wait for an event at most ``timeout`` seconds.

    Not asyncio.wait_for: on Python 3.11 it can swallow a cancellation that arrives just as
    the event is set, and a task that misses its cancellation never stops.
    """
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(timeout):
            await event.wait()


class _Moved(Exception):
    """The checkpoint row changed under us (a rebuild, a retry, another leader): reload it."""


class _LostLeadership(Exception):
    """Another process may be running the projection now: stop applying events."""


# -- the checkpoint table ------------------------------------------------------------------


#: On PostgreSQL every change of a checkpoint row notifies, from its own transaction, so that
#: the notification arrives once the read models' writes are visible (``eventstore.watcher``).
#: The channel is named after the table's schema, as ``watcher.notify_channel`` names it.
_NOTIFY_FUNCTION: Final = """
CREATE OR REPLACE FUNCTION projection_checkpoints_notify() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify(
        'projection_checkpoints_' || substr(md5(TG_TABLE_SCHEMA), 1, 16),
        json_build_object('name', NEW.name, 'position', NEW.position, 'status', NEW.status)::text);
    RETURN NULL;
END $$
"""
_NOTIFY_TRIGGER: Final = """
CREATE TRIGGER projection_checkpoints_notify
AFTER INSERT OR UPDATE ON projection_checkpoints
FOR EACH ROW EXECUTE FUNCTION projection_checkpoints_notify()
"""
_HAS_NOTIFY_TRIGGER: Final = """
SELECT EXISTS (SELECT 1 FROM pg_trigger WHERE tgname = 'projection_checkpoints_notify'
               AND tgrelid = to_regclass('projection_checkpoints'))
"""


async def setup_checkpoints(engine: AsyncEngine) -> None:
    """Create the checkpoint table if it is missing; safe to call on every start."""
    async with _transaction(engine) as conn:
        if conn.dialect.name == "postgresql":
            # Concurrent CREATE TABLE IF NOT EXISTS can still collide on PostgreSQL.
            await conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": _SETUP_KEY})
        await conn.execute(sa.schema.CreateTable(checkpoints, if_not_exists=True))
        # Created once, not replaced on every start: that would lock the table against the
        # running leaders' checkpoint updates.
        if (
            conn.dialect.name == "postgresql"
            and not (await conn.exec_driver_sql(_HAS_NOTIFY_TRIGGER)).scalar()
        ):
            await conn.exec_driver_sql(_NOTIFY_FUNCTION)
            await conn.exec_driver_sql(_NOTIFY_TRIGGER)


@contextlib.asynccontextmanager
async def _transaction(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    """A write transaction that takes its locks up front.

    On SQLite a deferred transaction that reads and then writes fails at once with "database is
    locked" when another connection wrote in between; BEGIN IMMEDIATE waits for the write lock
    instead, and makes the DDL of a swap part of the transaction. Writers of this process
    first queue on a lock shared with the event store's writer (see ``eventstore.sqlite_lock``),
    so they wait for each other without sleeping in SQLite's busy handler.
    """
    if engine.dialect.name != "sqlite":
        async with engine.begin() as conn:
            yield conn
        return
    async with engine.connect() as conn:
        raw = await conn.get_raw_connection()
        timeout = getattr(raw.dbapi_connection, "busy_timeout", _DEFAULT_BUSY_TIMEOUT)
        synchronous = None
        try:
            # The lock covers the COMMIT (or ROLLBACK) too: it ends with the transaction.
            async with sqlite_write_lock(engine.url.database, timeout), conn.begin():
                synchronous = (await conn.exec_driver_sql("PRAGMA synchronous")).scalar()
                # Read models are derived from the log: a power cut may undo their last
                # commits, never half of one (WAL stays atomic; the checkpoint moves with the
                # rows), and the runner re-applies those events. Skipping the fsync halves
                # the time a batch holds the write lock that appends wait for.
                await conn.exec_driver_sql("PRAGMA synchronous = NORMAL")
                await conn.exec_driver_sql("BEGIN IMMEDIATE")
                yield conn
        finally:
            if synchronous is not None:
                # The pool hands this connection to others, whose writes must stay durable:
                # one that cannot be set back is discarded, not returned.
                try:
                    await conn.exec_driver_sql(f"PRAGMA synchronous = {int(synchronous)}")
                except Exception:
                    await conn.invalidate()


def _row_to_checkpoint(row: Any) -> _Checkpoint:
    return _Checkpoint(
        int(row.position),
        int(row.version),
        str(row.status),
        row.error,
        None if row.error_position is None else int(row.error_position),
        int(row.updated_at),
    )


@functools.cache
def _move_statement() -> sa.Update:
    """Move an active checkpoint from one position to another (a compare-and-set).

    Built once: constructing the statement cost more than running it, once per batch.
    """
    return (
        checkpoints.update()
        .where(
            checkpoints.c.name == sa.bindparam("k_name"),
            checkpoints.c.position == sa.bindparam("k_from"),
            checkpoints.c.version == sa.bindparam("k_version"),
            checkpoints.c.status == ACTIVE,
        )
        .values(position=sa.bindparam("k_to"), updated_at=sa.bindparam("k_at"))
    )


async def _load(conn: AsyncConnection, name: str) -> _Checkpoint | None:
    row = (await conn.execute(sa.select(checkpoints).where(checkpoints.c.name == name))).first()
    return None if row is None else _row_to_checkpoint(row)


async def _load_all(engine: AsyncEngine) -> dict[str, _Checkpoint]:
    async with engine.connect() as conn:
        rows = (await conn.execute(sa.select(checkpoints))).all()
    return {str(row.name): _row_to_checkpoint(row) for row in rows}


async def _checkpoints_exist(engine: AsyncEngine) -> bool:
    async with engine.connect() as conn:
        return bool(await conn.run_sync(lambda sync: sa.inspect(sync).has_table(checkpoints.name)))


async def _insert_row(conn: AsyncConnection, name: str, version: int) -> bool:
    """Insert a fresh checkpoint row unless one exists; True when this call inserted it."""
    insert = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
    statement = (
        insert(checkpoints)
        .values(name=name, position=0, version=version, updated_at=now_us(), status=ACTIVE)
        .on_conflict_do_nothing(index_elements=["name"])
    )
    return (await conn.execute(statement)).rowcount == 1


async def _ensure(engine: AsyncEngine, projection: Projection) -> _Checkpoint:
    """The projection's checkpoint; on first start, also its fresh tables, in one transaction."""
    async with _transaction(engine) as conn:
        if await _insert_row(conn, projection.name, projection.version):
            live = TableNames(projection.tables)
            await _drop_tables(conn, live)
            await projection.create(conn, live)
        checkpoint = await _load(conn, projection.name)
    assert checkpoint is not None
    return checkpoint


async def retry_projection(engine: AsyncEngine, name: str) -> bool:
    """Clear a failed projection's error so that its leader resumes it; False if it had none."""
    async with _transaction(engine) as conn:
        result = await conn.execute(
            checkpoints.update()
            .where(checkpoints.c.name == name, checkpoints.c.status == FAILED)
            .values(status=ACTIVE, error=None, error_position=None, updated_at=now_us())
        )
    return result.rowcount == 1


async def _mark_failed(
    engine: AsyncEngine,
    name: str,
    error: str,
    error_position: int,
    *,
    move: tuple[int, int] | None = None,
) -> None:
    """Record an error; ``move=(expected, new)`` also moves the checkpoint (compare-and-set)."""
    values: dict[str, Any] = {
        "status": FAILED,
        "error": error[:_MAX_ERROR],
        "error_position": error_position,
        "updated_at": now_us(),
    }
    where = [checkpoints.c.name == name]
    if move is not None:
        expected, values["position"] = move
        where += [checkpoints.c.position == expected, checkpoints.c.status == ACTIVE]
    async with _transaction(engine) as conn:
        result = await conn.execute(checkpoints.update().where(*where).values(**values))
    if result.rowcount != 1:
        raise _Moved(name)


# -- tables --------------------------------------------------------------------------------


def _quote(conn: AsyncConnection, name: str) -> str:
    return conn.dialect.identifier_preparer.quote(name)


async def _drop_tables(conn: AsyncConnection, tables: TableNames) -> None:
    for table in reversed(tuple(tables)):
        await conn.exec_driver_sql(f"DROP TABLE IF EXISTS {_quote(conn, tables[table])}")


async def _drop_leftovers(engine: AsyncEngine, projection: Projection) -> None:
    """Drop the aside tables of rebuilds that died before their swap."""
    patterns = [
        re.compile(re.escape(table) + re.escape(_ASIDE_PREFIX) + "[0-9a-f]{8}")
        for table in projection.tables
    ]
    async with _transaction(engine) as conn:
        names: list[str] = await conn.run_sync(lambda sync: sa.inspect(sync).get_table_names())
        leftovers = [n for n in names if any(p.fullmatch(n) for p in patterns)]
        for name in reversed(leftovers):
            await conn.exec_driver_sql(f"DROP TABLE IF EXISTS {_quote(conn, name)}")


# -- reading the log -----------------------------------------------------------------------


async def _batches(
    store: EventStore, after: int, to: int, types: frozenset[str] | None, size: int
) -> AsyncGenerator[tuple[list[RecordedEvent], int], None]:
    """Batches of events in (after, to] with the position each ends at, one read ahead.

    A batch shorter than ``size`` ends at ``to``: positions are gapless and commit in order, so
    everything up to the head that the filter left out is known to be irrelevant.
    """

    async def read(start: int) -> tuple[list[RecordedEvent], int]:
        events = [
            event
            async for event in store.read_all(
                start, limit=size, types=types, to_position=to, page_size=size
            )
        ]
        end = to if len(events) < size else events[-1].position
        return events, end

    pending: asyncio.Task[tuple[list[RecordedEvent], int]] | None = asyncio.ensure_future(
        read(after)
    )
    try:
        while pending is not None:
            events, end = await pending
            # Reading the next batch overlaps with applying this one.
            pending = asyncio.ensure_future(read(end)) if end < to else None
            yield events, end
    finally:
        if pending is not None:
            pending.cancel()
            # asyncio.wait, not `await pending`: a cancellation of our caller must propagate.
            await asyncio.wait([pending])
            if not pending.cancelled():
                pending.exception()  # retrieved, so asyncio does not log it as lost


Commit = Callable[[Sequence[RecordedEvent], int], Awaitable[None]]


async def _bisect(
    commit: Commit, events: Sequence[RecordedEvent], end: int
) -> tuple[RecordedEvent, Exception] | None:
    """Commit a batch; if it fails, commit its halves to find the first failing event."""
    try:
        await commit(events, end)
        return None
    except Exception as exc:
        if isinstance(exc, _Moved | _LostLeadership) or _is_transient(exc) or not events:
            raise
        if len(events) == 1:
            return events[0], exc
    middle = len(events) // 2
    failure = await _bisect(commit, events[:middle], events[middle - 1].position)
    if failure is not None:
        return failure
    return await _bisect(commit, events[middle:], end)


def _is_transient(exc: BaseException) -> bool:
    """Whether an error says "try again later" rather than "this event cannot be applied"."""
    if isinstance(exc, StoreUnavailableError | ConnectionError | TimeoutError):
        return True
    if isinstance(exc, sa.exc.DBAPIError):
        if exc.connection_invalidated:
            return True
        message = str(exc.orig).lower()
        if "database is locked" in message or "database is busy" in message:
            return True
        state = getattr(exc.orig, "sqlstate", None) or ""
        # connection exceptions, rollbacks (serialization, deadlock), resources, shutdowns, locks
        return state[:2] in {"08", "40", "53", "57"} or state == "55P03"
    return False


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def _event_error(event: RecordedEvent, exc: BaseException) -> str:
    return (
        f"{_describe(exc)} (event at position {event.position}, type {event.type!r}, "
        f"stream {event.stream_id!r})"
    )


# -- rebuild -------------------------------------------------------------------------------


async def rebuild(
    store: EventStore, engine: AsyncEngine, projection: Projection, *, batch_size: int = 5000
) -> int:
    """Rebuild a projection from position 0 aside, then swap it in; returns its new position.

    The old tables keep serving (and may keep being updated by a running leader) until the
    swap, which drops them, renames the aside tables and moves the checkpoint in a single
    transaction. Raises ProjectionError if the projection fails on an event; the old tables
    and checkpoint are then left as they were.
    """
    return await _rebuild(store, engine, projection, batch_size=batch_size, only_if_stale=False)


#: Events per read and per fill transaction of ``rebuild_many``: long sequential reads, few
#: commits, and still a bounded batch in memory (a few tens of MB).
REBUILD_BATCH: Final = 20_000


async def rebuild_many(
    store: EventStore,
    engine: AsyncEngine,
    projections: Sequence[Projection],
    *,
    batch_size: int = REBUILD_BATCH,
) -> dict[str, int]:
    """Rebuild several projections in one pass over the log; returns each one's new position.

    The log is read once, in large pages, and every batch goes to each projection (the events
    of its types), all in one transaction: an event's JSON is decoded once, however many
    projections read it. Each projection then swaps its aside tables in as ``rebuild`` does,
    with the same guarantees. If an event fails a projection while they fill together, the
    batch is applied again one projection at a time to find it, ``ProjectionError`` names it,
    and nothing is swapped in. The last events (less than a batch) are applied by each swap,
    as ``rebuild`` applies them: one that fails there keeps its old tables and raises, after
    the projections before it have swapped theirs in, complete.
    """
    if not projections:
        return {}
    await setup_checkpoints(engine)
    async with contextlib.AsyncExitStack() as locks:
        asides: list[tuple[Projection, TableNames]] = []
        try:
            for projection in projections:
                await locks.enter_async_context(
                    exclusive(engine, projection.name, namespace="projection-rebuild")
                )
                async with _transaction(engine) as conn:
                    await _insert_row(conn, projection.name, 0)
                log.info(
                    "projection %s: rebuilding version %d", projection.name, projection.version
                )
                await _drop_leftovers(engine, projection)
                aside = TableNames(projection.tables, _ASIDE_PREFIX + secrets.token_hex(4))
                asides.append((projection, aside))
                async with _transaction(engine) as conn:
                    await projection.create(conn, aside)
            position = await _fill_together(store, engine, asides, batch_size)
            positions: dict[str, int] = {}
            for projection, aside in asides:
                positions[projection.name] = await _finish(
                    store, engine, projection, aside, position, batch_size
                )
            return positions
        except BaseException:
            for _projection, aside in asides:
                with contextlib.suppress(Exception):
                    await asyncio.shield(_drop_aside(engine, aside))
            raise


async def _fill_together(
    store: EventStore,
    engine: AsyncEngine,
    asides: Sequence[tuple[Projection, TableNames]],
    batch_size: int,
) -> int:
    """``_fill`` for several projections from one read of the log; returns where all stand."""
    wanted: list[frozenset[str] | None] = [p.types for p, _ in asides]
    types: frozenset[str] | None = None
    if all(t is not None for t in wanted):
        types = frozenset().union(*(t for t in wanted if t is not None))

    def share(events: Sequence[RecordedEvent], only: frozenset[str] | None) -> list[RecordedEvent]:
        return list(events) if only is None else [e for e in events if e.type in only]

    async def apply_all(events: Sequence[RecordedEvent]) -> None:
        async with _transaction(engine) as conn:
            for (projection, aside), only in zip(asides, wanted, strict=True):
                mine = share(events, only)
                if mine:
                    await projection.apply(conn, mine, aside)

    position = 0
    while True:
        head = await store.head_position()
        if head - position <= batch_size:
            return position
        async with contextlib.aclosing(
            _batches(store, position, head, types, batch_size)
        ) as batches:
            async for events, end in batches:
                try:
                    await apply_all(events)
                except Exception as exc:
                    if _is_transient(exc):
                        raise
                    # Raises for the failing event; if every projection takes its share on
                    # its own, the batch is applied all the same.
                    await _find_failure(engine, asides, wanted, events, end)
                position = end


async def _find_failure(
    engine: AsyncEngine,
    asides: Sequence[tuple[Projection, TableNames]],
    wanted: Sequence[frozenset[str] | None],
    events: Sequence[RecordedEvent],
    end: int,
) -> None:
    """A batch failed in its shared transaction: apply it projection by projection, halving
    the failing one's share until its failing event is found, and raise ProjectionError.
    Returns when every projection took its share."""
    for (projection, aside), only in zip(asides, wanted, strict=True):
        mine = [e for e in events if only is None or e.type in only]
        failure = await _bisect(_aside_commit(engine, projection, aside), mine, end)
        if failure is not None:
            event, exc = failure
            raise ProjectionError(projection.name, event.position, exc) from exc


def _aside_commit(engine: AsyncEngine, projection: Projection, aside: TableNames) -> Commit:
    async def commit(events: Sequence[RecordedEvent], _end: int) -> None:
        if events:
            async with _transaction(engine) as conn:
                await projection.apply(conn, events, aside)

    return commit


async def _finish(
    store: EventStore,
    engine: AsyncEngine,
    projection: Projection,
    aside: TableNames,
    position: int,
    batch_size: int,
) -> int:
    """Fill the aside tables up to the head and swap them in; the new position."""
    at_least = 0
    while True:
        position = await _fill(store, engine, projection, aside, position, batch_size, at_least)
        swapped = await _swap(store, engine, projection, aside, position, batch_size)
        if swapped is not None:
            log.info("projection %s: rebuilt up to %d", projection.name, swapped)
            return swapped
        # An event failed inside the swap: fill past it, so the failure is pinned down.
        at_least = await store.head_position()


async def _rebuild(
    store: EventStore,
    engine: AsyncEngine,
    projection: Projection,
    *,
    batch_size: int,
    only_if_stale: bool,
) -> int:
    await setup_checkpoints(engine)
    # Two rebuilds of one projection would drop each other's aside tables.
    async with exclusive(engine, projection.name, namespace="projection-rebuild"):
        async with _transaction(engine) as conn:
            # Version 0 marks "no tables yet", so a runner starting meanwhile rebuilds too.
            await _insert_row(conn, projection.name, 0)
            checkpoint = await _load(conn, projection.name)
        assert checkpoint is not None
        if only_if_stale and checkpoint.version == projection.version:
            return checkpoint.position
        log.info("projection %s: rebuilding version %d", projection.name, projection.version)
        await _drop_leftovers(engine, projection)
        aside = TableNames(projection.tables, _ASIDE_PREFIX + secrets.token_hex(4))
        try:
            async with _transaction(engine) as conn:
                await projection.create(conn, aside)
            return await _finish(store, engine, projection, aside, 0, batch_size)
        except BaseException:
            # A cancelled or failed rebuild leaves nothing behind; the old tables never moved.
            with contextlib.suppress(Exception):
                await asyncio.shield(_drop_aside(engine, aside))
            raise


async def _drop_aside(engine: AsyncEngine, aside: TableNames) -> None:
    async with _transaction(engine) as conn:
        await _drop_tables(conn, aside)


async def _fill(
    store: EventStore,
    engine: AsyncEngine,
    projection: Projection,
    aside: TableNames,
    position: int,
    batch_size: int,
    at_least: int,
) -> int:
    """Apply events to the aside tables until the head is less than a batch ahead.

    The swap applies the rest while it holds the lock; stopping short of the head rather than
    exactly at it lets a rebuild finish under a write rate close to its own speed.
    """

    async def commit(events: Sequence[RecordedEvent], _end: int) -> None:
        if events:
            async with _transaction(engine) as conn:
                await projection.apply(conn, events, aside)

    while True:
        head = await store.head_position()
        if position >= at_least and head - position <= batch_size:
            return position
        async with contextlib.aclosing(
            _batches(store, position, head, projection.types, batch_size)
        ) as batches:
            async for events, end in batches:
                failure = await _bisect(commit, events, end)
                if failure is not None:
                    event, exc = failure
                    raise ProjectionError(projection.name, event.position, exc) from exc
                position = end


async def _swap(
    store: EventStore,
    engine: AsyncEngine,
    projection: Projection,
    aside: TableNames,
    position: int,
    batch_size: int,
) -> int | None:
    """Apply the last few events and swap the aside tables in; None if an event failed."""
    try:
        return await _swap_once(store, engine, projection, aside, position, batch_size)
    except _SwapApplyFailed:
        # _fill finds the failing event, one transaction per half, before the next swap.
        return None


class _SwapApplyFailed(Exception):
    pass


async def _swap_once(
    store: EventStore,
    engine: AsyncEngine,
    projection: Projection,
    aside: TableNames,
    position: int,
    batch_size: int,
) -> int:
    async with _transaction(engine) as conn:
        # The checkpoint row first, as a running leader's batches lock it first too: the same
        # lock order on both sides leaves no room for a deadlock on PostgreSQL.
        await conn.execute(
            checkpoints.update()
            .where(checkpoints.c.name == projection.name)
            .values(updated_at=now_us())
        )
        head = await store.head_position()
        try:
            async with contextlib.aclosing(
                _batches(store, position, head, projection.types, batch_size)
            ) as batches:
                async for events, _end in batches:
                    if events:
                        await projection.apply(conn, events, aside)
        except Exception as exc:
            if _is_transient(exc):
                raise
            raise _SwapApplyFailed from exc
        live = TableNames(projection.tables)
        await _drop_tables(conn, live)
        for table in projection.tables:
            await conn.exec_driver_sql(
                f"ALTER TABLE {_quote(conn, aside[table])} RENAME TO {_quote(conn, live[table])}"
            )
        await conn.execute(
            checkpoints.update()
            .where(checkpoints.c.name == projection.name)
            .values(
                position=head,
                version=projection.version,
                status=ACTIVE,
                error=None,
                error_position=None,
                updated_at=now_us(),
            )
        )
    return head


# -- status --------------------------------------------------------------------------------


async def projection_status(
    store: EventStore, engine: AsyncEngine, projections: Sequence[Projection] = ()
) -> list[ProjectionStatus]:
    """The status of every projection with a checkpoint, plus the given ones (without running)."""
    rows = await _load_all(engine) if await _checkpoints_exist(engine) else {}
    head_event = await store.head()
    head = head_event.position if head_event is not None else 0
    versions = {p.name: p.version for p in projections}
    names = list(versions) + sorted(set(rows) - set(versions))
    recorded: dict[int, float] = {}

    async def recorded_at(position: int) -> float | None:
        # Before the first event, the lag is measured from the first event.
        position = max(position, 1)
        if position not in recorded:
            async for event in store.read_all(position - 1, limit=1):
                recorded[position] = event.recorded_at.timestamp()
        return recorded.get(position)

    statuses: list[ProjectionStatus] = []
    for name in names:
        row = rows.get(name)
        position = row.position if row is not None else 0
        lag_seconds = 0.0
        if head_event is not None and position < head:
            start = await recorded_at(position)
            if start is not None:
                lag_seconds = max(head_event.recorded_at.timestamp() - start, 0.0)
        if row is None:
            status = NEW
        elif row.status == ACTIVE and name in versions and row.version != versions[name]:
            status = STALE
        else:
            status = row.status
        statuses.append(
            ProjectionStatus(
                name=name,
                status=status,
                position=position,
                head=head,
                lag_events=max(head - position, 0),
                lag_seconds=lag_seconds,
                version=row.version if row is not None else None,
                error=row.error if row is not None else None,
                error_position=row.error_position if row is not None else None,
                updated_at=us_to_datetime(row.updated_at) if row is not None else None,
            )
        )
    return statuses


async def wait_for_checkpoints(
    engine: AsyncEngine,
    position: int,
    timeout: float,
    names: Iterable[str] | None = None,
    *,
    poll_interval: float = 0.1,
) -> bool:
    """Wait until the projections (all with a checkpoint, or the named ones) reach a position.

    For processes that do not run the projections: it polls the checkpoint table. False on
    timeout, or as soon as one of them is failed short of the position.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    wanted = None if names is None else set(names)
    delay = min(0.01, poll_interval)
    while True:
        rows = await _load_all(engine)
        selected = rows if wanted is None else {n: rows.get(n) for n in wanted}
        behind = [c for c in selected.values() if c is None or c.position < position]
        if not behind:
            return True
        if any(c is not None and c.status == FAILED for c in behind):
            return False
        remaining = deadline - loop.time()
        if remaining <= 0:
            return False
        await asyncio.sleep(min(delay, remaining))
        delay = min(delay * 2, poll_interval)


# -- the runner ----------------------------------------------------------------------------

_STARTING: Final = "starting"
_STANDBY: Final = "standby"  # another process leads it
_RUNNING: Final = "running"
_OUTDATED: Final = "outdated"  # the tables were built by a newer version of the code
_STOPPED: Final = "stopped"


@dataclass(eq=False)
class _Worker:
    projection: Projection
    tables: TableNames
    position: int = 0
    #: In memory only: the worker knows that (position, seen] holds no event for it.
    seen: int = 0
    committed_at: float = 0.0
    leader: bool = False
    state: str = _STARTING
    task: asyncio.Task[None] | None = None
    wake: asyncio.Event = dataclasses.field(default_factory=asyncio.Event)
    watcher: CheckpointWatcher | None = None

    def set_state(self, state: str) -> None:
        if state != self.state:
            self.state = state
            if self.watcher is not None:
                self.watcher.note_state(self.projection.name, _LOCAL_STATES.get(state, LOCAL_NONE))

    def moved(self, seen: int, *, applied: bool = True) -> None:
        """Note that nothing up to ``seen`` is left for this projection, and tell the watcher
        (``applied``: whether the tables may have changed on the way)."""
        self.seen = max(self.seen, seen)
        if self.watcher is not None:
            self.watcher.note_local(
                self.projection.name, max(self.position, self.seen), changed=applied
            )


#: How the runner's states look to the watcher: who knows best where the projection stands.
_LOCAL_STATES: Final = {
    _RUNNING: LOCAL_RUNNING,
    FAILED: LOCAL_FAILED,
    _STARTING: LOCAL_STARTING,
    REBUILDING: LOCAL_STARTING,
}


class ProjectionRunner:
    """Runs projections: one task each, catching up from its checkpoint, then following live."""

    def __init__(
        self,
        store: EventStore,
        engine: AsyncEngine,
        projections: Iterable[Projection],
        batch_size: int = 500,
        *,
        rebuild_batch_size: int = 5000,
        election: LeaderElection | None = None,
        lock_retry_interval: float = 1.0,
        failed_poll_interval: float = 1.0,
        error_backoff: tuple[float, float] = (0.5, 10.0),
        watcher: CheckpointWatcher | None = None,
    ) -> None:
        self.store = store
        self.engine = engine
        self.batch_size = batch_size
        self.rebuild_batch_size = rebuild_batch_size
        self.election = election if election is not None else leader_election_for(engine)
        self.lock_retry_interval = lock_retry_interval
        self.failed_poll_interval = failed_poll_interval
        self.error_backoff = error_backoff
        self._workers: dict[str, _Worker] = {}
        for projection in projections:
            if projection.name in self._workers:
                raise ValueError(f"two projections are named {projection.name!r}")
            self._workers[projection.name] = _Worker(projection, TableNames(projection.tables))
        #: Where every projection stands, whoever runs it; started and stopped with the runner
        #: unless it was given (then its owner does that).
        self._owns_watcher = watcher is None
        self.watcher = (
            watcher if watcher is not None else CheckpointWatcher(store, engine, self.projections)
        )
        for worker in self._workers.values():
            worker.watcher = self.watcher
        self._started = False

    @property
    def projections(self) -> list[Projection]:
        return [w.projection for w in self._workers.values()]

    def is_leader(self, name: str) -> bool:
        """Whether this process currently runs the projection."""
        return self._worker(name).leader

    def _worker(self, name: str) -> _Worker:
        try:
            return self._workers[name]
        except KeyError:
            raise KeyError(f"no projection named {name!r} in this runner") from None

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        """Create the checkpoint table and start one task per projection."""
        if self._started:
            return
        await setup_checkpoints(self.engine)
        if self._owns_watcher:
            await self.watcher.start()
        self._started = True
        loop = asyncio.get_running_loop()
        for name, worker in self._workers.items():
            # Until the election says otherwise: a failure on record is about to be retried.
            worker.state = _STARTING
            self.watcher.note_state(name, LOCAL_STARTING)
            worker.task = loop.create_task(self._work(worker), name=f"projection-{name}")

    async def stop(self) -> None:
        """Cancel every projection task and give up leadership; safe to call twice."""
        workers = [w for w in self._workers.values() if w.task is not None]
        pending = {w.task for w in workers if w.task is not None}
        while pending:
            # Cancelled again until done: asyncio.wait_for on Python 3.11 (which the event
            # store's waits use) can swallow a cancellation that coincides with a wake-up.
            for task in pending:
                task.cancel()
            _done, pending = await asyncio.wait(pending, timeout=1.0)
        for worker in workers:
            assert worker.task is not None
            result = None if worker.task.cancelled() else worker.task.exception()
            if result is not None:
                log.error(
                    "projection %s: task ended with %s",
                    worker.projection.name,
                    _describe(result),
                    exc_info=result,
                )
            worker.task = None
            worker.leader = False
            worker.set_state(_STOPPED)
        await self.election.close()
        if self._owns_watcher:
            await self.watcher.stop()
        self._started = False

    async def __aenter__(self) -> ProjectionRunner:
        await self.start()
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.stop()

    # -- commands --------------------------------------------------------------------------

    async def retry(self, name: str) -> bool:
        """Resume a failed projection from the event it failed on; False if it had not failed."""
        worker = self._worker(name)
        cleared = await retry_projection(self.engine, name)
        if cleared and worker.state == FAILED:
            worker.set_state(_STARTING)  # so that wait_for, meanwhile, does not give up at once
        worker.wake.set()
        return cleared

    async def rebuild(self, name: str) -> int:
        """Rebuild a projection aside and swap it in (see ``rebuild``); returns its position."""
        worker = self._worker(name)
        position = await rebuild(
            self.store, self.engine, worker.projection, batch_size=self.rebuild_batch_size
        )
        worker.wake.set()
        return position

    async def status(self) -> list[ProjectionStatus]:
        """The status of this runner's projections, and whether this process runs each."""
        statuses = await projection_status(self.store, self.engine, self.projections)
        result: list[ProjectionStatus] = []
        for status in statuses:
            worker = self._workers.get(status.name)
            if worker is None:
                result.append(status)
                continue
            result.append(
                dataclasses.replace(
                    status,
                    running=worker.leader,
                    status=REBUILDING if worker.state == REBUILDING else status.status,
                )
            )
        return result

    async def wait_for(
        self, position: int, timeout: float, names: Iterable[str] | None = None
    ) -> bool:
        """Wait until the projections (or the named ones) have processed up to ``position``.

        False on timeout, or as soon as one of them is failed short of the position (a failure
        this process is about to retry does not count). See :class:`CheckpointWatcher`.
        """
        chosen = list(names) if names is not None else list(self._workers)
        for name in chosen:
            self._worker(name)
        return (await self.watcher.wait(position, chosen, timeout)).ok

    # -- the per-projection task -----------------------------------------------------------

    async def _work(self, worker: _Worker) -> None:
        name = worker.projection.name
        loop = asyncio.get_running_loop()
        low, high = self.error_backoff
        backoff = low
        while True:
            if not await self.election.acquire(name):
                worker.set_state(_STANDBY)
                await asyncio.sleep(self.lock_retry_interval)
                continue
            log.info("projection %s: leading", name)
            worker.leader = True
            started = loop.time()
            error: Exception | None = None
            try:
                await self._lead(worker)
            except Exception as exc:  # CancelledError passes: stop() closes the election
                error = exc
            finally:
                worker.leader = False
                worker.set_state(_STANDBY)
            # Someone healthier may take over while we pause.
            await self.election.release(name)
            if error is None:
                log.info("projection %s: no longer leading", name)
                continue
            if loop.time() - started > high:
                backoff = low
            log.warning(
                "projection %s: %s; retrying in %.1f s",
                name,
                _describe(error),
                backoff,
                exc_info=error,
            )
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, high)

    async def _lead(self, worker: _Worker) -> None:
        """Run the projection while this process leads it; returns when leadership is lost."""
        projection = worker.projection
        name = projection.name
        checkpoint = await _ensure(self.engine, projection)
        if checkpoint.status == FAILED:
            # A restart is how a fix gets deployed: try the failing event again.
            await retry_projection(self.engine, name)
            checkpoint = await self._reload(name)
        while self.election.holds(name):
            worker.position = checkpoint.position
            worker.seen = checkpoint.position
            worker.moved(checkpoint.position)  # committed, whoever moved it
            if checkpoint.status == FAILED:
                worker.set_state(FAILED)  # read-your-writes waiters give up now
                checkpoint = await self._wait_for_retry(worker)
                continue
            if checkpoint.version > projection.version:
                if worker.state != _OUTDATED:
                    log.warning(
                        "projection %s: tables are at version %d, this code is version %d; "
                        "waiting for a newer process to take over",
                        name,
                        checkpoint.version,
                        projection.version,
                    )
                worker.set_state(_OUTDATED)
                checkpoint = await self._wait_for_retry(worker)
                continue
            if checkpoint.version != projection.version:
                checkpoint = await self._auto_rebuild(worker)
                continue
            worker.set_state(_RUNNING)
            try:
                await self._follow(worker)
            except _Moved:
                pass
            except _LostLeadership:
                return
            checkpoint = await self._reload(name)

    async def _reload(self, name: str) -> _Checkpoint:
        async with self.engine.connect() as conn:
            checkpoint = await _load(conn, name)
        if checkpoint is None:
            raise _Moved(f"the checkpoint row of {name!r} disappeared")
        return checkpoint

    async def _wait_for_retry(self, worker: _Worker) -> _Checkpoint:
        # Polled as well as woken: a retry may come from another process (the CLI).
        worker.wake.clear()
        await _wait_event(worker.wake, self.failed_poll_interval)
        return await self._reload(worker.projection.name)

    async def _auto_rebuild(self, worker: _Worker) -> _Checkpoint:
        projection = worker.projection
        worker.set_state(REBUILDING)
        try:
            await _rebuild(
                self.store,
                self.engine,
                projection,
                batch_size=self.rebuild_batch_size,
                only_if_stale=True,
            )
        except ProjectionError as exc:
            log.error("projection %s: rebuild failed: %s", projection.name, exc)
            await _mark_failed(
                self.engine,
                projection.name,
                f"rebuild to version {projection.version} failed: {_describe(exc.cause)}",
                exc.position,
            )
        return await self._reload(projection.name)

    async def _follow(self, worker: _Worker) -> None:
        """Catch up, then follow the log; raises _Moved or _LostLeadership to stop."""
        name = worker.projection.name
        store = self.store
        loop = asyncio.get_running_loop()
        wait = min(store.poll_interval, self.lock_retry_interval)
        while True:
            if not self.election.holds(name):
                raise _LostLeadership(name)
            generation = store.generation
            head = await store.head_position()
            if head > max(worker.position, worker.seen):
                await self._advance(worker, head)
            elif worker.seen > worker.position:
                # Write the checkpoint an idle projection skipped, once its interval is up.
                due = worker.committed_at + IDLE_CHECKPOINT_INTERVAL - loop.time()
                if due <= 0:
                    await self._commit(worker, [], worker.seen)
                else:
                    await store.wait_for_change(generation, min(wait, due))
            else:
                await store.wait_for_change(generation, wait)

    async def _advance(self, worker: _Worker, head: int) -> None:
        projection = worker.projection

        async def commit(events: Sequence[RecordedEvent], end: int) -> None:
            await self._commit(worker, events, end)

        loop = asyncio.get_running_loop()
        start = max(worker.position, worker.seen)
        async with contextlib.aclosing(
            _batches(self.store, start, head, projection.types, self.batch_size)
        ) as batches:
            async for events, end in batches:
                if not self.election.holds(projection.name):
                    raise _LostLeadership(projection.name)
                if not events and loop.time() - worker.committed_at < IDLE_CHECKPOINT_INTERVAL:
                    # Nothing for this projection: note it in memory, and write the checkpoint
                    # at most once a second, so that idle projections do not take the database
                    # write lock (on SQLite, the only one) for every event somebody appends.
                    worker.moved(end, applied=False)
                    continue
                failure = await _bisect(commit, events, end)
                if failure is not None:
                    event, exc = failure
                    log.error(
                        "projection %s: stopped at position %d: %s",
                        projection.name,
                        event.position,
                        _describe(exc),
                        exc_info=exc,
                    )
                    await _mark_failed(
                        self.engine,
                        projection.name,
                        _event_error(event, exc),
                        event.position,
                        move=(worker.position, event.position - 1),
                    )
                    raise _Moved(projection.name)

    async def _commit(self, worker: _Worker, events: Sequence[RecordedEvent], end: int) -> None:
        """Apply events and move the checkpoint to ``end`` in one transaction."""
        projection = worker.projection
        async with _transaction(self.engine) as conn:
            moved = await conn.execute(
                _move_statement(),
                {
                    "k_name": projection.name,
                    "k_from": worker.position,
                    "k_version": projection.version,
                    "k_to": end,
                    "k_at": now_us(),
                },
            )
            if moved.rowcount != 1:
                raise _Moved(projection.name)
            if events:
                await projection.apply(conn, events, worker.tables)
        worker.position = end
        worker.committed_at = asyncio.get_running_loop().time()
        worker.moved(end, applied=bool(events))
