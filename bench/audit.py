"""Verifying the hash chain (target: >= 100,000 events/s on SQLite).

``eventstore.audit.verify`` recomputes every record's SHA-256 link and Merkle nodes from the
stored bytes. The peer of the first row is eventsourcing 9.5.6 reading and decoding the same
number of events (it keeps no chain), which is the cheapest full pass over a log that library
offers. The peer of the second is the same store's rows read and their chain recomputed, with
no tree: what ``verify`` did before the Merkle tree, so the ratio is the tree's cost.
"""

from __future__ import annotations

import asyncio
import time
from hashlib import sha256

from bench.common import Config, Result, progress, sqlite_file
from bench.eventstore import Location, Peer
from eventstore import EventStore, NewEvent, open_store
from eventstore.audit import verify
from eventstore.chain import GENESIS_HASH, record_encoding


async def _chain_only(store: EventStore) -> int:
    """The chain recomputed over every row, nothing else: verify's work before the tree."""
    previous, count = GENESIS_HASH, 0
    async for page in store.read_row_pages():
        for row in page:
            digest = sha256(previous + record_encoding(*row[:9])).digest()
            if digest != row.hash:
                raise AssertionError(f"the chain breaks at {row.position}")
            previous = digest
            count += 1
    return count


async def _ours(url: str, events: int) -> tuple[float, float]:
    """Seconds (the best of three, alternating) of verify, and of the chain alone."""
    async with open_store(url) as store:
        payload = {"statement_id": "x" * 36, "p": "y" * 440}
        for start in range(0, events, 1000):
            await store.append(f"s{start}", [NewEvent("Viewed", payload) for _ in range(1000)])
        best = chain_best = float("inf")
        for _ in range(3):
            started = time.perf_counter()
            result = await verify(store)
            best = min(best, time.perf_counter() - started)
            assert result.ok and result.checked == events
            started = time.perf_counter()
            assert await _chain_only(store) == events
            chain_best = min(chain_best, time.perf_counter() - started)
        return best, chain_best


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
        ours, chain = asyncio.run(_ours(f"sqlite:///{path}", events))
        peer = _peer(str(peer_path), events)
    return [
        Result(
            f"verify the chain of {events:,} events (peer: read + decode)",
            "sqlite",
            "events/s",
            events / ours,
            events / peer,
        ),
        Result(
            f"verify the chain and the Merkle tree of {events:,} events (peer: the chain alone, "
            "as before the tree)",
            "sqlite",
            "events/s",
            events / ours,
            events / chain,
        ),
    ]
