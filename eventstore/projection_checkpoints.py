"""The projections' checkpoint table: one row per projection (position, version, status, error),
its transactions and compare-and-set moves, the tables it owns, and the status report read from it.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import re
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from eventstore.projection import ASIDE_PREFIX, Projection, TableNames
from eventstore.records import us_to_datetime
from eventstore.sqlite_lock import sqlite_write_lock
from eventstore.store import EventStore, now_us

#: Checkpoint statuses stored in the table.
ACTIVE: Final = "active"
FAILED: Final = "failed"
#: Statuses that only ``ProjectionStatus`` reports.
NEW: Final = "new"  # no checkpoint yet
STALE: Final = "stale"  # built by another version of the projection; a rebuild is pending
REBUILDING: Final = "rebuilding"  # this runner is rebuilding it


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


@dataclass(frozen=True, slots=True)
class CheckpointRow:
    position: int
    version: int
    status: str
    error: str | None
    error_position: int | None
    updated_at: int


class CheckpointMoved(Exception):
    """The checkpoint row changed under us (a rebuild, a retry, another leader): reload it."""


class LostLeadership(Exception):
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
    async with write_transaction(engine) as conn:
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
async def write_transaction(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
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


def _row_to_checkpoint(row: Any) -> CheckpointRow:
    return CheckpointRow(
        int(row.position),
        int(row.version),
        str(row.status),
        row.error,
        None if row.error_position is None else int(row.error_position),
        int(row.updated_at),
    )


@functools.cache
def move_statement() -> sa.Update:
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


async def load_checkpoint(conn: AsyncConnection, name: str) -> CheckpointRow | None:
    row = (await conn.execute(sa.select(checkpoints).where(checkpoints.c.name == name))).first()
    return None if row is None else _row_to_checkpoint(row)


async def _load_all(engine: AsyncEngine) -> dict[str, CheckpointRow]:
    async with engine.connect() as conn:
        rows = (await conn.execute(sa.select(checkpoints))).all()
    return {str(row.name): _row_to_checkpoint(row) for row in rows}


async def _checkpoints_exist(engine: AsyncEngine) -> bool:
    async with engine.connect() as conn:
        return bool(await conn.run_sync(lambda sync: sa.inspect(sync).has_table(checkpoints.name)))


async def insert_checkpoint(conn: AsyncConnection, name: str, version: int) -> bool:
    """Insert a fresh checkpoint row unless one exists; True when this call inserted it."""
    insert = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
    statement = (
        insert(checkpoints)
        .values(name=name, position=0, version=version, updated_at=now_us(), status=ACTIVE)
        .on_conflict_do_nothing(index_elements=["name"])
    )
    return (await conn.execute(statement)).rowcount == 1


async def ensure_checkpoint(engine: AsyncEngine, projection: Projection) -> CheckpointRow:
    """The projection's checkpoint; on first start, also its fresh tables, in one transaction."""
    async with write_transaction(engine) as conn:
        if await insert_checkpoint(conn, projection.name, projection.version):
            live = TableNames(projection.tables)
            await drop_tables(conn, live)
            await projection.create(conn, live)
        checkpoint = await load_checkpoint(conn, projection.name)
    assert checkpoint is not None
    return checkpoint


async def retry_projection(engine: AsyncEngine, name: str) -> bool:
    """Clear a failed projection's error so that its leader resumes it; False if it had none."""
    async with write_transaction(engine) as conn:
        result = await conn.execute(
            checkpoints.update()
            .where(checkpoints.c.name == name, checkpoints.c.status == FAILED)
            .values(status=ACTIVE, error=None, error_position=None, updated_at=now_us())
        )
    return result.rowcount == 1


async def mark_failed(
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
    async with write_transaction(engine) as conn:
        result = await conn.execute(checkpoints.update().where(*where).values(**values))
    if result.rowcount != 1:
        raise CheckpointMoved(name)


# -- tables --------------------------------------------------------------------------------


def quote_identifier(conn: AsyncConnection, name: str) -> str:
    return conn.dialect.identifier_preparer.quote(name)


async def drop_tables(conn: AsyncConnection, tables: TableNames) -> None:
    for table in reversed(tuple(tables)):
        await conn.exec_driver_sql(f"DROP TABLE IF EXISTS {quote_identifier(conn, tables[table])}")


async def drop_leftovers(engine: AsyncEngine, projection: Projection) -> None:
    """Drop the aside tables of rebuilds that died before their swap."""
    patterns = [
        re.compile(re.escape(table) + re.escape(ASIDE_PREFIX) + "[0-9a-f]{8}")
        for table in projection.tables
    ]
    async with write_transaction(engine) as conn:
        names: list[str] = await conn.run_sync(lambda sync: sa.inspect(sync).get_table_names())
        leftovers = [n for n in names if any(p.fullmatch(n) for p in patterns)]
        for name in reversed(leftovers):
            await conn.exec_driver_sql(f"DROP TABLE IF EXISTS {quote_identifier(conn, name)}")


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
