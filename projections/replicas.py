"""Reads from streaming replicas: which copy of the read models answers a query.

PostgreSQL's streaming replicas hold byte-for-byte copies of the primary's tables, the read
models' ``projection_checkpoints`` rows included, replayed in commit order. A replica whose
checkpoint row for a projection is at position C therefore shows that projection's tables as
the primary showed them at C. :class:`ReplicaRouter` uses that, with nothing of the replication
machinery itself:

* **Polling.** A task per replica reads its checkpoint rows every ``interval`` seconds (six
  rows, one statement) and measures its **lag**: how long ago the primary's rows first went past
  what the replica's rows show now (the primary's rows are sampled from the process's
  :class:`~eventstore.watcher.CheckpointWatcher` as they move). A replica that does not answer
  within ``timeout``, or lags more than ``max_lag`` seconds, is left out until a poll finds it
  back within the bound.
* **Choosing.** :meth:`ReplicaRouter.choose` takes the request's minimum position (its
  ``X-Min-Position``, which after a mutation is the position the mutation returned) and gives
  the :class:`~projections.read_models.ReadModels` of a healthy replica whose copy reaches it (by
  the watcher's :class:`~eventstore.watcher.Standing`: a copy whose row is at the primary's
  known position reaches as far as the primary does), round-robin among them; without a
  position, any healthy replica; failing that, the primary's.
* **Falling back.** A replica's read models run each statement on the replica and, if it fails
  there (the replica went away since the last poll, or cancelled the statement in a conflict
  with recovery), once more on the primary, so no request fails because of a replica. A lost
  connection also leaves the replica out until the next poll answers.

Writes, proofs and the log never come here: they use the event store, which is on the primary.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import sqlalchemy as sa
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncEngine

from eventstore.errors import StoreUnavailableError
from eventstore.reader import reader_for
from eventstore.watcher import CheckpointWatcher, Standing
from projections.read_models import ReadModels

log = logging.getLogger(__name__)

#: The label of the primary among the read targets (metrics).
PRIMARY: Final = "primary"
DEFAULT_MAX_LAG: Final = 2.0
DEFAULT_INTERVAL: Final = 0.2
DEFAULT_TIMEOUT: Final = 1.0

_ROWS: Final = "SELECT name, position FROM projection_checkpoints"

#: Errors after which a replica's connection is gone, not just one statement refused.
_LOST: Final = (StoreUnavailableError, OSError, TimeoutError, sa.exc.InterfaceError)


class ReplicaReadModels(ReadModels):
    """The read models on a replica, each statement run again on the primary if it fails."""

    def __init__(
        self, engine: AsyncEngine, primary: ReadModels, on_lost: Callable[[BaseException], None]
    ) -> None:
        super().__init__(engine)
        self._primary = primary
        self._on_lost = on_lost

    def _failed(self, exc: Exception) -> None:
        lost = isinstance(exc, _LOST) or (
            isinstance(exc, sa.exc.DBAPIError) and exc.connection_invalidated
        )
        if lost:
            self._on_lost(exc)
        log.debug("replica read failed (%s); reading the primary", type(exc).__name__)

    async def _rows(self, statement: sa.Executable) -> Sequence[Row[Any]]:
        try:
            return await super()._rows(statement)
        except Exception as exc:
            self._failed(exc)
        return await ReadModels._rows(self._primary, statement)

    async def _fetch(self, sql: str, *params: Any) -> list[tuple[Any, ...]]:
        try:
            return await super()._fetch(sql, *params)
        except Exception as exc:
            self._failed(exc)
        return await ReadModels._fetch(self._primary, sql, *params)


@dataclass(eq=False)
class Replica:
    """One replica, as its polls find it."""

    name: str
    engine: AsyncEngine
    read_models: ReadModels
    #: Its checkpoint rows (projection -> position) at the last poll that answered.
    rows: dict[str, int] = field(default_factory=dict)
    healthy: bool = False
    #: Seconds since the primary's rows first went past the replica's (0: it is level).
    lag_seconds: float = 0.0
    #: Positions by which its rows trail the primary's, the largest over the projections.
    lag_positions: int = 0
    error: str | None = "not polled yet"
    #: Queries sent to it since start.
    reads: int = 0


class ReplicaRouter:
    """Chooses the read models of each query among the primary and its replicas; see the
    module doc. ``replicas`` are (name, engine) pairs; the router disposes of the engines."""

    def __init__(
        self,
        primary: ReadModels,
        watcher: CheckpointWatcher,
        replicas: Sequence[tuple[str, AsyncEngine]],
        *,
        max_lag: float = DEFAULT_MAX_LAG,
        interval: float = DEFAULT_INTERVAL,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        self.primary = primary
        self.watcher = watcher
        self.max_lag = max_lag
        self.interval = interval
        self.timeout = timeout
        self.replicas: list[Replica] = []
        for name, engine in replicas:
            replica = Replica(name, engine, primary)
            replica.read_models = ReplicaReadModels(engine, primary, self._lost_by(replica))
            self.replicas.append(replica)
        #: Queries answered by the primary since start.
        self.primary_reads = 0
        self._turn = itertools.count()
        #: Per projection, (monotonic time, primary row) at each move seen, oldest first.
        self._history: dict[str, deque[tuple[float, int]]] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._started_at = time.monotonic()

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        self._started_at = time.monotonic()
        loop = asyncio.get_running_loop()
        self._sample()
        for replica in self.replicas:
            task = loop.create_task(self._follow(replica), name=f"replica {replica.name}")
            self._tasks.append(task)

    async def stop(self) -> None:
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for replica in self.replicas:
            await replica.engine.dispose()

    # -- choosing --------------------------------------------------------------------------

    def choose(self, min_position: int | None = None) -> ReadModels:
        """The read models a query at or after ``min_position`` (None: any) should use."""
        candidates = [r for r in self.replicas if r.healthy]
        if candidates and min_position is not None:
            standing = self.watcher.standing()
            candidates = [r for r in candidates if self._reaches(r, min_position, standing)]
        if not candidates:
            self.primary_reads += 1
            return self.primary
        chosen = candidates[next(self._turn) % len(candidates)]
        chosen.reads += 1
        return chosen.read_models

    def reaches(self, replica: Replica, position: int) -> bool:
        """Whether the replica's read models, as its last poll found them, reach ``position``."""
        return self._reaches(replica, position, self.watcher.standing())

    @staticmethod
    def _reaches(replica: Replica, position: int, standing: dict[str, Standing]) -> bool:
        rows = replica.rows
        return all(s.reach_of_copy(rows.get(name, -1)) >= position for name, s in standing.items())

    def reads(self) -> dict[str, int]:
        """Queries sent to each target since start (for metrics)."""
        return {PRIMARY: self.primary_reads, **{r.name: r.reads for r in self.replicas}}

    # -- following the replicas ------------------------------------------------------------

    def _lost_by(self, replica: Replica) -> Callable[[BaseException], None]:
        def lost(exc: BaseException) -> None:
            self._leave_out(replica, f"{type(exc).__name__}: {exc}")

        return lost

    def _leave_out(self, replica: Replica, why: str) -> None:
        if replica.healthy:
            log.warning("read replica %s left out: %s", replica.name, why)
        replica.healthy = False
        replica.error = why

    def _sample(self) -> None:
        """Note the primary's checkpoint rows where they moved since the last sample."""
        now = time.monotonic()
        horizon = now - max(10.0, 2 * self.max_lag)
        for name, standing in self.watcher.standing().items():
            history = self._history.get(name)
            if history is None:
                # How long the primary has been there is unknown: count it as long ago, so a
                # replica that is not level yet starts out lagging.
                self._history[name] = deque([(horizon, standing.row)])
                continue
            if standing.row > history[-1][1]:
                history.append((now, standing.row))
            # Keep one sample older than the horizon: the lag it gives is a lower bound.
            while len(history) > 1 and history[1][0] < horizon:
                history.popleft()

    def _lag(self, rows: dict[str, int], now: float) -> tuple[float, int]:
        seconds, positions = 0.0, 0
        for name, history in self._history.items():
            row = rows.get(name, -1)
            positions = max(positions, history[-1][1] - row)
            for when, position in history:
                if position > row:
                    seconds = max(seconds, now - when)
                    break
        return seconds, positions

    async def poll(self, replica: Replica) -> None:
        """Read the replica's checkpoint rows once and judge it."""
        try:
            async with asyncio.timeout(self.timeout):
                fetched = await reader_for(replica.engine).fetch(_ROWS)
        except Exception as exc:
            self._leave_out(replica, f"{type(exc).__name__}: {exc}" if str(exc) else repr(exc))
            return
        self._sample()
        rows = {str(name): int(position) for name, position in fetched}
        replica.rows = rows
        replica.lag_seconds, replica.lag_positions = self._lag(rows, time.monotonic())
        if replica.lag_seconds > self.max_lag:
            self._leave_out(replica, f"{replica.lag_seconds:.1f} s behind the primary")
        elif not replica.healthy:
            log.info("read replica %s in use (%.2f s behind)", replica.name, replica.lag_seconds)
            replica.healthy = True
            replica.error = None

    async def _follow(self, replica: Replica) -> None:
        while True:
            started = time.monotonic()
            await self.poll(replica)
            await asyncio.sleep(max(0.0, self.interval - (time.monotonic() - started)))
