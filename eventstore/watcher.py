"""How far each projection's read models have come, known once per process: the checkpoint watcher.

A projection's read models *reach* a log position P when their committed tables reflect every
event up to P. That is true when the projection's committed checkpoint is at P or beyond, and
also when it is below P but no event of the projection's ``types`` lies between the checkpoint
and P: idle projections write their checkpoint at most once a second (see
``eventstore.projection_runner``), so a checkpoint row often lags behind what its tables already
show.

One :class:`CheckpointWatcher` per process follows every projection and wakes whoever waits for
a position (read-your-writes, reads at or after a position). It learns where they stand from
three sources, none of them per waiter:

* this process's :class:`~eventstore.projection_runner.ProjectionRunner` reports each commit,
  and the positions it has read past with nothing to apply, directly (:meth:`note_local`);
* on PostgreSQL, every change of a checkpoint row sends a NOTIFY from a trigger, in the
  checkpoint's own transaction, so it arrives only once the read models' writes are visible.
  The watcher listens on the event store's LISTEN connection (:meth:`EventStore.listen`). A
  (re)connection re-reads the whole table, because notifications may have been lost meanwhile,
  and while somebody waits the table is also read every ``fallback_interval`` seconds;
* on SQLite (and wherever the backend has no notifications) the table is read every
  ``poll_interval`` seconds while somebody waits: six rows, answered from the reader's cache
  while the file is unchanged.

When a waiter needs a position beyond what those say, the watcher asks the log once for the
first event of the projection's types after what it knows, for all waiters of that projection
at once (an index range on the position, two small queries); what it learns holds until the
projection passes that event, so the log is scanned only forward.

Listeners (:meth:`add_listener`) are told whenever a projection's reach moves, when the
watcher may miss moves from now on (its LISTEN connection is lost), and when it has read every
checkpoint again after a (re)connection: what a cache of read-model answers needs to know which
of them went stale (:mod:`eventstore.read_cache`). The watcher knows projections only by name
and types.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import json
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final, Protocol

from sqlalchemy.ext.asyncio import AsyncEngine

from eventstore.reader import reader_for
from eventstore.store import EventStore

log = logging.getLogger(__name__)

#: The checkpoint statuses the watcher needs to tell apart (as stored by the runner).
ACTIVE: Final = "active"
FAILED: Final = "failed"

#: What the local runner tells the watcher about a projection it may run.
LOCAL_RUNNING: Final = "running"  # this process leads it: its own reports are the truth
LOCAL_FAILED: Final = "failed"  # this process leads it and it stopped on an event
LOCAL_STARTING: Final = "starting"  # about to lead it, or retrying it: a failed row may clear
LOCAL_NONE: Final = "none"  # another process leads it, or nobody does

#: Abandoned waiters (timed out on a stuck projection) kept before the heap is cleaned.
_MAX_ABANDONED_WAITERS: Final = 10_000
_CHANNEL_PREFIX: Final = "projection_checkpoints_"


class Watched(Protocol):
    """What the watcher needs of a projection: its name and the event types it applies."""

    @property
    def name(self) -> str: ...

    @property
    def types(self) -> frozenset[str] | None: ...


@dataclass(frozen=True, slots=True)
class WaitResult:
    """The outcome of :meth:`CheckpointWatcher.wait`.

    ``reached`` is the lowest position the waited-for projections were known to reach when the
    wait ended (at least ``position`` when ``ok``); ``behind`` names those short of
    ``position``, and ``failed`` those of them that stopped on an event and will not get there
    until somebody retries them.
    """

    ok: bool
    position: int
    reached: int
    behind: tuple[str, ...] = ()
    failed: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Standing:
    """Where a projection stands, for copies of its tables (see :meth:`CheckpointWatcher.standing`).

    ``row`` is its checkpoint row's position as last read or notified. A copy whose row is at
    ``known`` or beyond reflects the log up to ``reach`` at least: no event of the projection's
    types lies between the two (the watcher keeps that true as it learns). A copy whose row is
    below ``known`` is known to reflect the log only up to its own row.
    """

    row: int
    known: int
    reach: int

    def reach_of_copy(self, copy_row: int) -> int:
        """How far a copy of the tables whose checkpoint row is at ``copy_row`` reaches."""
        return max(copy_row, self.reach) if copy_row >= self.known else copy_row


class _Waiters:
    """The waiters of one projection, each woken once its position is reached.

    A heap by position: one commit wakes exactly the waiters it satisfies, not every waiter to
    check again (at a thousand views a second, that was tens of thousands of wake-ups a second).
    """

    def __init__(self) -> None:
        self._heap: list[tuple[int, int, asyncio.Future[None]]] = []
        self._order = itertools.count()
        #: Waiters in :meth:`wait` now (the heap also holds abandoned ones until cleaned).
        self.active = 0

    def reached(self, position: int) -> None:
        heap = self._heap
        while heap and heap[0][0] <= position:
            future = heapq.heappop(heap)[2]
            if not future.done():
                future.set_result(None)

    def wake_all(self) -> None:
        heap, self._heap = self._heap, []
        for _position, _order, future in heap:
            if not future.done():
                future.set_result(None)

    async def wait(self, position: int, timeout: float) -> None:
        """Until the position is reached, :meth:`wake_all` or the timeout, whichever first."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._heap, (position, next(self._order), future))
        self.active += 1
        try:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await future
        finally:
            self.active -= 1
            if not future.done():
                future.cancel()
                if len(self._heap) > _MAX_ABANDONED_WAITERS:
                    self._heap = [w for w in self._heap if not w[2].done()]
                    heapq.heapify(self._heap)


