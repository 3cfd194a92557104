"""One write lock per SQLite file and event loop, taken before ``BEGIN IMMEDIATE``.

SQLite lets one connection write at a time. A connection that finds the file locked sleeps in
its busy handler, in steps that grow to 100 ms, and nothing wakes it when the lock frees. With
the event store's writer thread and the projection runner's connections in one process, those
sleeps were the tail of the live lag (p99 over 500 ms at 1,000 views/s, when the work itself
takes a few milliseconds). So every writer of a process queues here first, in FIFO order, and
is woken as soon as the previous one has committed; SQLite's own lock and busy handler are left
to arbitrate between processes only.

The wait is bounded by the same busy timeout SQLite would have applied, so a writer stuck in a
transaction fails the others with a clear error instead of stalling them for ever.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import weakref
from collections.abc import AsyncIterator

from eventstore.errors import StoreUnavailableError

# Keyed by loop: an asyncio.Lock belongs to the loop it first waited on, and tests (or a CLI)
# may run several loops one after another in one process.
_locks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, asyncio.Lock]] = (
    weakref.WeakKeyDictionary()
)


def _key(database: str | None) -> str | None:
    """The file a database name refers to, or None for private in-memory databases."""
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    return os.path.realpath(database)


def write_lock(database: str | None) -> asyncio.Lock | None:
    """This loop's write lock for a SQLite file; None when there is nothing to share."""
    key = _key(database)
    if key is None:
        return None
    loop = asyncio.get_running_loop()
    per_loop = _locks.get(loop)
    if per_loop is None:
        per_loop = _locks[loop] = {}
    lock = per_loop.get(key)
    if lock is None:
        lock = per_loop[key] = asyncio.Lock()
    return lock


@contextlib.asynccontextmanager
async def sqlite_write_lock(database: str | None, timeout: float) -> AsyncIterator[None]:
    """Hold the process's write lock for ``database`` for the block, waiting ``timeout`` at most.

    Raises :class:`StoreUnavailableError` (retryable) when another writer of this process held
    it all that time.
    """
    lock = write_lock(database)
    if lock is None:
        yield
        return
    try:
        async with asyncio.timeout(timeout):
            await lock.acquire()
    except TimeoutError:
        raise StoreUnavailableError(
            f"SQLite database {database} is locked by another writer: waited {timeout:g} s"
        ) from None
    try:
        yield
    finally:
        lock.release()
