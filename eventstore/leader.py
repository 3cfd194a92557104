"""Leader election: which process runs a named job, through PostgreSQL session advisory locks.

A session-level advisory lock lives exactly as long as the connection that took it, so when a
process dies (or its connection does) PostgreSQL releases its locks and a waiting process takes
them over on its next try. SQLite and the memory store have no such thing: the serving process
runs everything, and ``LeaderElection`` simply grants every job.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from collections.abc import AsyncIterator

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from eventstore.urls import PG_KEEPALIVES

log = logging.getLogger(__name__)

_TRY_LOCK = sa.text("SELECT pg_try_advisory_lock(:key)")
_UNLOCK = sa.text("SELECT pg_advisory_unlock(:key)")


def advisory_key(namespace: str, schema: str, name: str) -> int:
    """A signed 64-bit advisory lock key for a job name in a schema."""
    digest = hashlib.blake2b(f"{namespace}:{schema}:{name}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


async def _dedicated_connection(engine: AsyncEngine) -> tuple[AsyncConnection, str]:
    """A connection in autocommit mode (no transaction left open for hours) and its schema."""
    conn = await engine.connect()
    try:
        conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
        # A process that dies closes its socket and frees its locks at once; a host that
        # vanishes would hold them until TCP gives up, which keepalives cut to seconds. The
        # engine's connections have them already, unless it was made without create_engine.
        for setting, value in PG_KEEPALIVES.items():
            await conn.execute(sa.text(f"SET {setting} = {value}"))
        schema = (await conn.execute(sa.text("SELECT current_schema()"))).scalar_one()
    except BaseException:
        await _discard(conn)
        raise
    return conn, str(schema)


async def _discard(conn: AsyncConnection) -> None:
    # Invalidating closes the socket instead of returning the connection to the pool, so no
    # session lock can outlive us in a pooled connection.
    with contextlib.suppress(Exception):
        await conn.invalidate()
    with contextlib.suppress(Exception):
        await conn.close()


class LeaderElection:
    """Grants every job to this process: the election used on SQLite and the memory store."""

    async def acquire(self, name: str) -> bool:
        """Try to become the leader of ``name``; True when this process now holds it."""
        return True

    def holds(self, name: str) -> bool:
        """Whether this process still believes it leads ``name`` (checked without I/O)."""
        return True

    async def release(self, name: str) -> None:
        """Give up the leadership of ``name`` (a no-op when not held)."""

    async def close(self) -> None:
        """Give up every leadership."""


class PostgresLeaderElection(LeaderElection):
    """One dedicated connection per process holds a session advisory lock per job it leads."""

    def __init__(
        self,
        engine: AsyncEngine,
        *,
        namespace: str = "projection",
        check_interval: float = 1.0,
        check_timeout: float = 5.0,
    ) -> None:
        self.engine = engine
        self.namespace = namespace
        self.check_interval = check_interval
        self.check_timeout = check_timeout
        self._conn: AsyncConnection | None = None
        self._pid: int | None = None
        self._schema = ""
        self._held: set[str] = set()
        self._io = asyncio.Lock()  # one connection runs one statement at a time
        self._monitor: asyncio.Task[None] | None = None

    @property
    def backend_pid(self) -> int | None:
        """The server pid of the lock connection, for tests that kill it."""
        return self._pid

    def key(self, name: str) -> int:
        return advisory_key(self.namespace, self._schema, name)

    async def acquire(self, name: str) -> bool:
        if name in self._held:
            return True
        try:
            async with self._io:
                conn = await self._connection()
                got = bool((await conn.execute(_TRY_LOCK, {"key": self.key(name)})).scalar_one())
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("leader election: cannot reach PostgreSQL (%s)", exc)
            await self._lost()
            return False
        if got:
            self._held.add(name)
            if self._monitor is None or self._monitor.done():
                self._monitor = asyncio.get_running_loop().create_task(
                    self._watch(), name="leader-election-watch"
                )
        return got

    def holds(self, name: str) -> bool:
        return name in self._held

    async def release(self, name: str) -> None:
        if name not in self._held:
            return
        self._held.discard(name)
        try:
            async with self._io:
                if self._conn is not None:
                    await self._conn.execute(_UNLOCK, {"key": self.key(name)})
        except asyncio.CancelledError:
            raise
        except Exception:
            await self._lost()

    async def close(self) -> None:
        if self._monitor is not None:
            self._monitor.cancel()
            await asyncio.wait([self._monitor])
        # Letting go on purpose is not a lost connection: no warning for every clean shutdown.
        if self._held:
            log.info("leader election: releasing %s", sorted(self._held))
            self._held.clear()
        await self._lost()

    async def _connection(self) -> AsyncConnection:
        if self._conn is None:
            self._conn, self._schema = await _dedicated_connection(self.engine)
            pid = (await self._conn.execute(sa.text("SELECT pg_backend_pid()"))).scalar_one()
            self._pid = int(pid)
        return self._conn

    async def _lost(self) -> None:
        """Forget every leadership; closing the connection makes PostgreSQL free the locks."""
        if self._held:
            log.warning(
                "leader election: lost the lock connection; giving up %s", sorted(self._held)
            )
        self._held.clear()
        conn, self._conn, self._pid = self._conn, None, None
        if conn is not None:
            await _discard(conn)

    async def _watch(self) -> None:
        # A dead connection means PostgreSQL has already freed our locks and another process
        # may be running our jobs: notice it within a check interval and stop claiming them.
        while self._held:
            await asyncio.sleep(self.check_interval)
            try:
                async with self._io:
                    if self._conn is None:
                        raise ConnectionError("no lock connection")
                    async with asyncio.timeout(self.check_timeout):
                        await self._conn.execute(sa.text("SELECT 1"))
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("leader election: lock connection failed its check (%s)", exc)
                await self._lost()


def leader_election_for(engine: AsyncEngine, *, namespace: str = "projection") -> LeaderElection:
    """Advisory locks on PostgreSQL; on SQLite the serving process leads everything."""
    if engine.dialect.name == "postgresql":
        return PostgresLeaderElection(engine, namespace=namespace)
    return LeaderElection()


@contextlib.asynccontextmanager
async def exclusive(
    engine: AsyncEngine, name: str, *, namespace: str, retry_interval: float = 1.0
) -> AsyncIterator[None]:
    """Hold a PostgreSQL session advisory lock for the block, waiting for it; nothing elsewhere."""
    if engine.dialect.name != "postgresql":
        yield
        return
    conn, schema = await _dedicated_connection(engine)
    try:
        key = advisory_key(namespace, schema, name)
        while True:
            if (await conn.execute(_TRY_LOCK, {"key": key})).scalar_one():
                break
            await asyncio.sleep(retry_interval)
        yield
    finally:
        await _discard(conn)
