"""The PostgreSQL backend: asyncpg under SQLAlchemy's pool, appends serialized by an advisory lock.

A sequence hands out positions before commit, so a tailing reader could pass a slow
transaction and never see it. Here positions are not taken from a sequence: every append
transaction first takes one advisory transaction lock, and numbers its events after a head
that was committed before it took the lock; the lock is released after the commit is
visible. So positions become visible in order and without gaps (a rolled-back transaction
leaves no gap either, since nothing was numbered for good). Group commit wins back the
throughput that the lock costs.

Which head? The careful path reads it under the lock. The fast path, one statement in an
implicit transaction (one round trip), numbers after the head this writer last saw committed,
and lets the table say whether that is still the head: rows are never changed or deleted, so
the log can only have grown since, and then its next position (the primary key) is taken and
the statement fails whole. The primary key's check sees rows committed after the statement's
snapshot, and the advisory lock (taken before the insert, held to the commit) means nobody else
has such a row in flight. The same goes for a stream's next version (a unique index) and for
an event id already stored. A failed fast path writes nothing and hands the batch to the careful
path, which decides it from what it reads under the lock.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from collections.abc import AsyncIterator, Callable, Collection, Iterable, Sequence
from typing import Any

import asyncpg
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from eventstore import sql
from eventstore.chain import GENESIS_HASH
from eventstore.errors import InvalidAppendError, SchemaVersionError, StoreUnavailableError
from eventstore.merkle import TreeBuilder
from eventstore.planning import NeedsLookup, Outcome, PendingAppend, Planned, Row, plan_batch
from eventstore.reader import reader_for
from eventstore.records import (
    Checkpoint,
    RecordedEvent,
)
from eventstore.store import DirectWrite, EventStore, now_us
from eventstore.tree import frontier_of, frontier_positions, row_leaf
from eventstore.urls import create_engine

log = logging.getLogger(__name__)

#: What :meth:`PostgresEventStore.listen` calls for a channel: on a payload, on (re)connecting,
#: on losing the connection.
_ChannelCallbacks = tuple[Callable[[str], None], Callable[[], None], Callable[[], None] | None]

_SELECT = f"SELECT {sql.COLUMNS} FROM events"

_BEGIN_APPEND = """
CREATE OR REPLACE FUNCTION eventstore_begin_append(lock_key bigint, stream_ids text[])
RETURNS TABLE(head_position bigint, head_hash bytea, versions bigint[])
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(lock_key);
    -- A volatile function's next statement takes a new snapshot, so it sees the commit of
    -- whoever held the lock before us.
    RETURN QUERY
    SELECT h.position, h.hash,
           ARRAY(SELECT COALESCE((SELECT max(e.version) FROM events e WHERE e.stream_id = s.id), 0)
                 FROM unnest(stream_ids) WITH ORDINALITY AS s(id, n) ORDER BY s.n)
    FROM (SELECT 1) AS one
    LEFT JOIN LATERAL (SELECT e.position, e.hash FROM events e ORDER BY e.position DESC LIMIT 1)
        AS h ON true;
END $$
"""

_UNNEST = """unnest($1::bigint[], $2::text[], $3::bigint[], $4::uuid[], $5::text[], $6::int[],
               $7::text[], $8::text[], $9::bigint[], $10::bytea[]{tree})"""
_ONE = """$1::bigint, $2::text, $3::bigint, $4::uuid, $5::text, $6::int, $7::text, $8::text,
           $9::bigint, $10::bytea{tree}"""


class _Statements:
    """The append statements, with or without the Merkle nodes (one more bound value, $11)."""

    def __init__(self, tree: bool) -> None:
        columns = sql.TREE_COLUMNS if tree else sql.COLUMNS
        unnest = _UNNEST.format(tree=", $11::bytea[]" if tree else "")
        one = _ONE.format(tree=", $11::bytea" if tree else "")
        n = 11 if tree else 10  # values bound before the lock key and the channel
        self.insert = f"INSERT INTO events ({columns}) SELECT * FROM {unnest}"
        self.insert_and_notify = f"""
WITH inserted AS ({self.insert} RETURNING 1)
SELECT pg_notify(${n + 1}, ${n + 2})
"""
        # The fast path (see the module's docstring): lock, insert, notify, in one statement
        # and one implicit transaction. The CTE that takes the lock is volatile, so it is
        # evaluated once and before the first row is inserted.
        fast_one = f"""
