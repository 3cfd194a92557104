"""The event store contract and what all backends share: validation, group commit, following."""

from __future__ import annotations

import abc
import asyncio
import collections
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Iterable, Sequence
from types import TracebackType
from typing import Self
from uuid import UUID

from eventstore.errors import ConcurrencyError, InvalidAppendError, StoreUnavailableError
from eventstore.planning import EncodedEvent, Outcome, PendingAppend, Row, version_matches
from eventstore.records import (
    ANY,
    AppendResult,
    Checkpoint,
    ExpectedVersion,
    NewEvent,
    RecordedEvent,
    StreamState,
    canonical_json,
)

MAX_STREAM_ID_LENGTH = 500
DEFAULT_PAGE_SIZE = 1000
#: Streams per query of ``load_streams``: far below SQLite's and asyncpg's parameter limits.
STREAMS_PER_READ = 500
#: Events that may wait for the group commit before appends are refused as overloaded.
DEFAULT_MAX_PENDING_EVENTS = 100_000


class Notifier:
    """Wakes readers when the log grows; a generation counter closes the check-then-wait race."""

    def __init__(self) -> None:
        self.generation = 0
        # Made by the first waiter and dropped when set: every commit notifies, and most
        # have nobody waiting (an Event per commit was ~1 µs of a lone append).
        self._event: asyncio.Event | None = None

    def notify(self) -> None:
        self.generation += 1
        event, self._event = self._event, None
        if event is not None:
            event.set()

    async def wait(self, generation: int, timeout: float) -> None:
        if self.generation != generation:
            return
        event = self._event
        if event is None:
            event = self._event = asyncio.Event()
        # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancellation that
        # arrives as the wake-up fires, and a subscriber would then not stop when told to.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await event.wait()


#: A backend's write of one request in the caller's own task, or None to use the queue instead.
DirectWrite = Callable[[PendingAppend], Awaitable[Outcome | None]]


