"""The PostgreSQL backend: asyncpg under SQLAlchemy's pool, appends serialized by an advisory lock.

A sequence hands out positions before commit, so a tailing reader could pass a slow
transaction and never see it. Here every append transaction first takes one advisory
transaction lock and only then reads the head and numbers its events; the lock is released
after the commit is visible, so positions become visible in order and without gaps (a
rolled-back transaction leaves no gap either, since nothing was numbered for good). Group
commit wins back the throughput that the lock costs.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from collections.abc import AsyncIterator, Callable, Collection, Iterable
from typing import Any

import asyncpg
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from eventstore import sql
from eventstore.chain import GENESIS_HASH
from eventstore.errors import InvalidAppendError, SchemaVersionError, StoreUnavailableError
from eventstore.planning import NeedsLookup, Outcome, PendingAppend, Row, plan_batch
from eventstore.records import (
    ANY,
    NO_STREAM,
    STREAM_EXISTS,
    AppendResult,
    ExpectedVersion,
    RecordedEvent,
)
from eventstore.store import EventStore, now_us
from eventstore.urls import create_engine

log = logging.getLogger(__name__)

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

_FIELD = """
CREATE OR REPLACE FUNCTION eventstore_field(value text) RETURNS bytea
LANGUAGE sql IMMUTABLE STRICT AS $$
    SELECT int8send(octet_length(convert_to(value, 'UTF8'))::bigint) || convert_to(value, 'UTF8')
$$
"""

# The fast path: the whole append in one round trip (the call is its own transaction). It
# handles the common case only: every expected version matches and no event id is stored yet.
# Otherwise it returns NULL, or fails on the unique index, and the caller falls back to the
# planner in eventstore/planning.py, which decides retries and conflicts for every backend.
# The hash is the one eventstore/chain.py computes; the contract tests check they agree.
_APPEND = """
CREATE OR REPLACE FUNCTION eventstore_append(
    lock_key bigint, channel text, stamp bigint,
    req_streams text[], req_expected bigint[], req_counts int[],
    ev_ids uuid[], ev_types text[], ev_schema int[], ev_data text[], ev_meta text[])
RETURNS bigint[]
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    head bigint;
    prev bytea;
    result bigint[];
    seen_streams text[] := '{}';
    seen_versions bigint[] := '{}';
    idx int;
    cur bigint;
    expected bigint;
    pos bigint;
    ver bigint;
    k int := 0;
    positions bigint[] := '{}';
    streams text[] := '{}';
    versions bigint[] := '{}';
    hashes bytea[] := '{}';
BEGIN
    PERFORM pg_advisory_xact_lock(lock_key);
    SELECT e.position, e.hash INTO head, prev FROM events e ORDER BY e.position DESC LIMIT 1;
    IF head IS NULL THEN
        head := 0;
        prev := decode(repeat('00', 32), 'hex');
    END IF;
    result := ARRAY[head];
    FOR i IN 1 .. array_length(req_streams, 1) LOOP
        idx := array_position(seen_streams, req_streams[i]);
        IF idx IS NULL THEN
            SELECT COALESCE(max(e.version), 0) INTO cur FROM events e
            WHERE e.stream_id = req_streams[i];
            seen_streams := seen_streams || req_streams[i];
            seen_versions := seen_versions || cur;
            idx := array_length(seen_streams, 1);
        ELSE
            cur := seen_versions[idx];
        END IF;
        expected := req_expected[i];
        IF NOT (expected = -1 OR (expected = -2 AND cur = 0) OR (expected = -3 AND cur > 0)
                OR expected = cur) THEN
            RETURN NULL;
        END IF;
        result := result || cur;
        seen_versions[idx] := cur + req_counts[i];
    END LOOP;
    pos := head;
    FOR i IN 1 .. array_length(req_streams, 1) LOOP
        ver := result[i + 1];
        FOR j IN 1 .. req_counts[i] LOOP
            k := k + 1;
            pos := pos + 1;
            ver := ver + 1;
            prev := sha256(prev
                || eventstore_field(pos::text) || eventstore_field(req_streams[i])
                || eventstore_field(ver::text) || eventstore_field(ev_ids[k]::text)
                || eventstore_field(ev_types[k]) || eventstore_field(ev_schema[k]::text)
                || eventstore_field(ev_data[k]) || eventstore_field(ev_meta[k])
                || eventstore_field(stamp::text));
            -- Indexed assignment extends the arrays in place; || would copy them each time.
            positions[k] := pos;
            streams[k] := req_streams[i];
            versions[k] := ver;
            hashes[k] := prev;
        END LOOP;
    END LOOP;
    INSERT INTO events (position, stream_id, version, event_id, type, schema_version, data,
                        metadata, recorded_at, hash)
    SELECT * FROM unnest(positions, streams, versions, ev_ids, ev_types, ev_schema, ev_data,
                         ev_meta, array_fill(stamp, ARRAY[k]), hashes);
    IF channel IS NOT NULL THEN
        PERFORM pg_notify(channel, pos::text);
    END IF;
    RETURN result;
END $$
"""

_INSERT = f"""
INSERT INTO events ({sql.COLUMNS})
SELECT * FROM unnest($1::bigint[], $2::text[], $3::bigint[], $4::uuid[], $5::text[],
                     $6::int[], $7::text[], $8::text[], $9::bigint[], $10::bytea[])
