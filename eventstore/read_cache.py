"""The rows of recent read-model statements, kept in memory while they are known to be current.

A :class:`RowCache` is an LRU of statement results bounded by their total number of rows, keyed
by SQL text and parameters. Each entry names the read models it was read from (``models``:
projection names), so that a move of one read model drops only the entries that read it.

What says an entry went stale depends on the backend (:mod:`eventstore.reader`):

* on SQLite, ``PRAGMA data_version`` changes with any commit to the file: the reader empties the
  whole cache then (:meth:`RowCache.clear`);
* on PostgreSQL, :func:`follow_checkpoints` ties the cache to the process's
  :class:`~eventstore.watcher.CheckpointWatcher`: a notification that a projection's checkpoint
  moved drops that projection's entries (:meth:`RowCache.moved`). The cache serves only while
  the watcher's LISTEN connection is up: when it is lost, notifications may be lost with it, so
  the cache empties and stops serving (:meth:`RowCache.suspend`) until the watcher has
  reconnected and re-read every checkpoint (:meth:`RowCache.resume`).

A statement that started before a drop may return rows older than the move that caused it;
such rows are not kept (each drop bumps :attr:`RowCache.generation`, and :meth:`RowCache.put`
refuses rows read under an older generation).

The cache also knows the position up to which each read model's entries are current (the
watcher's reach as last told): a request that asks for a minimum log position
(:data:`min_position`) is answered from the cache only when every read model the entry was
read from is known at or after it.
"""

from __future__ import annotations

import contextvars
import re
from collections.abc import Callable, Collection, Iterable, Mapping
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from eventstore.watcher import CheckpointWatcher

__all__ = ["RowCache", "follow_checkpoints", "min_position"]

#: A result over this share of the cache's rows is not kept: one big answer must not flush
#: the many small ones that make up most requests.
LARGEST_SHARE: Final = 8

#: The log position the current request must see at least (set from ``X-Min-Position``);
#: None: any current answer will do.
min_position: contextvars.ContextVar[int | None] = contextvars.ContextVar(
    "read_cache_min_position", default=None
)

_WORD: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")

Key = tuple[str, tuple[Any, ...]]
Rows = tuple[tuple[Any, ...], ...]