#: Where a projection stands before anything is known of it: short of every position, even 0,
#: since a projection without a checkpoint has no tables yet.
_NOTHING: Final = -1


@dataclass(eq=False)
class _Tracked:
    name: str
    types: frozenset[str] | None
    #: The checkpoint as last read or notified (its row's position), or reported committed.
    committed: int = _NOTHING
    #: Where this process's runner has got: its commits, and what it read past as irrelevant.
    local: int = _NOTHING
    #: No event of ``types`` lies in (known, clear_to], as the log said.
    clear_to: int = _NOTHING
    #: The first event of ``types`` after ``clear_to``, if a scan of the log found one.
    next_relevant: int | None = None
    status: str | None = None  # the row's status; None before the row is seen
    local_state: str = LOCAL_NONE
    waiters: _Waiters = field(default_factory=_Waiters)
    #: The highest position a waiter wants the log scanned up to (see ``wait``'s ``scan``).
    scan_wanted: int = 0
    #: The last position at which the tables may have changed, as far as this process knows:
    #: its runner's commits that applied events, and any checkpoint move another process made.
    changed: int = _NOTHING

    @property
    def known(self) -> int:
        """Up to where the tables are known to reflect the log, from the checkpoint sources."""
        return max(self.committed, self.local)

    @property
    def reach(self) -> int:
        return max(self.committed, self.local, self.clear_to)

    @property
    def failed(self) -> bool:
        """Whether it stopped on an event and will stay there until somebody retries it."""
        if self.local_state == LOCAL_FAILED:
            return True
        if self.local_state in (LOCAL_RUNNING, LOCAL_STARTING):
            return False  # this process runs it (or is retrying it): its state is the truth
        return self.status == FAILED


MoveListener = Callable[[str, int], None]
ResetListener = Callable[[], None]
LostListener = Callable[[], None]

_SQL_ROWS: Final = {
    "sqlite": "SELECT name, position, status FROM projection_checkpoints",
    "postgresql": "SELECT name, position, status FROM projection_checkpoints",
}
_SQL_SCHEMA: Final = (
    "SELECT n.nspname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
    "WHERE c.oid = to_regclass('projection_checkpoints')"
)


def notify_channel(schema: str) -> str:
    """The NOTIFY channel of the checkpoint table in a PostgreSQL schema.

    The trigger (``eventstore.projection_checkpoints``) computes the same name from
    ``TG_TABLE_SCHEMA``.
    """
    import hashlib

    return _CHANNEL_PREFIX + hashlib.md5(schema.encode(), usedforsecurity=False).hexdigest()[:16]