"""

_INSERT_AND_NOTIFY = f"""
WITH inserted AS ({_INSERT} RETURNING 1)
SELECT pg_notify($11, $12)
"""


def _lock_key(schema: str) -> int:
    digest = hashlib.blake2b(f"eventstore:{schema}.events".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def _expected_code(expected: ExpectedVersion) -> int:
    if expected is ANY:
        return -1
    if expected is NO_STREAM:
        return -2
    if expected is STREAM_EXISTS:
        return -3
    assert isinstance(expected, int)
    return expected


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
    ) -> None:
        super().__init__(poll_interval=poll_interval, max_batch_events=max_batch_events)
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
        self._writer_conn: tuple[AsyncConnection, Any] | None = None
        self._closed = False

    @contextlib.asynccontextmanager
    async def _driver(self) -> AsyncIterator[Any]:
        """An asyncpg connection from the pool; a broken one is dropped with its whole pool."""
        try:
            conn = await self.engine.connect()
        except _CONNECTION_ERRORS as exc:
            raise _unavailable(exc) from exc
        try:
            raw = await conn.get_raw_connection()
            yield raw.driver_connection
        except _CONNECTION_ERRORS as exc:
            # The pool cannot see errors raised by the raw driver; after a server restart every
            # pooled connection is dead, so start a fresh pool rather than fail once per each.
            with contextlib.suppress(Exception):
                await conn.invalidate()
            await self.engine.dispose(close=False)
            raise _unavailable(exc) from exc
        finally:
            with contextlib.suppress(Exception):
                await conn.close()

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
            for function in (_BEGIN_APPEND, _FIELD, _APPEND):
                await self._exec_ddl(conn, function)
            for guard in sql.POSTGRES_GUARDS:
                await self._exec_ddl(conn, guard)

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
        if self._listener_task is not None:
            self._listener_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._listener_task
        await self.engine.dispose()

    # -- writing ---------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def _writer(self) -> AsyncIterator[Any]:
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
        sa_conn, raw = self._writer_conn
        try:
            yield raw
        except _CONNECTION_ERRORS as exc:
            self._writer_conn = None
            with contextlib.suppress(Exception):
                await sa_conn.invalidate()
            with contextlib.suppress(Exception):
                await sa_conn.close()
            await self.engine.dispose(close=False)
            raise _unavailable(exc) from exc

    async def _write_batch(self, batch: list[PendingAppend]) -> list[Outcome]:
        async with self._writer() as conn:
            try:
                try:
                    fast = await self._append_fast(conn, batch)
                    if fast is not None:
                        return fast
                    return await self._write_once(conn, batch, careful=False)
                except asyncpg.exceptions.UniqueViolationError:
                    return await self._write_once(conn, batch, careful=True)
            except asyncpg.exceptions.LockNotAvailableError as exc:
                raise StoreUnavailableError(
                    f"timed out after {self._lock_timeout_ms} ms waiting for the append lock"
                ) from exc

    async def _append_fast(self, conn: Any, batch: list[PendingAppend]) -> list[Outcome] | None:
        events = [e for r in batch for e in r.events]
        before = await conn.fetchval(
            "SELECT eventstore_append($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
            self._lock_key,
            self._channel if self._notify else None,
            now_us(),
            [r.stream_id for r in batch],
            [_expected_code(r.expected) for r in batch],
            [len(r.events) for r in batch],
            [e.event_id for e in events],
            [e.type for e in events],
            [e.schema_version for e in events],
            [e.data for e in events],
            [e.metadata for e in events],
        )
        if before is None:
            return None
        outcomes: list[Outcome] = []
        position = before[0]
        for request, actual in zip(batch, before[1:], strict=True):
            count = len(request.events)
            outcomes.append(
                AppendResult(
                    request.stream_id, actual + 1, actual + count, position + 1, position + count
                )
            )
            position += count
        return outcomes

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
        versions = {s: v for s, v in zip(streams, head["versions"], strict=True) if v}
        stamp = now_us()
        existing = await self._lookup(conn, batch) if careful else None
        try:
            rows, outcomes = plan_batch(batch, head_position, head_hash, versions, stamp, existing)
        except NeedsLookup:
            existing = await self._lookup(conn, batch)
            rows, outcomes = plan_batch(batch, head_position, head_hash, versions, stamp, existing)
        if rows:
            columns = [list(c) for c in zip(*rows, strict=True)]
            if self._notify:
                await conn.fetchval(
                    _INSERT_AND_NOTIFY, *columns, self._channel, str(rows[-1].position)
                )
            else:
                await conn.execute(_INSERT, *columns)
        return outcomes

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
        async with self._driver() as conn:
            return await conn.fetch(statement, *params)  # type: ignore[no-any-return]

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
            chunk: list[Row] = []
            for row in rows():
                chunk.append(row)
                if len(chunk) >= 5000:
                    await conn.execute(_INSERT, *[list(c) for c in zip(*chunk, strict=True)])
                    count += len(chunk)
                    chunk.clear()
            if chunk:
                await conn.execute(_INSERT, *[list(c) for c in zip(*chunk, strict=True)])
                count += len(chunk)
        self._notifier.notify()
        return count

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

    # -- cross-process wake-ups ------------------------------------------------------------

    @property
    def listener_pid(self) -> int | None:
        """The backend pid of the LISTEN connection, for tests that kill it."""
        conn = self._listener_conn
        return None if conn is None or conn.is_closed() else int(conn.get_server_pid())

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
            self._listener_conn = conn
            if not ready.done():
                ready.set_result(None)
            self._notifier.notify()
            while not lost.done():
                # Termination callbacks do not fire for every way a socket dies; a cheap
                # query every few seconds finds a dead connection.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.shield(lost), 5)
                if not lost.done():
                    await conn.fetchval("SELECT 1")
            await sa_conn.invalidate()