class GroupCommitter:
    """Batches concurrent appends into one transaction; each caller still gets its own outcome.

    The queue is bounded: when ``max_pending_events`` events already wait for a commit, a new
    append fails at once with a retryable :class:`StoreUnavailableError` ("overloaded")
    instead of waiting, so load above capacity costs fast rejections, not unbounded memory.

    A lone sequential client would pay for a task and two extra turns of the event loop per
    append (about 45 µs of a 300 µs append) to have its single request batched with nobody.
    So when the committer is idle and the last write had no company, a backend that offers a
    ``direct`` write runs the request in the caller's own task. The backend promises that
    cancelling that task never leaves a write half done, and it serializes the direct write
    with the drain task's batches itself (the SQLite file lock, the PostgreSQL writer
    connection). As soon as a second request arrives during a write, later appends go
    through the queue again, so concurrent clients keep their group commit.
    """

    def __init__(
        self,
        write: Callable[[list[PendingAppend]], Awaitable[list[Outcome]]],
        on_commit: Callable[[], None],
        max_batch_events: int,
        max_pending_events: int = DEFAULT_MAX_PENDING_EVENTS,
        direct: DirectWrite | None = None,
    ) -> None:
        self._write = write
        self._on_commit = on_commit
        self._max = max_batch_events
        self.max_pending_events = max_pending_events
        self._queue: collections.deque[PendingAppend] = collections.deque()
        self._pending_events = 0
        self._task: asyncio.Task[None] | None = None
        self._direct = direct
        self._direct_busy = False
        # Whether the last write had company (a batch of several, or requests that queued
        # meanwhile): then the queue's gathering is worth its cost.
        self._contended = False

    @property
    def pending_events(self) -> int:
        """Events queued and not yet taken into a batch."""
        return self._pending_events

    async def submit(self, request: PendingAppend) -> AppendResult:
        count = len(request.events)
        if self._queue and self._pending_events + count > self.max_pending_events:
            raise StoreUnavailableError(
                f"overloaded: {self._pending_events:,} events already wait for a commit "
                f"(limit {self.max_pending_events:,}); retry later"
            )
        if (
            self._direct is not None
            and not self._contended
            and not self._direct_busy
            and not self._queue
            and (self._task is None or self._task.done())
        ):
            outcome = await self._submit_direct(self._direct, request)
            if outcome is not None:
                if isinstance(outcome, Exception):
                    raise outcome
                return outcome
        loop = asyncio.get_running_loop()
        future: asyncio.Future[AppendResult] = loop.create_future()
        request.future = future
        self._queue.append(request)
        self._pending_events += count
        self._start_drain()
        return await future

    async def submit_many(self, requests: Sequence[PendingAppend]) -> list[Outcome]:
        """Queue all ``requests`` at once, so that they go out together in as few transactions
        as the batch size allows; each gets its own outcome, an exception in its place."""
        count = sum(len(request.events) for request in requests)
        if self._queue and self._pending_events + count > self.max_pending_events:
            raise StoreUnavailableError(
                f"overloaded: {self._pending_events:,} events already wait for a commit "
                f"(limit {self.max_pending_events:,}); retry later"
            )
        loop = asyncio.get_running_loop()
        futures: list[asyncio.Future[AppendResult]] = []
        for request in requests:
            request.future = loop.create_future()
            futures.append(request.future)
            self._queue.append(request)
        self._pending_events += count
        # Company by construction: the queue's batching is the point.
        self._contended = True
        self._start_drain()
        return list(await asyncio.gather(*futures, return_exceptions=True))  # type: ignore[arg-type]

    async def _submit_direct(self, direct: DirectWrite, request: PendingAppend) -> Outcome | None:
        self._direct_busy = True
        try:
            outcome = await direct(request)
        finally:
            self._direct_busy = False
            if self._queue:
                self._contended = True
                self._start_drain()
        if outcome is not None:
            self._on_commit()
        return outcome

    def _start_drain(self) -> None:
        if not self._direct_busy and (self._task is None or self._task.done()):
            self._task = asyncio.get_running_loop().create_task(
                self._drain(), name="eventstore-group-commit"
            )

    async def _drain(self) -> None:
        # Requests that arrive while a batch is being committed wait for the next one: that is
        # what turns many concurrent fsyncs into one.
        while self._queue:
            batch: list[PendingAppend] = []
            size = 0
            while self._queue and (not batch or size + len(self._queue[0].events) <= self._max):
                request = self._queue.popleft()
                self._pending_events -= len(request.events)
                if request.future is not None and request.future.done():
                    continue  # its caller was cancelled before the write began
                batch.append(request)
                size += len(request.events)
            if not batch:
                continue
            try:
                outcomes = await self._write(batch)
            except Exception as exc:
                for request in batch:
                    _settle(request, exc)
                continue
            finally:
                self._contended = len(batch) > 1 or bool(self._queue)
            for request, outcome in zip(batch, outcomes, strict=True):
                _settle(request, outcome)
            self._on_commit()

    async def close(self) -> None:
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)


def _settle(request: PendingAppend, outcome: Outcome) -> None:
    future = request.future
    if future is None or future.done():
        return
    if isinstance(outcome, Exception):
        future.set_exception(outcome)
    else:
        future.set_result(outcome)


def encode_events(stream_id: str, events: Sequence[NewEvent]) -> list[EncodedEvent]:
    if not isinstance(stream_id, str) or not stream_id:
        raise InvalidAppendError("stream_id must be a non-empty string")
    if len(stream_id) > MAX_STREAM_ID_LENGTH:
        raise InvalidAppendError(f"stream_id is longer than {MAX_STREAM_ID_LENGTH} characters")
    encoded: list[EncodedEvent] = []
    seen: set[str] = set()
    for index, event in enumerate(events):
        if not isinstance(event, NewEvent):
            raise InvalidAppendError(f"event {index} is a {type(event).__name__}, not a NewEvent")
        if not event.type:
            raise InvalidAppendError(f"event {index} has an empty type")
        if event.schema_version < 1:
            raise InvalidAppendError(f"event {index} has schema_version {event.schema_version}")
        if not isinstance(event.event_id, UUID):
            raise InvalidAppendError(f"event {index} has an event_id that is not a UUID")
        event_id = str(event.event_id)
        if event_id in seen:
            raise InvalidAppendError(f"event id {event_id} appears twice in one append")
        seen.add(event_id)
        try:
            data = canonical_json(event.data)
            metadata = canonical_json(event.metadata)
        except (TypeError, ValueError) as exc:
            raise InvalidAppendError(
                f"event {index} ({event.type}) is not JSON-serializable: {exc}"
            ) from exc
        encoded.append(EncodedEvent(event_id, event.type, event.schema_version, data, metadata))
    return encoded


