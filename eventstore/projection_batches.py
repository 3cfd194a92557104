"""Reading the log for a projection: batches of the events it needs, and the bisection that finds
the event a failing batch stopped at; which database errors are transient.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Awaitable, Callable, Sequence

import sqlalchemy as sa

from eventstore.errors import StoreUnavailableError
from eventstore.projection import describe_error
from eventstore.projection_checkpoints import CheckpointMoved, LostLeadership
from eventstore.records import RecordedEvent
from eventstore.store import EventStore

# -- reading the log -----------------------------------------------------------------------


async def read_batches(
    store: EventStore, after: int, to: int, types: frozenset[str] | None, size: int
) -> AsyncGenerator[tuple[list[RecordedEvent], int], None]:
    """Batches of events in (after, to] with the position each ends at, one read ahead.

    A batch shorter than ``size`` ends at ``to``: positions are gapless and commit in order, so
    everything up to the head that the filter left out is known to be irrelevant.
    """

    async def read(start: int) -> tuple[list[RecordedEvent], int]:
        events = [
            event
            async for event in store.read_all(
                start, limit=size, types=types, to_position=to, page_size=size
            )
        ]
        end = to if len(events) < size else events[-1].position
        return events, end

    pending: asyncio.Task[tuple[list[RecordedEvent], int]] | None = asyncio.ensure_future(
        read(after)
    )
    try:
        while pending is not None:
            events, end = await pending
            # Reading the next batch overlaps with applying this one.
            pending = asyncio.ensure_future(read(end)) if end < to else None
            yield events, end
    finally:
        if pending is not None:
            pending.cancel()
            # asyncio.wait, not `await pending`: a cancellation of our caller must propagate.
            await asyncio.wait([pending])
            if not pending.cancelled():
                pending.exception()  # retrieved, so asyncio does not log it as lost


Commit = Callable[[Sequence[RecordedEvent], int], Awaitable[None]]


async def bisect_batch(
    commit: Commit, events: Sequence[RecordedEvent], end: int
) -> tuple[RecordedEvent, Exception] | None:
    """Commit a batch; if it fails, commit its halves to find the first failing event."""
    try:
        await commit(events, end)
        return None
    except Exception as exc:
        if isinstance(exc, CheckpointMoved | LostLeadership) or is_transient(exc) or not events:
            raise
        if len(events) == 1:
            return events[0], exc
    middle = len(events) // 2
    failure = await bisect_batch(commit, events[:middle], events[middle - 1].position)
    if failure is not None:
        return failure
    return await bisect_batch(commit, events[middle:], end)


def is_transient(exc: BaseException) -> bool:
    """Whether an error says "try again later" rather than "this event cannot be applied"."""
    if isinstance(exc, StoreUnavailableError | ConnectionError | TimeoutError):
        return True
    if isinstance(exc, sa.exc.DBAPIError):
        if exc.connection_invalidated:
            return True
        message = str(exc.orig).lower()
        if "database is locked" in message or "database is busy" in message:
            return True
        state = getattr(exc.orig, "sqlstate", None) or ""
        # connection exceptions, rollbacks (serialization, deadlock), resources, shutdowns, locks
        return state[:2] in {"08", "40", "53", "57"} or state == "55P03"
    return False


def event_error(event: RecordedEvent, exc: BaseException) -> str:
    return (
        f"{describe_error(exc)} (event at position {event.position}, type {event.type!r}, "
        f"stream {event.stream_id!r})"
    )