WITH locked AS (SELECT pg_advisory_xact_lock(${n + 1})),
inserted AS (
    INSERT INTO events ({columns})
    SELECT {one}
    FROM locked
    RETURNING position)
"""
        fast_many = f"""
WITH locked AS (SELECT pg_advisory_xact_lock(${n + 1})),
inserted AS (
    INSERT INTO events ({columns})
    SELECT u.* FROM locked, {unnest} AS u
    RETURNING position)
"""
        self.fast_one_notify = f"{fast_one}SELECT pg_notify(${n + 2}, $1::text) FROM inserted"
        self.fast_one_quiet = f"{fast_one}SELECT count(*) FROM inserted"
        self.fast_many_notify = (
            f"{fast_many}SELECT pg_notify(${n + 2}, max(position)::text) FROM inserted"
        )
        self.fast_many_quiet = f"{fast_many}SELECT count(*) FROM inserted"


_WITH_TREE = _Statements(tree=True)
_WITHOUT_TREE = _Statements(tree=False)
# An event's Merkle nodes: written with it, or (events older than the tree) beside it.
_NODES = (
    "SELECT e.position, COALESCE(e.tree, m.nodes) FROM events e "
    "LEFT JOIN merkle_nodes m ON m.position = e.position"
)


def _columns(planned: Planned) -> list[list[Any]]:
    """The batch's values column by column (for unnest), the node blobs last if kept."""
    columns = [list(c) for c in zip(*planned.rows, strict=True)]
    if planned.nodes is not None:
        columns.append(planned.nodes)
    return columns


