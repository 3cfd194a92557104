"""The projection runner: one task per projection, catching up from its checkpoint and then
following the log live, leading it alone on PostgreSQL and rebuilding it when its version changes.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Final

from sqlalchemy.ext.asyncio import AsyncEngine

from eventstore.leader import LeaderElection, leader_election_for
from eventstore.projection import Projection, ProjectionError, TableNames, describe_error
from eventstore.projection_batches import bisect_batch, event_error, read_batches
from eventstore.projection_checkpoints import (
    FAILED,
    REBUILDING,
    CheckpointMoved,
    CheckpointRow,
    LostLeadership,
    ProjectionStatus,
    ensure_checkpoint,
    load_checkpoint,
    mark_failed,
    move_statement,
    projection_status,
    retry_projection,
    setup_checkpoints,
    write_transaction,
)
from eventstore.rebuild import rebuild, rebuild_projection
from eventstore.records import RecordedEvent
from eventstore.store import EventStore, now_us
from eventstore.watcher import (
    LOCAL_FAILED,
    LOCAL_NONE,
    LOCAL_RUNNING,
    LOCAL_STARTING,
    CheckpointWatcher,
)

log = logging.getLogger(__name__)

#: How often at most an idle projection (nothing of its types arrived) writes its checkpoint.
IDLE_CHECKPOINT_INTERVAL: Final = 1.0


async def _wait_event(event: asyncio.Event, timeout: float) -> None:
    """Wait for an event at most ``timeout`` seconds.

    Not asyncio.wait_for: on Python 3.11 it can swallow a cancellation that arrives just as
    the event is set, and a task that misses its cancellation never stops.
    """
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(timeout):
            await event.wait()


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
                    describe_error(result),
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
                describe_error(error),
                backoff,
                exc_info=error,
            )
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, high)

    async def _lead(self, worker: _Worker) -> None:
        """Run the projection while this process leads it; returns when leadership is lost."""
        projection = worker.projection
        name = projection.name
        checkpoint = await ensure_checkpoint(self.engine, projection)
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
            except CheckpointMoved:
                pass
            except LostLeadership:
                return
            checkpoint = await self._reload(name)

    async def _reload(self, name: str) -> CheckpointRow:
        async with self.engine.connect() as conn:
            checkpoint = await load_checkpoint(conn, name)
        if checkpoint is None:
            raise CheckpointMoved(f"the checkpoint row of {name!r} disappeared")
        return checkpoint

    async def _wait_for_retry(self, worker: _Worker) -> CheckpointRow:
        # Polled as well as woken: a retry may come from another process (the CLI).
        worker.wake.clear()
        await _wait_event(worker.wake, self.failed_poll_interval)
        return await self._reload(worker.projection.name)

    async def _auto_rebuild(self, worker: _Worker) -> CheckpointRow:
        projection = worker.projection
        worker.set_state(REBUILDING)
        try:
            await rebuild_projection(
                self.store,
                self.engine,
                projection,
                batch_size=self.rebuild_batch_size,
                only_if_stale=True,
            )
        except ProjectionError as exc:
            log.error("projection %s: rebuild failed: %s", projection.name, exc)
            await mark_failed(
                self.engine,
                projection.name,
                f"rebuild to version {projection.version} failed: {describe_error(exc.cause)}",
                exc.position,
            )
        return await self._reload(projection.name)

    async def _follow(self, worker: _Worker) -> None:
        """Catch up, then follow the log; raises CheckpointMoved or LostLeadership to stop."""
        name = worker.projection.name
        store = self.store
        loop = asyncio.get_running_loop()
        wait = min(store.poll_interval, self.lock_retry_interval)
        while True:
            if not self.election.holds(name):
                raise LostLeadership(name)
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
            read_batches(self.store, start, head, projection.types, self.batch_size)
        ) as batches:
            async for events, end in batches:
                if not self.election.holds(projection.name):
                    raise LostLeadership(projection.name)
                if not events and loop.time() - worker.committed_at < IDLE_CHECKPOINT_INTERVAL:
                    # Nothing for this projection: note it in memory, and write the checkpoint
                    # at most once a second, so that idle projections do not take the database
                    # write lock (on SQLite, the only one) for every event somebody appends.
                    worker.moved(end, applied=False)
                    continue
                failure = await bisect_batch(commit, events, end)
                if failure is not None:
                    event, exc = failure
                    log.error(
                        "projection %s: stopped at position %d: %s",
                        projection.name,
                        event.position,
                        describe_error(exc),
                        exc_info=exc,
                    )
                    await mark_failed(
                        self.engine,
                        projection.name,
                        event_error(event, exc),
                        event.position,
                        move=(worker.position, event.position - 1),
                    )
                    raise CheckpointMoved(projection.name)

    async def _commit(self, worker: _Worker, events: Sequence[RecordedEvent], end: int) -> None:
        """Apply events and move the checkpoint to ``end`` in one transaction."""
        projection = worker.projection
        async with write_transaction(self.engine) as conn:
            moved = await conn.execute(
                move_statement(),
                {
                    "k_name": projection.name,
                    "k_from": worker.position,
                    "k_version": projection.version,
                    "k_to": end,
                    "k_at": now_us(),
                },
            )
            if moved.rowcount != 1:
                raise CheckpointMoved(projection.name)
            if events:
                await projection.apply(conn, events, worker.tables)
        worker.position = end
        worker.committed_at = asyncio.get_running_loop().time()
        worker.moved(end, applied=bool(events))
