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

The checkpoint table ``projection_checkpoints`` (:mod:`eventstore.projection_checkpoints`) holds
one row per projection: the position of the last event processed (never "the end of the last page
read"), the version its tables were built with, its status (``active`` or ``failed``) and the error
that stopped it. A projection without a row owns no data: its tables are dropped and created afresh
on first start.

The runner (:mod:`eventstore.projection_runner`) and the rebuilds (:mod:`eventstore.rebuild`) keep
this contract. On PostgreSQL, each projection runs in one process at a time: the leader holds a
session advisory lock (see ``eventstore.leader``) and the others retry every second. Every
checkpoint update is also a compare-and-set on the previous position, so even two processes that
both believe they lead (or a rebuild swapping tables under a running projection) cannot apply an
event twice.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Final, Protocol

from sqlalchemy.ext.asyncio import AsyncConnection

from eventstore.records import RecordedEvent

ASIDE_PREFIX: Final = "__rb"
_TABLE_NAME = re.compile(r"[a-z_][a-z0-9_]{0,49}")  # leaves room for the aside suffix in 63


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


class ProjectionError(Exception):
    """A projection raised on an event: its name, the event's position and the cause."""

    def __init__(self, name: str, position: int, cause: BaseException) -> None:
        self.name = name
        self.position = position
        self.cause = cause
        super().__init__(
            f"projection {name!r} failed at position {position}: {describe_error(cause)}"
        )


def describe_error(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"
