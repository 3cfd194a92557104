"""Rebuilding projections: into aside tables from position 0, then swapped in with their
checkpoint in one transaction, so readers see the old tables until the new ones are complete.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import Sequence
from typing import Final

from sqlalchemy.ext.asyncio import AsyncEngine

from eventstore.leader import exclusive
from eventstore.projection import ASIDE_PREFIX, Projection, ProjectionError, TableNames
from eventstore.projection_batches import Commit, bisect_batch, is_transient, read_batches
from eventstore.projection_checkpoints import (
    ACTIVE,
    checkpoints,
    drop_leftovers,
    drop_tables,
    insert_checkpoint,
    load_checkpoint,
    quote_identifier,
    setup_checkpoints,
    write_transaction,
)
from eventstore.records import RecordedEvent
from eventstore.store import EventStore, now_us

log = logging.getLogger(__name__)

# -- rebuild -------------------------------------------------------------------------------


async def rebuild(
    store: EventStore, engine: AsyncEngine, projection: Projection, *, batch_size: int = 5000
) -> int:
    """Rebuild a projection from position 0 aside, then swap it in; returns its new position.

    The old tables keep serving (and may keep being updated by a running leader) until the
    swap, which drops them, renames the aside tables and moves the checkpoint in a single
    transaction. Raises ProjectionError if the projection fails on an event; the old tables
    and checkpoint are then left as they were.
    """
    return await rebuild_projection(
        store, engine, projection, batch_size=batch_size, only_if_stale=False
    )


#: Events per read and per fill transaction of ``rebuild_many``: long sequential reads, few
#: commits, and still a bounded batch in memory (a few tens of MB).
REBUILD_BATCH: Final = 20_000


async def rebuild_many(
    store: EventStore,
    engine: AsyncEngine,
    projections: Sequence[Projection],
    *,
    batch_size: int = REBUILD_BATCH,
) -> dict[str, int]:
    """Rebuild several projections in one pass over the log; returns each one's new position.

    The log is read once, in large pages, and every batch goes to each projection (the events
    of its types), all in one transaction: an event's JSON is decoded once, however many
    projections read it. Each projection then swaps its aside tables in as ``rebuild`` does,
    with the same guarantees. If an event fails a projection while they fill together, the
    batch is applied again one projection at a time to find it, ``ProjectionError`` names it,
    and nothing is swapped in. The last events (less than a batch) are applied by each swap,
    as ``rebuild`` applies them: one that fails there keeps its old tables and raises, after
    the projections before it have swapped theirs in, complete.
    """
    if not projections:
        return {}
    await setup_checkpoints(engine)
    async with contextlib.AsyncExitStack() as locks:
        asides: list[tuple[Projection, TableNames]] = []
        try:
            for projection in projections:
                await locks.enter_async_context(
                    exclusive(engine, projection.name, namespace="projection-rebuild")
                )
                async with write_transaction(engine) as conn:
                    await insert_checkpoint(conn, projection.name, 0)
                log.info(
                    "projection %s: rebuilding version %d", projection.name, projection.version
                )
                await drop_leftovers(engine, projection)
                aside = TableNames(projection.tables, ASIDE_PREFIX + secrets.token_hex(4))
                asides.append((projection, aside))
                async with write_transaction(engine) as conn:
                    await projection.create(conn, aside)
            position = await _fill_together(store, engine, asides, batch_size)
            positions: dict[str, int] = {}
            for projection, aside in asides:
                positions[projection.name] = await _finish(
                    store, engine, projection, aside, position, batch_size
                )
            return positions
        except BaseException:
            for _projection, aside in asides:
                with contextlib.suppress(Exception):
                    await asyncio.shield(_drop_aside(engine, aside))
            raise


async def _fill_together(
    store: EventStore,
    engine: AsyncEngine,
    asides: Sequence[tuple[Projection, TableNames]],
    batch_size: int,
) -> int:
    """``_fill`` for several projections from one read of the log; returns where all stand."""
    wanted: list[frozenset[str] | None] = [p.types for p, _ in asides]
    types: frozenset[str] | None = None
    if all(t is not None for t in wanted):
        types = frozenset().union(*(t for t in wanted if t is not None))

    def share(events: Sequence[RecordedEvent], only: frozenset[str] | None) -> list[RecordedEvent]:
        return list(events) if only is None else [e for e in events if e.type in only]

    async def apply_all(events: Sequence[RecordedEvent]) -> None:
        async with write_transaction(engine) as conn:
            for (projection, aside), only in zip(asides, wanted, strict=True):
                mine = share(events, only)
                if mine:
                    await projection.apply(conn, mine, aside)

    position = 0
    while True:
        head = await store.head_position()
        if head - position <= batch_size:
            return position
        async with contextlib.aclosing(
            read_batches(store, position, head, types, batch_size)
        ) as batches:
            async for events, end in batches:
                try:
                    await apply_all(events)
                except Exception as exc:
                    if is_transient(exc):
                        raise
                    # Raises for the failing event; if every projection takes its share on
                    # its own, the batch is applied all the same.
                    await _find_failure(engine, asides, wanted, events, end)
                position = end


async def _find_failure(
    engine: AsyncEngine,
    asides: Sequence[tuple[Projection, TableNames]],
    wanted: Sequence[frozenset[str] | None],
    events: Sequence[RecordedEvent],
    end: int,
) -> None:
    """A batch failed in its shared transaction: apply it projection by projection, halving
    the failing one's share until its failing event is found, and raise ProjectionError.
    Returns when every projection took its share."""
    for (projection, aside), only in zip(asides, wanted, strict=True):
        mine = [e for e in events if only is None or e.type in only]
        failure = await bisect_batch(_aside_commit(engine, projection, aside), mine, end)
        if failure is not None:
            event, exc = failure
            raise ProjectionError(projection.name, event.position, exc) from exc


def _aside_commit(engine: AsyncEngine, projection: Projection, aside: TableNames) -> Commit:
    async def commit(events: Sequence[RecordedEvent], _end: int) -> None:
        if events:
            async with write_transaction(engine) as conn:
                await projection.apply(conn, events, aside)

    return commit


async def _finish(
    store: EventStore,
    engine: AsyncEngine,
    projection: Projection,
    aside: TableNames,
    position: int,
    batch_size: int,
) -> int:
    """Fill the aside tables up to the head and swap them in; the new position."""
    at_least = 0
    while True:
        position = await _fill(store, engine, projection, aside, position, batch_size, at_least)
        swapped = await _swap(store, engine, projection, aside, position, batch_size)
        if swapped is not None:
            log.info("projection %s: rebuilt up to %d", projection.name, swapped)
            return swapped
        # An event failed inside the swap: fill past it, so the failure is pinned down.
        at_least = await store.head_position()


async def rebuild_projection(
    store: EventStore,
    engine: AsyncEngine,
    projection: Projection,
    *,
    batch_size: int,
    only_if_stale: bool,
) -> int:
    await setup_checkpoints(engine)
    # Two rebuilds of one projection would drop each other's aside tables.
    async with exclusive(engine, projection.name, namespace="projection-rebuild"):
        async with write_transaction(engine) as conn:
            # Version 0 marks "no tables yet", so a runner starting meanwhile rebuilds too.
            await insert_checkpoint(conn, projection.name, 0)
            checkpoint = await load_checkpoint(conn, projection.name)
        assert checkpoint is not None
        if only_if_stale and checkpoint.version == projection.version:
            return checkpoint.position
        log.info("projection %s: rebuilding version %d", projection.name, projection.version)
        await drop_leftovers(engine, projection)
        aside = TableNames(projection.tables, ASIDE_PREFIX + secrets.token_hex(4))
        try:
            async with write_transaction(engine) as conn:
                await projection.create(conn, aside)
            return await _finish(store, engine, projection, aside, 0, batch_size)
        except BaseException:
            # A cancelled or failed rebuild leaves nothing behind; the old tables never moved.
            with contextlib.suppress(Exception):
                await asyncio.shield(_drop_aside(engine, aside))
            raise


async def _drop_aside(engine: AsyncEngine, aside: TableNames) -> None:
    async with write_transaction(engine) as conn:
        await drop_tables(conn, aside)


async def _fill(
    store: EventStore,
    engine: AsyncEngine,
    projection: Projection,
    aside: TableNames,
    position: int,
    batch_size: int,
    at_least: int,
) -> int:
    """Apply events to the aside tables until the head is less than a batch ahead.

    The swap applies the rest while it holds the lock; stopping short of the head rather than
    exactly at it lets a rebuild finish under a write rate close to its own speed.
    """

    async def commit(events: Sequence[RecordedEvent], _end: int) -> None:
        if events:
            async with write_transaction(engine) as conn:
                await projection.apply(conn, events, aside)

    while True:
        head = await store.head_position()
        if position >= at_least and head - position <= batch_size:
            return position
        async with contextlib.aclosing(
            read_batches(store, position, head, projection.types, batch_size)
        ) as batches:
            async for events, end in batches:
                failure = await bisect_batch(commit, events, end)
                if failure is not None:
                    event, exc = failure
                    raise ProjectionError(projection.name, event.position, exc) from exc
                position = end


async def _swap(
    store: EventStore,
    engine: AsyncEngine,
    projection: Projection,
    aside: TableNames,
    position: int,
    batch_size: int,
) -> int | None:
    """Apply the last few events and swap the aside tables in; None if an event failed."""
    try:
        return await _swap_once(store, engine, projection, aside, position, batch_size)
    except _SwapApplyFailed:
        # _fill finds the failing event, one transaction per half, before the next swap.
        return None


class _SwapApplyFailed(Exception):
    pass


async def _swap_once(
    store: EventStore,
    engine: AsyncEngine,
    projection: Projection,
    aside: TableNames,
    position: int,
    batch_size: int,
) -> int:
    async with write_transaction(engine) as conn:
        # The checkpoint row first, as a running leader's batches lock it first too: the same
        # lock order on both sides leaves no room for a deadlock on PostgreSQL.
        await conn.execute(
            checkpoints.update()
            .where(checkpoints.c.name == projection.name)
            .values(updated_at=now_us())
        )
        head = await store.head_position()
        try:
            async with contextlib.aclosing(
                read_batches(store, position, head, projection.types, batch_size)
            ) as batches:
                async for events, _end in batches:
                    if events:
                        await projection.apply(conn, events, aside)
        except Exception as exc:
            if is_transient(exc):
                raise
            raise _SwapApplyFailed from exc
        live = TableNames(projection.tables)
        await drop_tables(conn, live)
        for table in projection.tables:
            old, new = quote_identifier(conn, aside[table]), quote_identifier(conn, live[table])
            await conn.exec_driver_sql(f"ALTER TABLE {old} RENAME TO {new}")
        await conn.execute(
            checkpoints.update()
            .where(checkpoints.c.name == projection.name)
            .values(
                position=head,
                version=projection.version,
                status=ACTIVE,
                error=None,
                error_position=None,
                updated_at=now_us(),
            )
        )
    return head