class RowCache:
    """A bounded LRU of statement results; see the module's docstring."""

    def __init__(self, max_rows: int = 0, *, serving: bool = True) -> None:
        if max_rows < 0:
            raise ValueError(f"max_rows must be >= 0, not {max_rows}")
        self.limit = max_rows
        #: Whether entries may be served and kept (False while invalidations may be missed).
        self.serving = serving
        #: Bumped by every drop: rows read under an older generation are not kept.
        self.generation = 0
        self.hits = 0
        self.misses = 0
        #: How many times entries were dropped for a move, and everything for a clear.
        self.drops = 0
        self.clears = 0
        self._entries: dict[Key, tuple[Rows, frozenset[str]]] = {}
        self._by_model: dict[str, set[Key]] = {}
        self._rows = 0
        #: Per read model, the log position its entries are known to be current at, while the
        #: cache follows checkpoints (a SQLite cache is current by construction and does not).
        self._positions: dict[str, int] = {}
        self.followed = False

    @property
    def active(self) -> bool:
        """Whether a statement should look here at all."""
        return self.serving and self.limit > 0

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def rows(self) -> int:
        return self._rows

    def get(self, key: Key) -> list[tuple[Any, ...]] | None:
        """The rows kept for ``key``, or None (counted as a miss)."""
        try:
            found = self._entries.pop(key, None)
        except TypeError:  # an unhashable parameter: nothing is kept for it
            self.misses += 1
            return None
        if found is None:
            self.misses += 1
            return None
        self._entries[key] = found  # most recently used last
        rows, models = found
        wanted = min_position.get()
        if wanted is not None and models and self.followed:
            positions = self._positions
            if any(positions.get(model, -1) < wanted for model in models):
                self.misses += 1
                return None
        self.hits += 1
        return list(rows)

    def put(
        self,
        key: Key,
        rows: list[tuple[Any, ...]],
        models: frozenset[str] = frozenset(),
        generation: int | None = None,
    ) -> None:
        """Keep ``rows``, read from ``models`` while :attr:`generation` was ``generation``."""
        if not self.active or (generation is not None and generation != self.generation):
            return
        limit = self.limit
        if len(rows) > limit // LARGEST_SHARE:
            return
        try:
            hash(key)
        except TypeError:  # an unhashable parameter: nothing is kept for it
            return
        self._forget(key)
        entries = self._entries
        while entries and self._rows + len(rows) > limit:
            self._forget(next(iter(entries)))
        entries[key] = (tuple(rows), models)
        self._rows += len(rows)
        for model in models:
            self._by_model.setdefault(model, set()).add(key)

    def _forget(self, key: Key) -> None:
        found = self._entries.pop(key, None)
        if found is None:
            return
        rows, models = found
        self._rows -= len(rows)
        for model in models:
            keys = self._by_model.get(model)
            if keys is not None:
                keys.discard(key)

    def clear(self) -> None:
        """Forget every entry (and what any statement in flight reads)."""
        self.generation += 1
        self.clears += 1
        self._entries.clear()
        self._by_model.clear()
        self._rows = 0

    def moved(self, model: str, position: int) -> None:
        """``model``'s tables changed, and reflect the log up to ``position``: drop what was
        read from them."""
        self.generation += 1
        self.drops += 1
        keys = self._by_model.pop(model, None)
        if keys:
            for key in keys:
                self._forget(key)
        if position > self._positions.get(model, -1):
            self._positions[model] = position

    def reached(self, model: str, position: int) -> None:
        """``model``'s tables are unchanged and known to reflect the log up to ``position``."""
        if position > self._positions.get(model, -1):
            self._positions[model] = position

    def suspend(self) -> None:
        """Stop serving and keeping entries: invalidations may be missed from now on."""
        self.serving = False
        self.clear()

    def resume(self, positions: Mapping[str, int]) -> None:
        """Serve again, from empty, with every read model current at ``positions``."""
        self.clear()
        self._positions = dict(positions)
        self.followed = True
        self.serving = True

    def positions(self) -> dict[str, int]:
        """Per read model, the log position its entries are current at."""
        return dict(self._positions)


def follow_checkpoints(cache: RowCache, watcher: CheckpointWatcher) -> Callable[[], None]:
    """Keep ``cache`` current from ``watcher``'s notifications; returns a function that stops.

    Until the watcher hears its backend's notifications, the cache stays suspended.
    """

    changes = {name: watcher.changed(name) for name in watcher.names}

    def on_move(name: str, reach: int) -> None:
        # A reach moved past events of other types (read past by the runner, or found so by
        # a scan of the log) leaves the tables as they were: their entries stay.
        changed = watcher.changed(name)
        if changes.get(name) == changed:
            cache.reached(name, reach)
        else:
            changes[name] = changed
            cache.moved(name, reach)

    def on_reset() -> None:
        # Called once every checkpoint has been read again after a (re)connection.
        changes.update((name, watcher.changed(name)) for name in watcher.names)
        if watcher.live:
            cache.resume(watcher.reaches())
        else:
            cache.suspend()

    def on_lost() -> None:
        cache.suspend()

    stop = watcher.add_listener(on_move, on_reset, on_lost)
    if watcher.live:
        cache.resume(watcher.reaches())
    else:
        cache.suspend()

    def unfollow() -> None:
        stop()
        cache.suspend()

    return unfollow


def models_of(sql: str, tables: Mapping[str, str]) -> frozenset[str]:
    """The read models (values of ``tables``, keyed by table name) whose tables ``sql`` names."""
    words = set(_WORD.findall(sql))
    return frozenset(model for table, model in tables.items() if table in words)


def table_owners(models: Iterable[tuple[str, Collection[str]]]) -> dict[str, str]:
    """``{table: model}`` from ``(model, tables)`` pairs."""
    return {table: name for name, tables in models for table in tables}
