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
import functools
import os
import weakref
from types import TracebackType

from eventstore.errors import StoreUnavailableError

# Keyed by loop: an asyncio.Lock belongs to the loop it first waited on, and tests (or a CLI)
# may run several loops one after another in one process.
_locks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, _FileLock]] = (
    weakref.WeakKeyDictionary()
)


class _FileLock:
    """A file's lock, with a count of the writers waiting for it through this module."""

    __slots__ = ("lock", "waiting")

    def __init__(self) -> None:
        self.lock = asyncio.Lock()
        self.waiting = 0


@functools.lru_cache(maxsize=1024)
def _key(database: str | None) -> str | None:
    """The file a database name refers to, or None for private in-memory databases."""
    # Cached: realpath costs a few lstat calls, which every append would otherwise pay.
    # Every caller resolves through this same cache, so a
    # symlink changed after first use cannot split one file into two locks within a process.
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    return os.path.realpath(database)


def _file_lock(database: str | None) -> _FileLock | None:
    key = _key(database)
    if key is None:
        return None
    loop = asyncio.get_running_loop()
    per_loop = _locks.get(loop)
    if per_loop is None:
        per_loop = _locks[loop] = {}
    file_lock = per_loop.get(key)
    if file_lock is None:
        file_lock = per_loop[key] = _FileLock()
    return file_lock


def write_lock(database: str | None) -> asyncio.Lock | None:
    """This loop's write lock for a SQLite file; None when there is nothing to share."""
    file_lock = _file_lock(database)
    return None if file_lock is None else file_lock.lock


class sqlite_write_lock:  # lower case: callers use it like the function it replaced
    """Hold the process's write lock for ``database`` for the block, waiting ``timeout`` at most.

    Raises :class:`StoreUnavailableError` (retryable) when another writer of this process held
    it all that time. A class rather than an ``asynccontextmanager``: it is entered for every
    group commit, and the generator plus an ``asyncio.timeout`` cost about 15 µs where a free
    lock needs neither.
    """

    __slots__ = ("_database", "_file_lock", "_timeout")

    def __init__(self, database: str | None, timeout: float) -> None:
        self._database = database
        self._timeout = timeout
        self._file_lock: _FileLock | None = None

    async def acquire(self) -> None:
        """Take the lock (see the class); pair with :meth:`release`, which may run later."""
        file_lock = _file_lock(self._database)
        if file_lock is None:
            return
        lock = file_lock.lock
        if not lock.locked() and file_lock.waiting == 0:
            # Free with nobody queued: acquire() returns without suspending, so the timeout
            # could never fire. (A waiter woken by a release but not yet run still counts in
            # ``waiting``, so this never jumps the FIFO queue.)
            await lock.acquire()
        else:
            file_lock.waiting += 1
            try:
                async with asyncio.timeout(self._timeout):
                    await lock.acquire()
            except TimeoutError:
                raise StoreUnavailableError(
                    f"SQLite database {self._database} is locked by another writer: "
                    f"waited {self._timeout:g} s"
                ) from None
            finally:
                file_lock.waiting -= 1
        self._file_lock = file_lock

    __aenter__ = acquire

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()

    def release(self) -> None:
        """Release the lock if this object holds it; synchronous, so a callback may call it."""
        file_lock, self._file_lock = self._file_lock, None
        if file_lock is not None:
            file_lock.lock.release()
