"""The live hub: one feed of the event store per process, shared by every subscriber.

One task follows ``store.subscribe`` for ``Viewed``, ``ViewsImported``, ``ViewsRecorded`` (a
batch, counted as the views it holds), ``StatementPublished``
and ``StatementWithdrawn`` from the head at start; nothing is re-queried per subscriber.

* **View counts.** Only statements somebody subscribes to are tracked. The first subscriber of a
  statement reads its count *and* the views projection's checkpoint in one SQL statement (the
  projection writes both in one transaction, so they agree): the count covers exactly the events
  up to the checkpoint ``q``. If the hub's feed is already past ``q`` the views in between are
  added from a bounded buffer of recent view events; events at or before ``q`` are never added
  again. After that each ``Viewed`` adds 1, each ``ViewsImported`` its count and each batch
  its views of the statement.
* **Coalescing.** Changes are published once per tick (250 ms by default): a statement viewed
  1,000 times a second sends one message per tick with the exact count, and since a change
  always marks the statement dirty, the last message carries the final value.
* **topViewed(first, window)** is recomputed from the read model at most once per tick per
  distinct ``(first, window)``, only after a view event, and published only when it differs. It
  stays dirty until the views projection's checkpoint covers the last event seen, so the last
  list published is the final one.
* **Mailboxes.** Each subscriber has a mailbox that keeps only the latest value (published
  statements: a short queue that drops the oldest), so the hub never waits for a subscriber and
  a slow consumer only misses intermediate values.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import enum
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any, Final, Generic, TypeVar

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from domain.events import StatementPublished, StatementWithdrawn
from eventstore import EventStore, RecordedEvent
from projections.common import decode, type_name
from projections.queries import ReadModels
from projections.views import VIEW_TYPES, ViewsProjection, batch_views, counted_views

log = logging.getLogger(__name__)

T = TypeVar("T")

DEFAULT_TICK: Final = 0.25
DEFAULT_BUFFER_EVENTS: Final = 200_000
PUBLISHED_QUEUE: Final = 100
VIEWS_PROJECTION: Final = ViewsProjection.name
_PUBLISHED: Final = type_name(StatementPublished)
_WITHDRAWN: Final = type_name(StatementWithdrawn)
FEED_TYPES: Final = (*sorted(VIEW_TYPES), _PUBLISHED, _WITHDRAWN)


class ViewWindow(enum.Enum):
    """Which views count for a ranking: all of them, or those of the last days (UTC)."""

    ALL = "ALL"
    DAY = "DAY"
    WEEK = "WEEK"
    MONTH = "MONTH"

    def since(self, today: date) -> date | None:
        days = {ViewWindow.ALL: None, ViewWindow.DAY: 1, ViewWindow.WEEK: 7, ViewWindow.MONTH: 30}
        span = days[self]
        return None if span is None else today - timedelta(days=span - 1)


@dataclass(frozen=True, slots=True)
class CountUpdate:
    """A statement's exact view count; ``at`` is when the last view it includes was recorded."""

    statement_id: str
    view_count: int
    at: datetime
    position: int


@dataclass(frozen=True, slots=True)
class RankedStatement:
    statement_id: str
    slug: str
    title: str
    view_count: int


@dataclass(frozen=True, slots=True)
class Published:
    statement_id: str
    slug: str
    title: str
    kind: str
    minister_name: str
    published_at: datetime
    position: int


class Mailbox(Generic[T]):
    """Holds the latest value only: ``put`` never waits, ``get`` waits for a new value."""

    __slots__ = ("_event", "_value")

    def __init__(self) -> None:
        self._event = asyncio.Event()
        self._value: T | None = None

    def put(self, value: T) -> None:
        self._value = value
        self._event.set()

    async def get(self) -> T:
        await self._event.wait()
        self._event.clear()
        value = self._value
        assert value is not None
        return value


