"""Verifying the hash chain (issue 7's target: >= 100,000 events/s on SQLite).

``eventstore.audit.verify`` recomputes every record's SHA-256 link from the stored bytes. The
peer is eventsourcing 9.5.6 reading and decoding the same number of events (it keeps no
chain), which is the cheapest full pass over a log that library offers.
"""

from __future__ import annotations

import asyncio
import time

from bench.common import Config, Result, progress, sqlite_file
from bench.eventstore import Location, Peer
from eventstore import NewEvent, open_store
from eventstore.audit import verify


async def _ours(url: str, events: int) -> float:
    async with open_store(url) as store:
        payload = {"statement_id": "x" * 36, "p": "y" * 440}
        for start in range(0, events, 1000):
            await store.append(f"s{start}", [NewEvent("Viewed", payload) for _ in range(1000)])
        best = float("inf")
        for _ in range(3):
            started = time.perf_counter()
            result = await verify(store)
            best = min(best, time.perf_counter() - started)
            assert result.ok and result.checked == events
        return best


def _peer(path: str, events: int) -> float:
    peer = Peer(Location("sqlite", "", sqlite_path=path))
    try:
        peer.fill(events, 1000)
        best = float("inf")
        for _ in range(3):
            started = time.perf_counter()
            count = sum(1 for _ in peer.read_all())
            best = min(best, time.perf_counter() - started)
            assert count == events
        return best
    finally:
        peer.close()


def run(config: Config) -> list[Result]:
    events = 20_000 if config.quick else 200_000
    with sqlite_file(config, "audit") as path, sqlite_file(config, "audit_peer") as peer_path:
        progress(f"audit: verify {events:,} events")
        ours = asyncio.run(_ours(f"sqlite:///{path}", events))
        peer = _peer(str(peer_path), events)
    return [
        Result(
            f"verify the chain of {events:,} events (peer: read + decode)",
            "sqlite",
            "events/s",
            events / ours,
            events / peer,
        )
    ]
