"""Projections: rebuilding every read model over a demo log, and live lag under steady views.

Rebuild (target: at least the peer's rate; >= 50,000 events/s on SQLite over 10,000 statements
and 1,000,000 views): the six projections rebuild together (``rebuild_many``), in one pass over
the log into aside tables, then each swaps; the figure is the log's length over the total time.
The peer is eventsourcing 9.5.6 reading and decoding a log of the same length without doing
anything with it.

Live lag (target: p99 < 200 ms at 1,000 views/s): views are recorded through the command
handlers at a steady rate while the projection runner follows the log; for every view we time
the wait from its acknowledged append until the views projection's checkpoint covers it. There
is no peer for this figure: the ratio column is against the 200 ms target.
"""

from __future__ import annotations

import asyncio
import statistics
import time

from bench.common import Config, Result, progress, sqlite_file
from bench.eventstore import Location, Peer
from domain.commands import CommandMetadata, RecordView, WithdrawStatement
from domain.demo import demo_commands
from domain.handlers import StatementHandlers
from domain.streams import views_stream
from eventstore import ANY, NewEvent, open_store
from eventstore.projection_checkpoints import setup_checkpoints
from eventstore.projection_runner import ProjectionRunner
from eventstore.rebuild import rebuild_many
from eventstore.urls import create_engine
from graphql_api.service_layer.demo_loader import write_demo
from graphql_api.service_layer.eventlog import StoreEventLog
from projections import all_projections
from projections.registry import event_registry

META = CommandMetadata(actor="bench", correlation_id="bench")


async def _demo_log(url: str, statements: int, views: int) -> tuple[int, list[str]]:
    """A demo log, then ``views`` single Viewed events spread over its statements."""
    async with open_store(url) as store:
        handlers = StatementHandlers(StoreEventLog(store, event_registry()))
        await write_demo(handlers, statements=statements, views=statements * 10, seed=3)
        commands = list(demo_commands(statements, statements * 10, 3))
        withdrawn = {c.statement_id for c in commands if isinstance(c, WithdrawStatement)}
        ids = sorted({c.statement_id for c in commands} - withdrawn)
        hot = ids[: max(1, len(ids) // 20)]
        for start in range(0, views, 10_000):
            size = min(10_000, views - start)
            # Popular statements get most views, as on the real site.
            per = {sid: 0 for sid in hot}
            for i in range(size):
                per[hot[(i * 7) % len(hot)]] += 1
            await asyncio.gather(
                *(
                    store.append(
                        views_stream(sid),
                        [NewEvent("Viewed", {"statement_id": sid}) for _ in range(count)],
                        ANY,
                    )
                    for sid, count in per.items()
                    if count
                )
            )
        return await store.head_position(), ids


async def _rebuild_all(url: str) -> float:
    async with open_store(url) as store:
        engine = create_engine(url)
        try:
            await setup_checkpoints(engine)
            # All in one pass over the log, as `statements projections rebuild` does.
            started = time.perf_counter()
            await rebuild_many(store, engine, all_projections())
            return time.perf_counter() - started
        finally:
            await engine.dispose()


def _peer_read(path: str, events: int) -> float:
    loc = Location("sqlite", "", sqlite_path=path)
    peer = Peer(loc)
    try:
        total = -(-events // 1000) * 1000  # whole streams of 1,000, at least as many events
        peer.fill(total, 1000)
        started = time.perf_counter()
        count = sum(1 for _ in peer.read_all())
        assert count == total, (count, total)
        return (time.perf_counter() - started) * events / total
    finally:
        peer.close()


async def _live_lag(url: str, ids: list[str], rate: int, seconds: float) -> list[float]:
    async with open_store(url) as store:
        engine = create_engine(url)
        runner = ProjectionRunner(store, engine, all_projections())
        handlers = StatementHandlers(StoreEventLog(store, event_registry()))
        lags: list[float] = []
        waits: list[asyncio.Task[None]] = []

        async def one(statement_id: str) -> None:
            result = await handlers.handle(RecordView(statement_id=statement_id, meta=META))
            acked = time.perf_counter()
            assert result.position is not None
            if await runner.wait_for(result.position, 10.0, names=["views"]):
                lags.append(time.perf_counter() - acked)

        try:
            await runner.start()
            await runner.wait_for(await store.head_position(), 120.0)
            interval = 1.0 / rate
            started = time.perf_counter()
            sent = 0
            while time.perf_counter() - started < seconds:
                due = int((time.perf_counter() - started) / interval)
                while sent < due:
                    waits.append(asyncio.create_task(one(ids[(sent * 13) % len(ids)])))
                    sent += 1
                await asyncio.sleep(interval / 2)
            await asyncio.gather(*waits)
            progress(f"  live: {sent:,} views in {seconds:.0f}s, {len(lags):,} lags measured")
        finally:
            await runner.stop()
            await engine.dispose()
        return lags


def run(config: Config) -> list[Result]:
    statements, views = (300, 20_000) if config.quick else (10_000, 1_000_000)
    results: list[Result] = []
    with sqlite_file(config, "projections") as path, sqlite_file(config, "peer") as peer_path:
        url = f"sqlite:///{path}"
        progress(f"projections: demo log of {statements:,} statements and {views:,} views")
        events, ids = asyncio.run(_demo_log(url, statements, views))
        progress(f"projections: rebuilding all over {events:,} events")
        ours = asyncio.run(_rebuild_all(url))
        progress(f"projections: peer reads and decodes {events:,} events")
        peer = _peer_read(str(peer_path), events)
        results.append(
            Result(
                f"rebuild all projections over {events:,} events",
                "sqlite",
                "events/s",
                events / ours,
                events / peer,
            )
        )
        seconds = 5.0 if config.quick else 20.0
        progress(f"projections: live lag at 1,000 views/s for {seconds:.0f}s")
        lags = asyncio.run(_live_lag(url, ids, 1000, seconds))
        lags.sort()
        p50 = statistics.median(lags) * 1000
        p99 = lags[int(len(lags) * 0.99) - 1] * 1000
        results.append(Result("live lag p50 at 1,000 views/s (ms)", "sqlite", "ms", p50, 200.0))
        results.append(Result("live lag p99 at 1,000 views/s (ms)", "sqlite", "ms", p99, 200.0))
    return results