class _Queue(Generic[T]):
    """A bounded queue that drops the oldest item when full; ``put`` never waits."""

    __slots__ = ("_event", "_items")

    def __init__(self, size: int) -> None:
        self._items: collections.deque[T] = collections.deque(maxlen=size)
        self._event = asyncio.Event()

    def put(self, value: T) -> None:
        self._items.append(value)
        self._event.set()

    async def get(self) -> T:
        while not self._items:
            self._event.clear()
            await self._event.wait()
        return self._items.popleft()


@dataclass(eq=False)
class _Tracked:
    """One statement's count, shared by all its subscribers."""

    statement_id: str
    count: int = 0
    applied_through: int = 0
    at: datetime = field(default_factory=lambda: datetime.now(UTC))
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    failed: BaseException | None = None
    mailboxes: set[Mailbox[CountUpdate]] = field(default_factory=set)
    loader: asyncio.Task[None] | None = None

    def update(self) -> CountUpdate:
        return CountUpdate(self.statement_id, self.count, self.at, self.applied_through)


@dataclass(eq=False)
class _Ranking:
    """One (first, window) ranking, shared by all its subscribers."""

    first: int
    window: ViewWindow
    value: tuple[RankedStatement, ...] | None = None
    dirty_through: int = 0
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    mailboxes: set[Mailbox[tuple[RankedStatement, ...]]] = field(default_factory=set)


RankingSource = Callable[[int, date | None], Awaitable[list[RankedStatement]]]


