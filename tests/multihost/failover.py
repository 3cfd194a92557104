"""One failure under load, measured from the client host: views recorded, dashboards
subscribed, then a host is killed (SIGKILL of all its processes), cut off the network, or the
replica is killed. Shared by the tests and by ``bench/failover.py``."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import asyncpg

from eventstore.urls import create_engine
from graphql_api.security.auth import create_token
from tests.multihost.client import CountSubscriber, RetryPolicy, ViewWriter, publish, wait_for
from tests.multihost.topology import API_HOSTS, DATABASE, LEADERS, REPLICA, Topology


@dataclass
class Outcome:
    fault: str
    victim: str
    survivor: str | None
    statement_id: str
    #: seconds from the fault until the survivor held every projection's lock
    takeover: float | None = None
    #: seconds from the fault until the views projection had applied an event appended after it
    live: float | None = None
    writers: list[ViewWriter] = field(default_factory=list)
    subscribers: list[CountSubscriber] = field(default_factory=list)
    leaders_before: dict[str, str] = field(default_factory=dict)
    leaders_after: dict[str, str] = field(default_factory=dict)
    log_positions: list[int] = field(default_factory=list)
    read_model_count: int = 0
    fault_at: float = 0.0

    @property
    def acked(self) -> list[int]:
        return sorted(p for w in self.writers for p in w.acked)

    @property
    def unacknowledged(self) -> int:
        return sum(w.unacknowledged for w in self.writers)

    @property
    def moved(self) -> list[CountSubscriber]:
        """Subscribers that were on the victim when it failed."""
        return [s for s in self.subscribers if s.lost_at]

    def summary(self) -> str:
        reconnects = ", ".join(f"{s:.2f}" for s in self.reconnects())
        takeover = "-" if self.takeover is None else f"{self.takeover:.2f} s"
        live = "-" if self.live is None else f"{self.live:.2f} s"
        return (
            f"{self.fault} {self.victim}: takeover {takeover}, live {live}, "
            f"reconnected [{reconnects}] s, {len(self.acked)} views acknowledged, "
            f"{self.unacknowledged} unacknowledged, {len(self.log_positions)} in the log"
        )

    def reconnects(self) -> list[float]:
        """Seconds from the fault until each moved subscriber had a value from another host."""
        return [s.resumed_at[0] - self.fault_at for s in self.moved if s.resumed_at]


def make_tokens(topo: Topology, count: int) -> list[str]:
    """An editor token and ``count`` more (each has its own recordView rate bucket)."""
    assert topo.primary is not None
    url = topo.primary.url_from_hosts()

    async def make() -> list[str]:
        engine = create_engine(url)
        try:
            stamp = time.time_ns()
            return [
                (await create_token(engine, "editor", f"mh-{stamp}-{i}"))[0]
                for i in range(count + 1)
            ]
        finally:
            await engine.dispose()

    return topo.run_client(make)


def _leaders(topo: Topology, rows: list[asyncpg.Record]) -> dict[str, str]:
    return topo.leaders_from(rows)


async def under_load(
    topo: Topology,
    tokens: list[str],
    fault: str,
    *,
    subscribers: int = 6,
    before: float = 2.0,
    after: float = 4.0,
    rate: float = 6.0,
    policy: RetryPolicy | None = None,
) -> Outcome:
    """Run the load, apply ``fault`` ("kill", "cut" or "replica") and measure; the caller
    asserts."""
    assert topo.primary is not None
    policy = policy or RetryPolicy()
    http_hosts = [topo.apis[name].url for name in API_HOSTS]
    ws_hosts = [topo.apis[name].ws_url for name in API_HOSTS]
    address_of = {topo.apis[name].address: name for name in API_HOSTS}
    import httpx

    async with httpx.AsyncClient(timeout=10) as http:
        sid = await publish(http, http_hosts[0], tokens[0], f"Failover {time.time_ns()}")
    conn = await asyncpg.connect(topo.primary.url_from_hosts(), timeout=5)
    try:
        leaders = _leaders(topo, await conn.fetch(LEADERS, DATABASE))
        leader = address_of[leaders["views"]]
        victim = REPLICA if fault == "replica" else leader
        survivor = None if fault == "replica" else next(n for n in API_HOSTS if n != victim)
        outcome = Outcome(fault, victim, survivor, sid, leaders_before=leaders)
        outcome.writers = [
            ViewWriter(http_hosts, token, sid, rate=rate, start=i % 2, policy=policy)
            for i, token in enumerate(tokens[1:])
        ]
        outcome.subscribers = [
            CountSubscriber(ws_hosts, sid, start=i % 2, policy=policy) for i in range(subscribers)
        ]
        stop_writing, stop_listening = asyncio.Event(), asyncio.Event()
        writing = [asyncio.create_task(w.run(stop_writing)) for w in outcome.writers]
        listening = [asyncio.create_task(s.run(stop_listening)) for s in outcome.subscribers]
        try:
            await wait_for(lambda: all(s.values for s in outcome.subscribers), 20)
            await asyncio.sleep(before)
            apply: Callable[[], object]
            if fault == "kill":
                apply = topo.apis[victim].power_off
            elif fault == "cut":
                apply = lambda: topo.network.cut(victim)  # noqa: E731
            elif fault == "replica":
                apply = lambda: topo.network.power_off(REPLICA)  # noqa: E731
            else:
                raise ValueError(f"unknown fault {fault!r}")
            outcome.fault_at = time.monotonic()
            await asyncio.to_thread(apply)
            if survivor is not None:
                await _measure_takeover(topo, conn, outcome, topo.apis[survivor].address)
            await asyncio.sleep(after)
        finally:
            stop_writing.set()
            await asyncio.gather(*writing)
        stream = f"statement-views-{sid}"
        rows = await conn.fetch(
            "SELECT position FROM events WHERE stream_id = $1 AND type = 'Viewed' ORDER BY 1",
            stream,
        )
        outcome.log_positions = [int(r[0]) for r in rows]
        final = len(rows)
        try:
            await wait_for(
                lambda: all(s.values and s.values[-1][1] == final for s in outcome.subscribers),
                15,
            )
        finally:
            stop_listening.set()
            await asyncio.gather(*listening)
        head = int(await conn.fetchval("SELECT coalesce(max(position), 0) FROM events"))
        await wait_for_views(conn, head, 15)
        outcome.read_model_count = int(
            await conn.fetchval(
                "SELECT coalesce(max(view_count), 0) FROM view_totals WHERE statement_id = $1", sid
            )
        )
        outcome.leaders_after = _leaders(topo, await conn.fetch(LEADERS, DATABASE))
        return outcome
    finally:
        await conn.close()


async def _views_checkpoint(conn: asyncpg.Connection) -> int:
    value = await conn.fetchval("SELECT position FROM projection_checkpoints WHERE name = 'views'")
    return int(value or 0)


async def wait_for_views(conn: asyncpg.Connection, position: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await _views_checkpoint(conn) >= position:
            return True
        await asyncio.sleep(0.05)
    return False


async def _measure_takeover(
    topo: Topology, conn: asyncpg.Connection, outcome: Outcome, survivor: str
) -> None:
    names = topo.projection_names()
    deadline = outcome.fault_at + 30
    while time.monotonic() < deadline:
        leaders = _leaders(topo, await conn.fetch(LEADERS, DATABASE))
        if set(leaders) == names and set(leaders.values()) == {survivor}:
            outcome.takeover = time.monotonic() - outcome.fault_at
            break
        await asyncio.sleep(0.05)
    else:
        return
    # Live again: an event appended after the fault has been applied by the views projection.
    head = int(await conn.fetchval("SELECT coalesce(max(position), 0) FROM events"))
    while time.monotonic() < deadline:
        if await _views_checkpoint(conn) >= head + 1:
            outcome.live = time.monotonic() - outcome.fault_at
            return
        await asyncio.sleep(0.05)
