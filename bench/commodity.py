"""Hand-written parts against the libraries made for them, on their hot paths, in process.

* PostgreSQL one-row reads: ``eventstore.reader.PostgresReader`` (its own pool of asyncpg
  connections) against asyncpg's ``create_pool`` given the same connection options and a
  no-op reset, one read at a time and ten at once. Skipped when PostgreSQL does not answer.
* Caches: ``cachetools`` (used by the persisted queries, the token cache and the rate limiter)
  against the ``OrderedDict`` LRU it replaced, as the floor: a hit, an insert that evicts, a
  TTL hit.
* Event ids: ``eventstore.ids.uuid7`` (uuid-utils) against the stdlib's ``uuid4`` as a floor.

``ours`` is the code the project runs, ``peer`` the alternative: a ratio above 1 for rates means
ours is faster. Figures are per operation on a shared machine, so compare ratios only::

    python -m bench --only commodity --quick
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Any

from cachetools import LRUCache, TTLCache

from bench.common import Config, Result, progress, rate
from eventstore.ids import uuid7

_READ = "SELECT $1::int + 1"


def _ops_per_second(fn: Callable[[int], None], n: int, rounds: int = 3) -> float:
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        fn(n)
        best = min(best, time.perf_counter() - start)
    return rate(n, best)


def _caches(n: int) -> list[Result]:
    keys = [f"key-{i}" for i in range(1_000)]

    def od_hit(count: int) -> None:
        d: OrderedDict[str, int] = OrderedDict((k, 1) for k in keys)
        for i in range(count):
            k = keys[i % 1_000]
            if d.get(k) is not None:
                d.move_to_end(k)

    def lru_hit(count: int) -> None:
        c: LRUCache[str, int] = LRUCache(2_000)
        for k in keys:
            c[k] = 1
        for i in range(count):
            c.get(keys[i % 1_000])

    def od_insert(count: int) -> None:
        d: OrderedDict[str, int] = OrderedDict()
        for i in range(count):
            d[keys[i % 1_000] + str(i)] = 1
            while len(d) > 500:
                d.popitem(last=False)

    def lru_insert(count: int) -> None:
        c: LRUCache[str, int] = LRUCache(500)
        for i in range(count):
            c[keys[i % 1_000] + str(i)] = 1

    def od_ttl_hit(count: int) -> None:
        d: OrderedDict[str, tuple[float, int]] = OrderedDict(
            (k, (time.monotonic() + 60, 1)) for k in keys
        )
        for i in range(count):
            now = time.monotonic()
            entry = d.get(keys[i % 1_000])
            if entry is not None and entry[0] > now:
                pass

    def ttl_hit(count: int) -> None:
        c: TTLCache[str, int] = TTLCache(2_000, ttl=60)
        for k in keys:
            c[k] = 1
        for i in range(count):
            c.get(keys[i % 1_000])

    return [
        Result(
            "LRU hit: cachetools vs OrderedDict", "memory", "ops/s",
            _ops_per_second(lru_hit, n), _ops_per_second(od_hit, n),
        ),
        Result(
            "LRU insert + evict: cachetools vs OrderedDict", "memory", "ops/s",
            _ops_per_second(lru_insert, n), _ops_per_second(od_insert, n),
        ),
        Result(
            "TTL hit: cachetools vs OrderedDict + monotonic", "memory", "ops/s",
            _ops_per_second(ttl_hit, n), _ops_per_second(od_ttl_hit, n),
        ),
    ]  # fmt: skip


def _ids(n: int) -> list[Result]:
    def ours(count: int) -> None:
        for _ in range(count):
            uuid7()

    def stdlib(count: int) -> None:
        for _ in range(count):
            uuid.uuid4()

    return [
        Result(
            "UUIDv7 (uuid-utils) vs stdlib uuid4", "memory", "ids/s",
            _ops_per_second(ours, n), _ops_per_second(stdlib, n),
        )
    ]  # fmt: skip


async def _reads(url: str, n: int) -> list[Result]:
    import asyncpg

    from eventstore.reader import PostgresReader
    from eventstore.urls import create_engine

    engine = create_engine(url)
    reader = PostgresReader(engine, max_size=10)

    async def no_reset(_conn: Any) -> None:
        return None

    try:
        options = await reader._connection_options()
        pool = await asyncpg.create_pool(min_size=0, max_size=10, reset=no_reset, **options)
    except (OSError, asyncpg.PostgresError) as exc:
        progress(f"commodity: PostgreSQL reads skipped ({exc})")
        await engine.dispose()
        return []

    async def pool_fetch(sql: str, params: tuple[Any, ...]) -> Any:
        async with pool.acquire() as conn:
            return [tuple(r) for r in await conn.fetch(sql, *params)]

    async def timed(fetch: Callable[[str, tuple[Any, ...]], Awaitable[Any]], at_once: int) -> float:
        await fetch(_READ, (0,))
        best = float("inf")
        for _ in range(3):
            start = time.perf_counter()

            async def one(count: int) -> None:
                for i in range(count):
                    await fetch(_READ, (i,))

            await asyncio.gather(*(one(n // at_once) for _ in range(at_once)))
            best = min(best, time.perf_counter() - start)
        return rate(n, best)

    try:
        results = []
        for at_once in (1, 10):
            # Alternating, so drift in the machine's load falls on both.
            ours = await timed(reader.fetch, at_once)
            peer = await timed(pool_fetch, at_once)
            scenario = f"one-row reads, {at_once} at once: own pool vs asyncpg's pool"
            results.append(Result(scenario, "postgresql", "reads/s", ours, peer))
        return results
    finally:
        await pool.close()
        await reader.close()
        await engine.dispose()


def run(config: Config) -> list[Result]:
    n = 100_000 if config.quick else 1_000_000
    reads = 2_000 if config.quick else 20_000
    progress("commodity: caches and ids")
    results = _caches(n) + _ids(n)
    progress("commodity: PostgreSQL reads")
    url = config.pg_url.replace("postgresql://", "postgresql+asyncpg://", 1)
    results += asyncio.run(_reads(url, reads))
    return results