class LiveHub:
    """The process's live state; ``start()`` it in the app's lifespan and ``stop()`` it after."""

    def __init__(
        self,
        store: EventStore,
        engine: AsyncEngine,
        *,
        ranking: RankingSource | None = None,
        tick: float = DEFAULT_TICK,
        buffer_events: int = DEFAULT_BUFFER_EVENTS,
        load_timeout: float = 30.0,
    ) -> None:
        self.store = store
        self.engine = engine
        self.read_models = ReadModels(engine)
        self.tick = tick
        self.load_timeout = load_timeout
        self._ranking_source = ranking or self._default_ranking
        self._position = 0
        self._recent: collections.deque[tuple[int, str, int]] = collections.deque()
        self._recent_max = buffer_events
        self._recent_floor = 0  # every view event after this position is in _recent
        self._tracked: dict[str, _Tracked] = {}
        self._dirty: set[_Tracked] = set()
        self._rankings: dict[tuple[int, ViewWindow], _Ranking] = {}
        self._published: set[_Queue[Published]] = set()
        self._tasks: list[asyncio.Task[None]] = []
        self._started = asyncio.Event()
        self.subscribers = 0

    # -- lifecycle ------------------------------------------------------------------------

    async def start(self) -> None:
        self._position = self._recent_floor = await self.store.head_position()
        self._tasks = [
            asyncio.create_task(self._feed(), name="live-hub-feed"),
            asyncio.create_task(self._ticker(), name="live-hub-ticker"),
        ]
        self._started.set()

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks = []

    @property
    def position(self) -> int:
        """The position of the last event the feed has applied."""
        return self._position

    # -- the feed -------------------------------------------------------------------------

    async def _feed(self) -> None:
        while True:
            try:
                async for record in self.store.subscribe(self._position, types=FEED_TYPES):
                    self.apply(record)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("live hub: the feed failed; resuming in 1 s")
                await asyncio.sleep(1.0)

    def apply(self, record: RecordedEvent) -> None:
        """Fold one event into the live state (the feed calls this, in log order)."""
        if record.position <= self._position:
            return
        kind = record.type
        if kind in VIEW_TYPES:
            counted = counted_views(record)
            pairs: tuple[tuple[str, int], ...]
            if counted is not None:
                pairs = (counted,)
            else:
                # A batch: its views summed per statement, so each statement moves once.
                per_statement: collections.Counter[str] = collections.Counter()
                for (batch_statement, _day), n in batch_views(record).items():
                    per_statement[batch_statement] += n
                pairs = tuple(per_statement.items())
            # Inline, not a method: this runs for every view event the log takes.
            for statement_id, count in pairs:
                recent = self._recent
                if len(recent) >= self._recent_max:
                    self._recent_floor = recent.popleft()[0]
                recent.append((record.position, statement_id, count))
                tracked = self._tracked.get(statement_id)
                if (
                    tracked is not None
                    and tracked.ready.is_set()
                    and record.position > tracked.applied_through
                ):
                    tracked.count += count
                    tracked.applied_through = record.position
                    tracked.at = record.recorded_at
                    self._dirty.add(tracked)
            if pairs:
                for ranking in self._rankings.values():
                    ranking.dirty_through = record.position
        elif kind == _WITHDRAWN:
            for ranking in self._rankings.values():
                ranking.dirty_through = record.position
        elif kind == _PUBLISHED:
            published = _published(record)
            if published is not None:
                for queue in self._published:
                    queue.put(published)
        self._position = record.position

    # -- the tick -------------------------------------------------------------------------

    async def _ticker(self) -> None:
        while True:
            await asyncio.sleep(self.tick)
            try:
                await self.flush()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("live hub: a tick failed")

    async def flush(self) -> None:
        """Publish what changed since the last tick (the ticker calls this every tick)."""
        self.publish_counts()
        # A ranking still being computed for its first subscriber is left alone: its value
        # would be overwritten by that older computation. It stays dirty for the next tick.
        stale = [r for r in self._rankings.values() if r.dirty_through > 0 and r.ready.is_set()]
        if stale:
            checkpoint = await self._checkpoint()
            await asyncio.gather(*(self._refresh(r, checkpoint) for r in stale))

    def publish_counts(self) -> None:
        """Put the count of every statement that changed into its subscribers' mailboxes."""
        dirty, self._dirty = self._dirty, set()
        for tracked in dirty:
            update = tracked.update()
            for mailbox in tracked.mailboxes:
                mailbox.put(update)

    async def _refresh(self, ranking: _Ranking, checkpoint: int) -> None:
        through = ranking.dirty_through
        value = await self._rank(ranking)
        # The read model covered every event seen so far: nothing newer to wait for. Otherwise
        # it stays dirty, and the next tick reads it again.
        if checkpoint >= through and ranking.dirty_through == through:
            ranking.dirty_through = 0
        if value != ranking.value:
            ranking.value = value
            for mailbox in ranking.mailboxes:
                mailbox.put(value)

    async def _rank(self, ranking: _Ranking) -> tuple[RankedStatement, ...]:
        since = ranking.window.since(datetime.now(UTC).date())
        return tuple(await self._ranking_source(ranking.first, since))

    async def _default_ranking(self, first: int, since: date | None) -> list[RankedStatement]:
        rows = await self.read_models.most_viewed(first, since)
        return [RankedStatement(row.id, row.slug, row.title, views) for row, views in rows]

    # -- reading the read model -----------------------------------------------------------

    async def _checkpoint(self) -> int:
        return await self.read_models.checkpoint(VIEWS_PROJECTION)

    async def _snapshot(self, statement_id: str) -> tuple[int, int]:
        """(count, checkpoint) of one statement, read together in one statement."""
        return await self.read_models.view_count_at_checkpoint(statement_id)

    async def _load(self, tracked: _Tracked) -> None:
        deadline = time.monotonic() + self.load_timeout
        while True:
            try:
                count, checkpoint = await self._snapshot(tracked.statement_id)
            except sa.exc.DBAPIError:
                # E.g. the views projection has not created its tables yet on a new database.
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.1)
                continue
            # No await from here on: the feed cannot move between the check and the update.
            head = self._position
            if checkpoint >= head:
                tracked.count, tracked.applied_through = count, checkpoint
                break
            if self._recent_floor <= checkpoint:
                sid = tracked.statement_id
                tracked.count = count + sum(
                    n for p, s, n in self._recent if s == sid and checkpoint < p <= head
                )
                tracked.applied_through = head
                break
            if time.monotonic() > deadline:
                raise TimeoutError("the views projection is too far behind the live feed")
            await asyncio.sleep(0.05)
        tracked.at = datetime.now(UTC)
        tracked.ready.set()

    # -- subscribing ----------------------------------------------------------------------

    async def _load_safely(self, tracked: _Tracked) -> None:
        try:
            await self._load(tracked)
        except Exception as exc:
            log.warning("live hub: loading the count of %s failed: %s", tracked.statement_id, exc)
            tracked.failed = exc
            if self._tracked.get(tracked.statement_id) is tracked:
                del self._tracked[tracked.statement_id]
            tracked.ready.set()

    async def view_counts(self, statement_id: str) -> AsyncIterator[CountUpdate]:
        """The statement's count now, then after every tick in which it changed."""
        await self._started.wait()
        tracked = self._tracked.get(statement_id)
        if tracked is None:
            tracked = self._tracked[statement_id] = _Tracked(statement_id)
            tracked.loader = asyncio.create_task(self._load_safely(tracked), name="live-hub-load")
        mailbox: Mailbox[CountUpdate] = Mailbox()
        tracked.mailboxes.add(mailbox)
        self.subscribers += 1
        try:
            await tracked.ready.wait()
            if tracked.failed is not None:
                raise RuntimeError("the view count could not be loaded") from tracked.failed
            sent = tracked.update()
            yield sent
            while True:
                update = await mailbox.get()
                # A tick between the load and this subscriber's first value may have left an
                # older count in the mailbox; sending it would make the count go down.
                if update.position > sent.position:
                    sent = update
                    yield update
        finally:
            self.subscribers -= 1
            tracked.mailboxes.discard(mailbox)
            if not tracked.mailboxes and self._tracked.get(statement_id) is tracked:
                del self._tracked[statement_id]
                self._dirty.discard(tracked)
                if tracked.loader is not None and not tracked.loader.done():
                    tracked.loader.cancel()

    async def top_viewed(
        self, first: int, window: ViewWindow
    ) -> AsyncIterator[tuple[RankedStatement, ...]]:
        """The ranking now, then whenever it changes (checked at most once per tick)."""
        await self._started.wait()
        key = (first, window)
        ranking = self._rankings.get(key)
        if ranking is None:
            ranking = self._rankings[key] = _Ranking(first, window)
        mailbox: Mailbox[tuple[RankedStatement, ...]] = Mailbox()
        ranking.mailboxes.add(mailbox)
        self.subscribers += 1
        try:
            if ranking.value is None:
                if len(ranking.mailboxes) == 1 and not ranking.ready.is_set():
                    try:
                        ranking.value = await self._rank(ranking)
                    finally:
                        ranking.ready.set()
                await ranking.ready.wait()
            if ranking.value is None:
                raise RuntimeError("the ranking could not be computed")
            yield ranking.value
            while True:
                yield await mailbox.get()
        finally:
            self.subscribers -= 1
            ranking.mailboxes.discard(mailbox)
            if not ranking.mailboxes and self._rankings.get(key) is ranking:
                del self._rankings[key]

    async def published(self) -> AsyncIterator[Published]:
        """Each statement published from now on."""
        await self._started.wait()
        queue: _Queue[Published] = _Queue(PUBLISHED_QUEUE)
        self._published.add(queue)
        self.subscribers += 1
        try:
            while True:
                yield await queue.get()
        finally:
            self.subscribers -= 1
            self._published.discard(queue)

    def stats(self) -> dict[str, Any]:
        return {
            "position": self._position,
            "tracked": len(self._tracked),
            "rankings": len(self._rankings),
            "subscribers": self.subscribers,
        }


def _published(record: RecordedEvent) -> Published | None:
    """The record as the ``statementPublished`` feed sends it; None (logged) if it can't be read.

    Decoded by the projections' registry, so old schema versions are upcast as they are for
    the read models; a record that can't be decoded is skipped rather than stalling the feed.
    """
    try:
        event = decode(record)
    except Exception:
        log.exception("live hub: event %d could not be decoded; not sent", record.position)
        return None
    assert isinstance(event, StatementPublished)
    return Published(
        statement_id=event.statement_id,
        slug=event.slug,
        title=event.title,
        kind=event.kind,
        minister_name=event.minister.name,
        published_at=event.published_at,
        position=record.position,
    )