class CheckpointWatcher:
    """Follows every projection's checkpoint in one place per process; see the module doc.

    ``projections`` are the projections whose positions can be waited for (a name and its
    ``types``, whether or not this process runs them). ``poll_interval`` is how often the
    checkpoint table is read while somebody waits and the backend sends no notifications;
    ``fallback_interval`` how often it is read anyway while somebody waits on a backend that
    does, in case a notification was lost.
    """

    def __init__(
        self,
        store: EventStore,
        engine: AsyncEngine,
        projections: Iterable[Watched],
        *,
        poll_interval: float = 0.02,
        fallback_interval: float = 1.0,
    ) -> None:
        self.store = store
        self.engine = engine
        self.poll_interval = poll_interval
        self.fallback_interval = fallback_interval
        self._tracked: dict[str, _Tracked] = {}
        for projection in projections:
            if projection.name in self._tracked:
                raise ValueError(f"two projections are named {projection.name!r}")
            self._tracked[projection.name] = _Tracked(projection.name, projection.types)
        self._listeners: list[tuple[MoveListener, ResetListener | None, LostListener | None]] = []
        self._kick = asyncio.Event()
        self._reload = True  # the table is read once before anything is trusted
        self._notified = False  # whether the backend sends notifications to this watcher
        self._connected = False  # whether its LISTEN connection is up now
        self._task: asyncio.Task[None] | None = None
        self._started = False
        self._stopping = False
        self.reloads = 0  # how many times the whole table was read (for tests and metrics)
        self.scans = 0  # how many times the log was asked for a projection's next event

    @property
    def names(self) -> list[str]:
        return list(self._tracked)

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        """Read the checkpoints and start following them; safe to call twice."""
        if self._started:
            return
        from eventstore.projection_checkpoints import setup_checkpoints

        self._started = True
        self._stopping = False
        await setup_checkpoints(self.engine)
        reader = reader_for(self.engine)
        if reader.dialect == "postgresql":
            rows = await reader.fetch(_SQL_SCHEMA)
            if rows and rows[0][0] is not None:
                self._notified = await self.store.listen(
                    notify_channel(str(rows[0][0])),
                    self._on_notify,
                    self._on_connect,
                    self._on_lost,
                )
        await self._read_rows()
        self._task = asyncio.get_running_loop().create_task(
            self._follow(), name="checkpoint-watcher"
        )

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            # Asked to end rather than cancelled first: cancelling a read that is opening a
            # connection leaves asyncpg's handshake future unretrieved, and asyncio logs it.
            self._stopping = True
            self._kick.set()
            await asyncio.wait([task], timeout=2.0)
            while not task.done():
                task.cancel()
                await asyncio.wait([task], timeout=1.0)
            if not task.cancelled() and task.exception() is not None:
                log.error("checkpoint watcher ended with %r", task.exception())
        for tracked in self._tracked.values():
            tracked.waiters.wake_all()
        self._started = False

    # -- what others tell us ---------------------------------------------------------------

    def note_local(self, name: str, position: int, *, changed: bool = True) -> None:
        """This process's runner committed up to ``position``, or read past it with nothing
        to apply (``changed=False``); either way its tables reflect the log up to there."""
        tracked = self._get(name)
        if position > tracked.local:
            before = tracked.reach
            tracked.local = position
            if changed:
                tracked.changed = position
            self._moved(tracked, before)

    def note_state(self, name: str, state: str) -> None:
        """What this process's runner is doing with the projection (``LOCAL_*``)."""
        tracked = self._get(name)
        if state != tracked.local_state:
            tracked.local_state = state
            tracked.waiters.wake_all()  # to judge again: it may have failed or recovered

    @property
    def live(self) -> bool:
        """Whether every checkpoint move reaches this process now, by notification: the
        backend sends them and the LISTEN connection is up."""
        return self._notified and self._connected and self._started

    def add_listener(
        self,
        on_move: MoveListener,
        on_reset: ResetListener | None = None,
        on_lost: LostListener | None = None,
    ) -> Callable[[], None]:
        """Call ``on_move(name, reach)`` when a projection's reach moves, ``on_lost()`` when
        moves may be missed from now on (the LISTEN connection is gone), and ``on_reset()`` once
        every checkpoint has been read again after moves may have been missed; returns a
        function that removes them."""
        entry = (on_move, on_reset, on_lost)
        self._listeners.append(entry)

        def remove() -> None:
            with contextlib.suppress(ValueError):
                self._listeners.remove(entry)

        return remove

    def _on_notify(self, payload: str) -> None:
        try:
            row = json.loads(payload)
            name, position, status = str(row["name"]), int(row["position"]), str(row["status"])
        except (ValueError, KeyError, TypeError):
            log.warning("checkpoint watcher: ignoring notification %r", payload[:200])
            return
        self._apply_row(name, position, status)

    def _on_connect(self) -> None:
        # Notifications sent while we were not listening are lost: read the table again.
        self._connected = True
        self._reload = True
        self._kick.set()

    def _on_lost(self) -> None:
        self._connected = False
        for _on_move, _on_reset, on_lost in tuple(self._listeners):
            if on_lost is not None:
                try:
                    on_lost()
                except Exception:
                    log.exception("checkpoint watcher: a listener failed")

    # -- where things stand ----------------------------------------------------------------

    def reach(self, name: str) -> int:
        """The highest position the projection's tables are known to reflect (-1: no tables)."""
        return self._get(name).reach

    def changed(self, name: str) -> int:
        """The last position at which the projection's tables may have changed, as far as
        this process knows: its own runner's commits that applied events, and every
        checkpoint move made by another process. Unlike :meth:`reach`, not moved by positions
        read past with nothing to apply, or found irrelevant by a scan of the log."""
        return self._get(name).changed

    def reaches(self) -> dict[str, int]:
        return {name: tracked.reach for name, tracked in self._tracked.items()}

    def standing(self) -> dict[str, Standing]:
        """Where each projection stands, as a router choosing among copies of the tables
        (streaming replicas, whose checkpoint rows replicate with them) needs it."""
        return {
            name: Standing(tracked.committed, tracked.known, tracked.reach)
            for name, tracked in self._tracked.items()
        }

    def affected(self, types: Iterable[str]) -> list[str]:
        """The projections that apply at least one of these event types."""
        wanted = set(types)
        return [
            name
            for name, tracked in self._tracked.items()
            if tracked.types is None or not wanted.isdisjoint(tracked.types)
        ]

    async def wait(
        self, position: int, names: Iterable[str] | None = None, timeout: float = 5.0
    ) -> WaitResult:
        """Wait until the named projections (default: all) reach ``position``, at most
        ``timeout`` seconds; give up at once when one of them is failed short of it."""
        chosen = names if names is not None else self._tracked
        return await self.wait_each({name: position for name in chosen}, timeout)

    async def wait_each(
        self, targets: Mapping[str, int], timeout: float, *, scan: bool = True
    ) -> WaitResult:
        """Wait until each named projection reaches its own position, at most ``timeout``
        seconds in all; give up at once when one of them is failed short of its position.

        ``scan=False`` says that an event of each projection's types lies at its position
        (the waiter wrote it), so asking the log whether the projection has anything to do
        before that position would be wasted: its checkpoint has to pass the event anyway.
        """
        chosen = [(self._get(name), position) for name, position in targets.items()]
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        for tracked, position in chosen:
            while tracked.reach < position:
                remaining = deadline - loop.time()
                if tracked.failed or remaining <= 0:
                    return self._result(chosen)
                if scan and position > tracked.scan_wanted:
                    tracked.scan_wanted = position
                if not self._kick.is_set():
                    self._kick.set()  # the follower polls or scans for what waiters want
                await tracked.waiters.wait(position, remaining)
        return self._result(chosen)

    @staticmethod
    def _result(chosen: Sequence[tuple[_Tracked, int]]) -> WaitResult:
        behind = [(t, p) for t, p in chosen if t.reach < p]
        return WaitResult(
            ok=not behind,
            position=max((p for _t, p in chosen), default=0),
            reached=max(0, min((t.reach for t, _p in behind or chosen), default=0)),
            behind=tuple(t.name for t, _p in behind),
            failed=tuple(t.name for t, _p in behind if t.failed),
        )

    def _get(self, name: str) -> _Tracked:
        try:
            return self._tracked[name]
        except KeyError:
            raise KeyError(f"no projection named {name!r} is watched") from None

    # -- bookkeeping -----------------------------------------------------------------------

    def _apply_row(self, name: str, position: int, status: str) -> None:
        tracked = self._tracked.get(name)
        if tracked is None:
            return  # a projection this code does not know (another version's)
        if status != tracked.status:
            tracked.status = status
            tracked.waiters.wake_all()
        if position > tracked.committed:
            before = tracked.reach
            tracked.committed = position
            if position > tracked.local:
                # Moved by another process (or before this one's runner said so): what it
                # applied on the way is unknown here.
                tracked.changed = max(tracked.changed, position)
            self._moved(tracked, before)

    def _moved(self, tracked: _Tracked, before: int) -> None:
        known = tracked.known
        if tracked.next_relevant is not None and tracked.next_relevant <= known:
            tracked.next_relevant = None  # passed: what lies beyond is unknown again
        reach = tracked.reach
        if reach <= before:
            return
        tracked.waiters.reached(reach)
        for on_move, _on_reset, _on_lost in tuple(self._listeners):
            try:
                on_move(tracked.name, reach)
            except Exception:
                log.exception("checkpoint watcher: a listener failed")

    # -- the follower task -----------------------------------------------------------------

    async def _follow(self) -> None:
        loop = asyncio.get_running_loop()
        last_read = loop.time()
        interval = self.fallback_interval if self._notified else self.poll_interval
        while not self._stopping:
            # Nobody waits: only notifications and reconnections matter until somebody does.
            pause = last_read + interval - loop.time() if self._waited_for() else 3600.0
            if pause > 0:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(pause):
                        await self._kick.wait()
            self._kick.clear()
            if self._stopping:
                return
            try:
                if self._reload or (self._waited_for() and loop.time() - last_read >= interval):
                    await self._read_rows()
                    last_read = loop.time()
                for tracked, wanted in self._to_scan():
                    await self._scan(tracked, wanted)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                # The database may be gone for a while: waiters time out, we try again.
                log.warning("checkpoint watcher: %s: %s", type(exc).__name__, exc)
                await asyncio.sleep(min(1.0, max(self.poll_interval, 0.1)))
                self._kick.set()

    def _waited_for(self) -> bool:
        return any(t.waiters.active for t in self._tracked.values())

    def _to_scan(self) -> list[tuple[_Tracked, int]]:
        """The projections a waiter wants the log scanned for, with how far."""
        return [
            (t, t.scan_wanted)
            for t in self._tracked.values()
            if t.waiters.active and t.scan_wanted > t.reach
        ]

    async def _read_rows(self) -> None:
        reset = self._reload
        self._reload = False  # a reconnection during the read asks for another
        reader = reader_for(self.engine)
        try:
            rows = await reader.fetch(_SQL_ROWS[reader.dialect])
        except BaseException:
            self._reload = self._reload or reset  # the next try reads (and resets) instead
            raise
        self.reloads += 1
        for name, position, status in rows:
            self._apply_row(str(name), int(position), str(status))
        if reset:
            for _on_move, on_reset, _on_lost in tuple(self._listeners):
                if on_reset is not None:
                    try:
                        on_reset()
                    except Exception:
                        log.exception("checkpoint watcher: a listener failed")

    async def _scan(self, tracked: _Tracked, wanted: int) -> None:
        """Ask the log whether an event of the projection's types lies before ``wanted``."""
        start = tracked.reach
        if tracked.next_relevant is not None and tracked.next_relevant > tracked.known:
            return  # the projection has to apply that event first: its checkpoint will say
        if tracked.failed or tracked.status is None or start < 0:
            return  # no tables, or stopped: nothing to learn from the log
        self.scans += 1
        head = await self.store.head_position()
        to = min(wanted, head)
        if to <= start:
            return
        if tracked.types is None:
            first: int | None = start + 1
        else:
            first = None
            async for event in self.store.read_all(
                start, limit=1, types=tracked.types, to_position=to
            ):
                first = event.position
        # Judged against what is known now: the projection may have moved during the awaits.
        before = tracked.reach
        if first is None:
            tracked.clear_to = max(tracked.clear_to, to)
        elif first > tracked.known:
            tracked.clear_to = max(tracked.clear_to, first - 1)
            tracked.next_relevant = first
        self._moved(tracked, before)