def _lock_key(schema: str) -> int:
    digest = hashlib.blake2b(f"eventstore:{schema}.events".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def _lock_timeout(exc: BaseException, timeout_ms: int) -> StoreUnavailableError | None:
    """A clear, retryable error for a writer that gave up waiting on the append lock."""
    if isinstance(exc, asyncpg.exceptions.LockNotAvailableError):
        return StoreUnavailableError(f"timed out after {timeout_ms} ms waiting for the append lock")
    return None


def _unavailable(exc: BaseException) -> StoreUnavailableError:
    return StoreUnavailableError(f"PostgreSQL is unavailable: {type(exc).__name__}: {exc}")


_CONNECTION_ERRORS = (
    OSError,
    asyncpg.exceptions.ConnectionDoesNotExistError,
    asyncpg.exceptions.InterfaceError,
    asyncpg.exceptions.InternalClientError,
    asyncpg.exceptions.PostgresConnectionError,
    asyncpg.exceptions.CannotConnectNowError,
    asyncpg.exceptions.AdminShutdownError,
    sa.exc.DBAPIError,
    sa.exc.InterfaceError,
)


class PostgresEventStore(EventStore):
    """Event store in PostgreSQL; LISTEN/NOTIFY wakes subscribers in other processes."""

    def __init__(
        self,
        url: str,
        *,
        schema: str = "public",
        poll_interval: float = 1.0,
        max_batch_events: int = 10_000,
        notify: bool = True,
        pool_size: int = 10,
        lock_timeout: float = 10.0,
        merkle: bool = True,
    ) -> None:
        super().__init__(
            poll_interval=poll_interval, max_batch_events=max_batch_events, merkle=merkle
        )
        self._statements = _WITH_TREE if merkle else _WITHOUT_TREE
        self.schema = schema
        self.engine: AsyncEngine = create_engine(
            url,
            schema=schema,
            pool_size=pool_size,
            max_overflow=pool_size,
            pool_pre_ping=False,
        )
        self._lock_key = _lock_key(schema)
        self._channel = f"eventstore_{hashlib.blake2b(schema.encode(), digest_size=6).hexdigest()}"
        self._notify = notify
        self._lock_timeout_ms = int(lock_timeout * 1000)
        self._listener_task: asyncio.Task[None] | None = None
        self._listener_conn: Any = None
        #: Other channels followed on the LISTEN connection: (on_payload, on_connect) each.
        self._channels: dict[str, list[_ChannelCallbacks]] = {}
        self._writer_conn: tuple[AsyncConnection, Any] | None = None
        # What this writer last saw committed; the fast path numbers after it (module docstring).
        self._known_head: tuple[int, bytes] | None = None
        self._known_frontier: list[bytes] | None = None  # the Merkle tree's, at _known_head
        self._known_versions: dict[str, int] = {}
        self._closed = False
        self._discarding: set[asyncio.Task[None]] = set()

    # -- lifecycle -------------------------------------------------------------------------

    async def setup(self) -> None:
        async with self.engine.begin() as conn:
            # Concurrent first starts must not race each other's CREATE statements.
            await conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": self._lock_key})
            await conn.run_sync(sql.metadata.create_all)
            version = (
                await conn.execute(
                    sa.text("SELECT version FROM eventstore_schema WHERE component = 'events'")
                )
            ).scalar()
            if version is None:
                await conn.execute(
                    sa.text(
                        "INSERT INTO eventstore_schema (component, version) VALUES ('events', :v)"
                    ),
                    {"v": sql.SCHEMA_VERSION},
                )
            elif version > sql.SCHEMA_VERSION:
                raise SchemaVersionError(
                    f"schema {self.schema!r} holds event store schema {version}; this code "
                    f"knows up to {sql.SCHEMA_VERSION}"
                )
            elif version < sql.SCHEMA_VERSION:
                await conn.execute(
                    sa.text("UPDATE eventstore_schema SET version = :v WHERE component = 'events'"),
                    {"v": sql.SCHEMA_VERSION},
                )
            # A schema-1 database: the column is added (no rewrite), never written into old rows.
            await self._exec_ddl(conn, "ALTER TABLE events ADD COLUMN IF NOT EXISTS tree bytea")
            await self._exec_ddl(conn, _BEGIN_APPEND)
            for guard in sql.POSTGRES_GUARDS:
                await self._exec_ddl(conn, guard)
            if self.merkle:
                raw = (await conn.get_raw_connection()).driver_connection
                await self._complete_tree(raw)

    async def _complete_tree(self, conn: Any) -> None:
        """Build the Merkle nodes of events that have none (an upgrade, or a store that kept
        no tree), into merkle_nodes: events are never updated."""
        head = await conn.fetchval("SELECT max(position) FROM events") or 0
        if head == 0 or await self._nodes(conn, [head]):
            return
        first = await conn.fetchval(
            "SELECT min(e.position) FROM events e LEFT JOIN merkle_nodes m "
            "ON m.position = e.position WHERE e.tree IS NULL AND m.position IS NULL"
        )
        size = first - 1
        frontier = frontier_of(size, await self._nodes(conn, frontier_positions(size)))
        builder = TreeBuilder(size, frontier)
        position = size
        while True:
            page = await conn.fetch(
                f"SELECT {sql.COLUMNS}, tree IS NULL FROM events WHERE position > $1 "
                "ORDER BY position LIMIT 5000",
                position,
            )
            if not page:
                break
            positions: list[int] = []
            blobs: list[bytes] = []
            for r in page:
                row = Row(r[0], r[1], r[2], str(r[3]), r[4], r[5], r[6], r[7], r[8], bytes(r[9]))
                if row.position != builder.size + 1:
                    raise StoreUnavailableError(f"the log has a gap before position {row.position}")
                blob = builder.add(row_leaf(row))
                if r[10]:
                    positions.append(row.position)
                    blobs.append(blob)
            await conn.execute(
                "INSERT INTO merkle_nodes (position, nodes) "
                "SELECT * FROM unnest($1::bigint[], $2::bytea[]) "
                "ON CONFLICT (position) DO UPDATE SET nodes = excluded.nodes",
                positions,
                blobs,
            )
            position = page[-1][0]
        log.info("built the Merkle tree of schema %s up to position %d", self.schema, head)

    @staticmethod
    async def _nodes(conn: Any, positions: Sequence[int]) -> dict[int, bytes]:
        rows = await conn.fetch(f"{_NODES} WHERE e.position = ANY($1::bigint[])", list(positions))
        return {r[0]: bytes(r[1]) for r in rows if r[1] is not None}

    @staticmethod
    async def _exec_ddl(conn: AsyncConnection, statement: str) -> None:
        await conn.exec_driver_sql(statement)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        await super().close()
        if self._writer_conn is not None:
            with contextlib.suppress(Exception):
                await self._writer_conn[0].close()
            self._writer_conn = None
        if self._discarding:
            await asyncio.gather(*self._discarding, return_exceptions=True)
        if self._listener_task is not None:
            self._listener_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._listener_task
        await self.engine.dispose()

    # -- writing ---------------------------------------------------------------------------

    async def _writer_raw(self) -> Any:
        """The writer's own connection, kept across batches: a pool checkout costs a round trip."""
        if self._writer_conn is None:
            try:
                sa_conn = await self.engine.connect()
                raw: Any = (await sa_conn.get_raw_connection()).driver_connection
                # A writer waiting on the append lock gives up with a clear error.
                await raw.execute(f"SET lock_timeout = {self._lock_timeout_ms}")
            except _CONNECTION_ERRORS as exc:
                raise _unavailable(exc) from exc
            self._writer_conn = (sa_conn, raw)
        return self._writer_conn[1]

    async def _drop_writer(self, exc: BaseException) -> StoreUnavailableError:
        """Discard the writer's broken connection (and the pool, which shares its fate)."""
        if self._writer_conn is not None:
            sa_conn, _raw = self._writer_conn
            self._writer_conn = None
            with contextlib.suppress(Exception):
                await sa_conn.invalidate()
            with contextlib.suppress(Exception):
                await sa_conn.close()
        await self.engine.dispose(close=False)
        return _unavailable(exc)

    @contextlib.asynccontextmanager
    async def _writer(self) -> AsyncIterator[Any]:
        """The writer's connection for a block; connection errors become StoreUnavailableError."""
        raw = await self._writer_raw()
        try:
            yield raw
        except _CONNECTION_ERRORS as exc:
            raise await self._drop_writer(exc) from exc

    async def _write_batch(self, batch: list[PendingAppend]) -> list[Outcome]:
        async with self._writer() as conn:
            try:
                try:
                    fast = await self._append_fast(conn, batch)
                    if fast is not None:
                        return fast
                    return await self._write_once(conn, batch, careful=False)
                except asyncpg.exceptions.UniqueViolationError:
                    self._forget()
                    return await self._write_once(conn, batch, careful=True)
            except BaseException as exc:
                # What the writer believed may not have been committed: believe nothing.
                self._forget()
                timed_out = _lock_timeout(exc, self._lock_timeout_ms)
                if timed_out is None:
                    raise
                raise timed_out from exc

    def _direct_write(self) -> DirectWrite:
        return self._write_direct

    async def _write_direct(self, request: PendingAppend) -> Outcome | None:
        """A lone append's fast path, from its caller's task; None sends it to the queue."""
        if self._writer_conn is None or self._known_head is None:
            return None
        conn = self._writer_conn[1]
        try:
            outcomes = await self._append_fast(conn, [request])
        except asyncio.CancelledError:
            # The statement may still commit on the server, or not: believe nothing, and end
            # the session so that no later batch shares the socket with its unread reply.
            self._forget()
            self._abandon_writer()
            raise
        except _CONNECTION_ERRORS as exc:
            self._forget()
            raise await self._drop_writer(exc) from exc
        except BaseException as exc:
            self._forget()
            timed_out = _lock_timeout(exc, self._lock_timeout_ms)
            if timed_out is None:
                raise
            raise timed_out from exc
        return None if outcomes is None else outcomes[0]

    def _abandon_writer(self) -> None:
        if self._writer_conn is None:
            return
        sa_conn, raw = self._writer_conn
        self._writer_conn = None
        with contextlib.suppress(Exception):
            raw.terminate()

        async def discard() -> None:
            with contextlib.suppress(Exception):
                await sa_conn.invalidate()

        task = asyncio.get_running_loop().create_task(discard())
        self._discarding.add(task)
        task.add_done_callback(self._discarding.discard)

    async def _append_fast(self, conn: Any, batch: list[PendingAppend]) -> list[Outcome] | None:
        """Append in one statement after the head last seen; None when the careful path must."""
        if self._known_head is None:
            return None
        head_position, head_hash = self._known_head
        frontier = self._known_frontier
        if self.merkle and frontier is None:
            return None
        known = self._known_versions
        versions = {r.stream_id: known.get(r.stream_id, 0) for r in batch}
        try:
            planned = plan_batch(
                batch, head_position, head_hash, versions, now_us(), None, frontier
            )
        except NeedsLookup:
            return None
        rows = planned.rows
        if not rows:
            return None
        channel = self._channel if self._notify else None
        statements = self._statements
        try:
            if len(rows) == 1:
                statement = statements.fast_one_notify if channel else statements.fast_one_quiet
                values = rows[0] if planned.nodes is None else (*rows[0], planned.nodes[0])
                await conn.fetchval(
                    statement, *values, self._lock_key, *([channel] if channel else [])
                )
            else:
                statement = statements.fast_many_notify if channel else statements.fast_many_quiet
                await conn.fetchval(
                    statement, *_columns(planned), self._lock_key, *([channel] if channel else [])
                )
        except asyncpg.exceptions.UniqueViolationError:
            # The log grew meanwhile, or an id is reused: nothing was written.
            self._forget()
            return None
        self._remember(planned)
        return planned.outcomes

    def _forget(self) -> None:
        self._known_head = None
        self._known_frontier = None
        self._known_versions.clear()

    def _remember(self, planned: Planned) -> None:
        rows = planned.rows
        if len(self._known_versions) > 100_000:
            self._known_versions.clear()
        for row in rows:
            self._known_versions[row.stream_id] = row.version
        self._known_head = (rows[-1].position, rows[-1].hash)
        self._known_frontier = planned.frontier

    async def _write_once(
        self, conn: Any, batch: list[PendingAppend], careful: bool
    ) -> list[Outcome]:
        async with conn.transaction():
            return await self._plan_and_insert(conn, batch, careful)

    async def _plan_and_insert(
        self, conn: Any, batch: list[PendingAppend], careful: bool
    ) -> list[Outcome]:
        streams = list(dict.fromkeys(r.stream_id for r in batch))
        head = await conn.fetchrow(
            "SELECT * FROM eventstore_begin_append($1, $2::text[])", self._lock_key, streams
        )
        head_position = head["head_position"] or 0
        head_hash = bytes(head["head_hash"]) if head["head_hash"] is not None else GENESIS_HASH
        versions = dict(zip(streams, head["versions"], strict=True))
        frontier = None
        if self.merkle:
            positions = frontier_positions(head_position)
            frontier = frontier_of(head_position, await self._nodes(conn, positions))
        self._known_head = (head_position, head_hash)
        self._known_frontier = frontier
        self._known_versions.update(versions)
        stamp = now_us()
        existing = await self._lookup(conn, batch) if careful else None
        try:
            planned = plan_batch(
                batch, head_position, head_hash, versions, stamp, existing, frontier
            )
        except NeedsLookup:
            existing = await self._lookup(conn, batch)
            planned = plan_batch(
                batch, head_position, head_hash, versions, stamp, existing, frontier
            )
        rows = planned.rows
        if rows:
            columns = _columns(planned)
            if self._notify:
                await conn.fetchval(
                    self._statements.insert_and_notify,
                    *columns,
                    self._channel,
                    str(rows[-1].position),
                )
            else:
                await conn.execute(self._statements.insert, *columns)
            self._remember(planned)
        return planned.outcomes

    @staticmethod
    async def _lookup(conn: Any, batch: list[PendingAppend]) -> dict[str, Row]:
        ids = [e.event_id for r in batch for e in r.events]
        found: dict[str, Row] = {}
        for row in await conn.fetch(f"{_SELECT} WHERE event_id = ANY($1::uuid[])", ids):
            values = list(row)
            values[3] = str(values[3])
            found[values[3]] = Row._make([*values[:9], bytes(values[9])])
        return found

    # -- reading ---------------------------------------------------------------------------

    async def _fetch(self, statement: str, *params: Any) -> list[Any]:
        # Reads are single statements outside any transaction: they run on the engine's reader
        # (asyncpg connections of its own), since a checkout from SQLAlchemy's pool cost as
        # much as the query itself (loading a stream of 10 events: 241 -> 150 us).
        return await reader_for(self.engine).fetch(statement, params)

    async def stream_version(self, stream_id: str) -> int:
        rows = await self._fetch("SELECT max(version) FROM events WHERE stream_id = $1", stream_id)
        return int(rows[0][0] or 0)

    async def head_position(self) -> int:
        rows = await self._fetch("SELECT max(position) FROM events")
        return int(rows[0][0] or 0)

    async def head(self) -> RecordedEvent | None:
        rows = await self._fetch(f"{_SELECT} ORDER BY position DESC LIMIT 1")
        return sql.record_from_row(rows[0]) if rows else None

    async def restore(self, rows: Callable[[], Iterable[Row]]) -> int:
        count = 0
        async with self._writer() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", self._lock_key)
            if await conn.fetchval("SELECT EXISTS (SELECT 1 FROM events)"):
                raise InvalidAppendError("restore needs an empty log")
            builder = TreeBuilder() if self.merkle else None
            chunk: list[Row] = []
            for row in rows():
                chunk.append(row)
                if len(chunk) >= 5000:
                    await self._restore_chunk(conn, chunk, builder)
                    count += len(chunk)
                    chunk.clear()
            if chunk:
                await self._restore_chunk(conn, chunk, builder)
                count += len(chunk)
        self._notifier.notify()
        return count

    async def _restore_chunk(
        self, conn: Any, chunk: list[Row], builder: TreeBuilder | None
    ) -> None:
        nodes = None if builder is None else [builder.add(row_leaf(row)) for row in chunk]
        columns = _columns(Planned(chunk, [], nodes, None))
        await conn.execute(self._statements.insert, *columns)

    # -- the Merkle tree and checkpoints ---------------------------------------------------

    async def read_tree_nodes(self, positions: Sequence[int]) -> dict[int, bytes]:
        rows = await self._fetch(f"{_NODES} WHERE e.position = ANY($1::bigint[])", list(positions))
        return {r[0]: bytes(r[1]) for r in rows if r[1] is not None}

    async def read_tree_range(self, first: int, last: int) -> dict[int, bytes]:
        rows = await self._fetch(f"{_NODES} WHERE e.position BETWEEN $1 AND $2", first, last)
        return {r[0]: bytes(r[1]) for r in rows if r[1] is not None}

    async def save_checkpoint(self, checkpoint: Checkpoint) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(
                sa.insert(sql.checkpoints).values(
                    tree_size=checkpoint.tree_size,
                    root_hash=checkpoint.root_hash,
                    origin=checkpoint.origin,
                    note=checkpoint.note,
                    signed=checkpoint.signed,
                    created_at=checkpoint.created_at_us,
                )
            )

    async def checkpoints_at(self, tree_size: int) -> list[Checkpoint]:
        rows = await self._fetch(
            "SELECT origin, tree_size, root_hash, note, signed, created_at "
            "FROM eventstore_checkpoints WHERE tree_size = $1 ORDER BY id",
            tree_size,
        )
        return [Checkpoint(r[0], r[1], bytes(r[2]), r[3], bool(r[4]), r[5]) for r in rows]

    async def _read_rows_page(self, after_position: int, limit: int) -> list[Row]:
        rows = await self._fetch(
            f"{_SELECT} WHERE position > $1 ORDER BY position LIMIT $2", after_position, limit
        )
        return [
            Row(r[0], r[1], r[2], str(r[3]), r[4], r[5], r[6], r[7], r[8], bytes(r[9]))
            for r in rows
        ]

    async def _read_all_page(
        self,
        after_position: int,
        limit: int,
        types: Collection[str] | None,
        stream_prefix: str | None,
        to_position: int | None = None,
    ) -> list[RecordedEvent]:
        where = ["position > $1"]
        params: list[Any] = [after_position]
        if to_position is not None:
            params.append(to_position)
            where.append(f"position <= ${len(params)}")
        if types is not None:
            if not types:
                return []
            params.append(list(types))
            where.append(f"type = ANY(${len(params)}::text[])")
        if stream_prefix is not None:
            params.append(stream_prefix)
            where.append(f"starts_with(stream_id, ${len(params)})")
        params.append(limit)
        statement = f"{_SELECT} WHERE {' AND '.join(where)} ORDER BY position LIMIT ${len(params)}"
        decode = sql.record_from_row
        return [decode(row) for row in await self._fetch(statement, *params)]

    async def _read_stream_page(
        self, stream_id: str, from_version: int, to_version: int | None, backwards: bool, limit: int
    ) -> list[RecordedEvent]:
        params: list[Any] = [stream_id, from_version]
        where = "stream_id = $1 AND version >= $2"
        if to_version is not None:
            params.append(to_version)
            where += f" AND version <= ${len(params)}"
        params.append(limit)
        order = "DESC" if backwards else "ASC"
        statement = f"{_SELECT} WHERE {where} ORDER BY version {order} LIMIT ${len(params)}"
        decode = sql.record_from_row
        return [decode(row) for row in await self._fetch(statement, *params)]

    async def _read_streams(self, stream_ids: Sequence[str]) -> list[RecordedEvent]:
        statement = f"{_SELECT} WHERE stream_id = ANY($1::text[]) ORDER BY stream_id, version"
        decode = sql.record_from_row
        return [decode(row) for row in await self._fetch(statement, list(stream_ids))]

    # -- cross-process wake-ups ------------------------------------------------------------

    @property
    def listener_pid(self) -> int | None:
        """The backend pid of the LISTEN connection, for tests that kill it."""
        conn = self._listener_conn
        return None if conn is None or conn.is_closed() else int(conn.get_server_pid())

    @property
    def notify_channel(self) -> str:
        """The channel every append is announced on (NOTIFY, payload: the last position)."""
        return self._channel

    async def listen(
        self,
        channel: str,
        on_payload: Callable[[str], None],
        on_connect: Callable[[], None],
        on_lost: Callable[[], None] | None = None,
    ) -> bool:
        first = channel not in self._channels
        self._channels.setdefault(channel, []).append((on_payload, on_connect, on_lost))
        conn = self._listener_conn
        if conn is None:
            # The (re)connection listens to every registered channel, then calls on_connect.
            await self._start_listening()
            return True
        if first:
            try:
                await conn.add_listener(channel, self._dispatch)
            except Exception as exc:
                # The connection is going away; its successor listens and calls on_connect.
                log.warning("event store LISTEN %s failed (%s); will retry", channel, exc)
                return True
        on_connect()
        return True

    def _dispatch(self, _conn: Any, _pid: int, channel: str, payload: str) -> None:
        for on_payload, _on_connect, _on_lost in tuple(self._channels.get(channel, ())):
            try:
                on_payload(payload)
            except Exception:
                log.exception("event store: a listener of %s failed", channel)

    async def _start_listening(self) -> None:
        if self._listener_task is None and not self._closed:
            ready = asyncio.get_running_loop().create_future()
            self._listener_task = asyncio.get_running_loop().create_task(
                self._listen(ready), name="eventstore-listen"
            )
            # Subscribers wait for the first LISTEN so that a notification sent right after
            # subscribe() is not missed; a failure here only means polling until it reconnects.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(ready), 5)

    async def _listen(self, ready: asyncio.Future[None]) -> None:
        # NOTIFY is only a wake-up: every (re)connection wakes readers so they re-read from
        # their position, and they poll anyway, so a lost notification only delays delivery.
        delay = 0.1
        while True:
            try:
                await self._listen_once(ready)
                delay = 0.1
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("event store LISTEN connection lost (%s); reconnecting", exc)
            self._listener_conn = None
            for callbacks in tuple(self._channels.values()):
                for _on_payload, _on_connect, on_lost in tuple(callbacks):
                    if on_lost is not None:
                        try:
                            on_lost()
                        except Exception:
                            log.exception("event store: a LISTEN lost callback failed")
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)

    async def _listen_once(self, ready: asyncio.Future[None]) -> None:
        async with self.engine.connect() as sa_conn:
            raw = await sa_conn.get_raw_connection()
            conn: Any = raw.driver_connection
            lost: asyncio.Future[None] = asyncio.get_running_loop().create_future()

            def on_notify(*_args: Any) -> None:
                self._notifier.notify()

            def on_terminate(*_args: Any) -> None:
                if not lost.done():
                    lost.set_result(None)

            conn.add_termination_listener(on_terminate)
            await conn.add_listener(self._channel, on_notify)
            listened: set[str] = set()
            while pending := [c for c in self._channels if c not in listened]:
                for channel in pending:
                    await conn.add_listener(channel, self._dispatch)
                    listened.add(channel)
            # Set with no await since the last check: listen() now adds to this connection.
            self._listener_conn = conn
            if not ready.done():
                ready.set_result(None)
            self._notifier.notify()
            for callbacks in tuple(self._channels.values()):
                for _on_payload, on_connect, _on_lost in tuple(callbacks):
                    try:
                        on_connect()
                    except Exception:
                        log.exception("event store: a LISTEN connect callback failed")
            while not lost.done():
                # Termination callbacks do not fire for every way a socket dies; a cheap
                # query every few seconds finds a dead connection.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.shield(lost), 5)
                if not lost.done():
                    await conn.fetchval("SELECT 1")
            await sa_conn.invalidate()