def check_expected(expected: ExpectedVersion) -> None:
    if isinstance(expected, StreamState):
        return
    if isinstance(expected, bool) or not isinstance(expected, int) or expected < 0:
        raise InvalidAppendError(
            f"expected_version must be ANY, NO_STREAM, STREAM_EXISTS or an int >= 0, "
            f"not {expected!r}"
        )


def now_us() -> int:
    return time.time_ns() // 1000


class EventStore(abc.ABC):
    """An append-only log of events in streams, with a global order and live subscriptions."""

    poll_interval: float

    def __init__(
        self,
        *,
        poll_interval: float = 1.0,
        max_batch_events: int = 10_000,
        max_pending_events: int = DEFAULT_MAX_PENDING_EVENTS,
        merkle: bool = True,
    ) -> None:
        self.poll_interval = poll_interval
        #: Whether appends keep the Merkle tree (eventstore.tree). Off only to measure its
        #: cost: a store without it serves no proofs, and the next setup with it builds the
        #: nodes it missed.
        self.merkle = merkle
        self._notifier = Notifier()
        self._committer = GroupCommitter(
            self._write_batch,
            self._notifier.notify,
            max_batch_events,
            max_pending_events,
            direct=self._direct_write(),
        )

    @property
    def max_pending_events(self) -> int:
        """How many events may wait for the group commit before appends fail as overloaded."""
        return self._committer.max_pending_events

    @max_pending_events.setter
    def max_pending_events(self, value: int) -> None:
        if value < 1:
            raise ValueError("max_pending_events must be >= 1")
        self._committer.max_pending_events = value

    @property
    def pending_events(self) -> int:
        """Events waiting for the group commit now (a gauge of back-pressure)."""
        return self._committer.pending_events

    # -- lifecycle -------------------------------------------------------------------------

    async def setup(self) -> None:
        """Create or upgrade the schema; safe to call on every start."""

    async def close(self) -> None:
        await self._committer.close()

    async def __aenter__(self) -> Self:
        await self.setup()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # -- writing ---------------------------------------------------------------------------

    async def append(
        self,
        stream_id: str,
        events: Sequence[NewEvent],
        expected_version: ExpectedVersion = ANY,
    ) -> AppendResult:
        """Append events to one stream atomically; raise ConcurrencyError on a version mismatch."""
        check_expected(expected_version)
        encoded = encode_events(stream_id, events)
        if not encoded:
            # An empty append checks the version and changes nothing (Marten #5539).
            actual = await self.stream_version(stream_id)
            if not version_matches(expected_version, actual):
                raise ConcurrencyError(stream_id, expected_version, actual)
            head = await self.head_position()
            return AppendResult(stream_id, actual, actual, head, head)
        return await self._committer.submit(PendingAppend(stream_id, encoded, expected_version))

    async def append_many(
        self, requests: Sequence[tuple[str, Sequence[NewEvent], ExpectedVersion]]
    ) -> list[AppendResult | Exception]:
        """Append to many streams at once: the bulk path of imports.

        Every request is one stream's atomic append, decided on its own exactly as ``append``
        decides it, and all of them are committed together, in as few transactions as the
        batch size allows. Each gets its result, or the exception ``append`` would have raised
        (``ConcurrencyError``, ``DuplicateEventError``) in its place, so one request that fails
        never fails the others. A request with no events is refused before anything is written.
        """
        pending: list[PendingAppend] = []
        for stream_id, events, expected_version in requests:
            check_expected(expected_version)
            encoded = encode_events(stream_id, events)
            if not encoded:
                raise InvalidAppendError(f"append_many: no events for stream {stream_id!r}")
            pending.append(PendingAppend(stream_id, encoded, expected_version))
        if not pending:
            return []
        return await self._committer.submit_many(pending)

    @abc.abstractmethod
    async def _write_batch(self, batch: list[PendingAppend]) -> list[Outcome]:
        """Write a batch in one transaction and return each request's outcome."""

    def _direct_write(self) -> DirectWrite | None:
        """The backend's write of a lone request in its caller's task, if it has one.

        It returns the request's outcome, or None when it wrote nothing and the request should
        go through the queue. Cancelling the caller must leave the write whole or absent, and
        the backend's state usable by the next batch.
        """
        return None

    # -- reading ---------------------------------------------------------------------------

    @abc.abstractmethod
    async def stream_version(self, stream_id: str) -> int:
        """The stream's last version, 0 when it has no events."""

    @abc.abstractmethod
    async def head_position(self) -> int:
        """The position of the last committed event, 0 for an empty log."""

    @abc.abstractmethod
    async def head(self) -> RecordedEvent | None:
        """The last committed event, or None for an empty log."""

    @abc.abstractmethod
    async def _read_all_page(
        self,
        after_position: int,
        limit: int,
        types: Collection[str] | None,
        stream_prefix: str | None,
        to_position: int | None = None,
    ) -> list[RecordedEvent]: ...

    @abc.abstractmethod
    async def restore(self, rows: Callable[[], Iterable[Row]]) -> int:
        """Write exported rows into an empty log in one transaction; an error writes nothing."""

    @abc.abstractmethod
    async def _read_rows_page(self, after_position: int, limit: int) -> list[Row]:
        """Stored rows after a position, as stored: JSON as text, hash as bytes."""

    async def read_row_pages(
        self,
        after_position: int = 0,
        to_position: int | None = None,
        *,
        page_size: int = 5000,
    ) -> AsyncIterator[list[Row]]:
        """The stored rows in position order, a page at a time, byte for byte."""
        position = after_position
        while True:
            page = await self._read_rows_page(position, page_size)
            if to_position is not None and page and page[-1].position > to_position:
                page = [row for row in page if row.position <= to_position]
                if page:
                    yield page
                return
            if page:
                yield page
            if len(page) < page_size:
                return
            position = page[-1].position

    async def read_rows(
        self,
        after_position: int = 0,
        to_position: int | None = None,
        *,
        page_size: int = 5000,
    ) -> AsyncIterator[Row]:
        """The stored rows in position order, byte for byte: what audits and exports need."""
        async for page in self.read_row_pages(after_position, to_position, page_size=page_size):
            for row in page:
                yield row

    @abc.abstractmethod
    async def _read_stream_page(
        self, stream_id: str, from_version: int, to_version: int | None, backwards: bool, limit: int
    ) -> list[RecordedEvent]: ...

    # -- the Merkle tree and its checkpoints (eventstore.tree, eventstore.checkpoints) -------

    @abc.abstractmethod
    async def read_tree_nodes(self, positions: Sequence[int]) -> dict[int, bytes]:
        """The stored Merkle node blobs of these positions (those that have one)."""

    @abc.abstractmethod
    async def read_tree_range(self, first: int, last: int) -> dict[int, bytes]:
        """The stored Merkle node blobs of the positions in [first, last]."""

    @abc.abstractmethod
    async def save_checkpoint(self, checkpoint: Checkpoint) -> None:
        """Keep a checkpoint for good."""

    @abc.abstractmethod
    async def checkpoints_at(self, tree_size: int) -> list[Checkpoint]:
        """The checkpoints made of that size, oldest first."""

    async def read_all(
        self,
        after_position: int = 0,
        limit: int | None = None,
        types: Collection[str] | None = None,
        stream_prefix: str | None = None,
        *,
        to_position: int | None = None,
        page_size: int = DEFAULT_PAGE_SIZE,
    ) -> AsyncIterator[RecordedEvent]:
        """Events after a position in log order, paged so memory stays bounded."""
        remaining = limit
        position = after_position
        type_filter = frozenset(types) if types is not None else None
        while remaining is None or remaining > 0:
            size = page_size if remaining is None else min(page_size, remaining)
            page = await self._read_all_page(
                position, size, type_filter, stream_prefix, to_position
            )
            for record in page:
                yield record
            if len(page) < size:
                return
            position = page[-1].position
            if remaining is not None:
                remaining -= len(page)

    async def read_stream(
        self,
        stream_id: str,
        from_version: int | None = None,
        to_version: int | None = None,
        backwards: bool = False,
        *,
        page_size: int = DEFAULT_PAGE_SIZE,
    ) -> AsyncIterator[RecordedEvent]:
        """A stream's events between two versions (inclusive), forwards or backwards."""
        if backwards:
            upper = to_version if to_version is not None else from_version
            lower = from_version if to_version is not None else None
            # Backwards reads walk down from the upper bound (default: the end of the stream).
            cursor: int | None = upper
            floor = lower if lower is not None else 1
            while True:
                page = await self._read_stream_page(stream_id, floor, cursor, True, page_size)
                for record in page:
                    yield record
                if len(page) < page_size:
                    return
                cursor = page[-1].version - 1
                if cursor < floor:
                    return
        start = from_version if from_version is not None else 1
        while True:
            page = await self._read_stream_page(stream_id, start, to_version, False, page_size)
            for record in page:
                yield record
            if len(page) < page_size:
                return
            start = page[-1].version + 1

    async def load_stream(self, stream_id: str) -> list[RecordedEvent]:
        """All of a stream's events, in one list."""
        return [record async for record in self.read_stream(stream_id)]

    async def load_streams(self, stream_ids: Collection[str]) -> dict[str, list[RecordedEvent]]:
        """The events of many streams, each in order, read in a few queries rather than one
        per stream; streams without events are absent. Meant for short streams."""
        wanted = sorted(set(stream_ids))
        found: dict[str, list[RecordedEvent]] = {}
        for start in range(0, len(wanted), STREAMS_PER_READ):
            for record in await self._read_streams(wanted[start : start + STREAMS_PER_READ]):
                found.setdefault(record.stream_id, []).append(record)
        return found

    async def _read_streams(self, stream_ids: Sequence[str]) -> list[RecordedEvent]:
        """Every event of these streams, ordered by stream then version; backends override
        this with one query."""
        return [record for stream_id in stream_ids for record in await self.load_stream(stream_id)]

    # -- following -------------------------------------------------------------------------

    async def subscribe(
        self,
        after_position: int = 0,
        types: Collection[str] | None = None,
        stream_prefix: str | None = None,
        *,
        page_size: int = DEFAULT_PAGE_SIZE,
    ) -> AsyncIterator[RecordedEvent]:
        """Catch up from a position, then follow the log live; no duplicates, no omissions."""
        position = after_position
        type_filter = frozenset(types) if types is not None else None
        await self._start_listening()
        while True:
            generation = self._notifier.generation
            page = await self._read_all_page(position, page_size, type_filter, stream_prefix)
            for record in page:
                yield record
                position = record.position
            if len(page) < page_size:
                await self._notifier.wait(generation, self.poll_interval)

    async def wait_for_change(self, generation: int, timeout: float) -> None:
        """Wait until the log may have grown past what was seen at ``generation``."""
        await self._start_listening()
        await self._notifier.wait(generation, timeout)

    @property
    def generation(self) -> int:
        """Bumped whenever this process learns that the log grew."""
        return self._notifier.generation

    async def listen(
        self,
        channel: str,
        on_payload: Callable[[str], None],
        on_connect: Callable[[], None],
        on_lost: Callable[[], None] | None = None,
    ) -> bool:
        """Follow another channel of the backend's notifications, on the store's own LISTEN
        connection; False when the backend sends none (then poll instead).

        ``on_payload(payload)`` is called for each notification on ``channel``, and
        ``on_connect()`` each time the channel is listened to afresh (the first time and after
        every reconnection), once the LISTEN is in place: whatever was sent before may have been
        missed, so that is the moment to re-read what the notifications describe.
        ``on_lost()`` is called when the LISTEN connection is found gone: notifications may be
        missed from then until the next ``on_connect()``.
        """
        return False

    async def _start_listening(self) -> None:
        """Start a cross-process wake-up source, where the backend has one."""
