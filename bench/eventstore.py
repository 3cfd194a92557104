"""Event store benchmark: our store against eventsourcing 9.5.6, on SQLite and PostgreSQL.

Both sides go from a domain event object to the database and back:

* ours: ``EventRegistry.new_event(obj)`` + ``EventStore.append`` to write; ``read_all`` /
  ``load_stream`` + ``EventRegistry.decode`` to read, into frozen dataclasses;
* peer: the library's own ``EventStore`` (its ``Mapper`` with the ``JSONTranscoder`` an
  ``Application`` registers, over its application recorder), built by its infrastructure
  factory from the same environment variables an ``Application`` reads. That is what
  ``Application.save()``/``repository.get()`` run underneath, minus the aggregate and
  snapshot bookkeeping. ``read_all`` is ``select_notifications`` in pages of 1,000 plus
  ``Mapper.to_domain_event``, as the library's notification-log readers do.

Scenarios (500-byte payloads):

a. one event per append, one client, sequential, exact expected versions;
b. one event per append, 50 concurrent clients each on its own stream (ours: 50 asyncio
   tasks, group commit; peer: 50 threads, since it is synchronous);
c. 100 events per append, each append a new stream;
d. ``read_all`` of the whole log decoded into event objects; and, in a child process, the
   RSS growth while doing so (200,000 events by default, 1,000,000 with ``--full``);
e. loading one stream of 10 events, streams in random order, best of several rounds.

Beside (a), its floor: the same number of one-row commits into our events table by the bare
driver (sqlite3, asyncpg), with ready-made rows and no store at all. Its rate over the peer's
is the highest ratio (a) could reach on this machine at that moment.

Every scenario gets a fresh SQLite file or a fresh PostgreSQL schema, removed afterwards.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import importlib.metadata
import json
import random
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, TypeVar

from eventsourcing.domain import DomainEvent
from eventsourcing.persistence import (
    ApplicationRecorder,
    DatetimeAsISO,
    DecimalAsStr,
    InfrastructureFactory,
    JSONTranscoder,
    UUIDAsHex,
)
from eventsourcing.persistence import EventStore as PeerEventStore
from eventsourcing.postgres import PostgresFactory
from eventsourcing.sqlite import SQLiteFactory

import eventstore
import eventstore.postgres
import eventstore.sqlite  # both backends now, so one run measures one version of the code
from bench.common import (
    BACKENDS,
    Config,
    Result,
    pg_execute,
    pg_params,
    pg_schema,
    progress,
    rate,
    rss_mb,
    sqlite_file,
)
from eventstore import NO_STREAM, EventRegistry, EventStore, open_store
from eventstore.ids import uuid7

NAME = "eventstore"
T = TypeVar("T")

PAYLOAD = "x" * 500
B_CLIENTS = 50
C_BATCH = 100
D_BATCH = 1_000
E_STREAM_LENGTH = 10
PAGE = 1_000
WARM_UP = 20
RSS_SAMPLE_EVERY = 1_000

SCENARIO_A = "a one event per append"
SCENARIO_B = f"b {B_CLIENTS} concurrent clients, one event per append"
SCENARIO_C = f"c {C_BATCH} events per append"
SCENARIO_D = "d read_all decoded"
SCENARIO_E = f"e load one stream of {E_STREAM_LENGTH} events"
SCENARIO_A_FLOOR = "a floor: bare one-row INSERT per commit, no store (ratio = a's ceiling)"


@dataclass(frozen=True, slots=True)
class Happened:
    """Our benchmark event."""

    p: str


class PeerHappened(DomainEvent):
    """The peer's benchmark event (its metaclass makes it a frozen dataclass)."""

    p: str


@dataclass(frozen=True)
class Sizes:
    a_appends: int
    b_per_client: int
    c_appends: int
    d_events: int
    e_streams: int
    #: Runs of each write scenario (a-c), each on a fresh database; the fastest counts.
    write_repeats: int
    #: Full read_all passes (d) and passes over all streams (e); the fastest counts.
    d_rounds: int
    e_rounds: int


def sizes_for(config: Config) -> Sizes:
    if config.quick:
        return Sizes(
            a_appends=100,
            b_per_client=5,
            c_appends=10,
            d_events=5_000,
            e_streams=100,
            write_repeats=1,
            d_rounds=1,
            e_rounds=1,
        )
    return Sizes(
        a_appends=2_000,
        b_per_client=100,
        c_appends=300,
        d_events=1_000_000 if config.full else 200_000,
        e_streams=2_000,
        write_repeats=2,
        d_rounds=2,
        e_rounds=3,
    )


def registry() -> EventRegistry:
    reg = EventRegistry()
    reg.register(Happened)
    return reg


def new_stream_id() -> str:
    """Random ids for both sides: the peer's aggregates are keyed by UUIDv4 too."""
    return f"bench-{uuid.uuid4()}"


# -- where the data lives --------------------------------------------------------------------


@dataclass(frozen=True)
class Location:
    """A fresh SQLite file or PostgreSQL schema for one side of one scenario."""

    backend: str
    pg_url: str
    sqlite_path: str | None = None
    pg_schema: str | None = None


@contextmanager
def fresh(config: Config, backend: str, label: str) -> Iterator[Location]:
    if backend == "sqlite":
        with sqlite_file(config, label) as path:
            yield Location(backend, config.pg_url, sqlite_path=str(path))
    else:
        with pg_schema(config.pg_url, label) as schema:
            yield Location(backend, config.pg_url, pg_schema=schema)


# -- ours ------------------------------------------------------------------------------------


#: Extra options for our SQLite store, for the runs that measure one writer mode.
SQLITE_OPTIONS: dict[str, Any] = {}


def open_ours(loc: Location) -> EventStore:
    if loc.backend == "sqlite":
        return open_store(f"sqlite:///{loc.sqlite_path}", **SQLITE_OPTIONS)
    return open_store(loc.pg_url, schema=loc.pg_schema)


def with_ours(loc: Location, body: Callable[[EventStore, EventRegistry], Awaitable[T]]) -> T:
    """Open our store at ``loc`` in a new event loop, run ``body``, close the store."""

    async def main() -> T:
        store = open_ours(loc)
        await store.setup()
        try:
            return await body(store, registry())
        finally:
            await store.close()

    return asyncio.run(main())


async def ours_warm_up(store: EventStore, reg: EventRegistry) -> None:
    stream = new_stream_id()
    for version in range(WARM_UP):
        await store.append(stream, [reg.new_event(Happened(PAYLOAD))], expected_version=version)


async def ours_a(store: EventStore, reg: EventRegistry, n: int) -> float:
    await ours_warm_up(store, reg)
    stream = new_stream_id()
    start = time.perf_counter()
    for version in range(n):
        await store.append(stream, [reg.new_event(Happened(PAYLOAD))], expected_version=version)
    return time.perf_counter() - start


async def ours_b(store: EventStore, reg: EventRegistry, per_client: int) -> float:
    async def client(stream: str, versions: range) -> None:
        for version in versions:
            await store.append(stream, [reg.new_event(Happened(PAYLOAD))], expected_version=version)

    streams = [new_stream_id() for _ in range(B_CLIENTS)]
    # Warm-up: one event for every client, concurrently, then the timed run.
    await asyncio.gather(*(client(s, range(1)) for s in streams))
    start = time.perf_counter()
    await asyncio.gather(*(client(s, range(1, per_client + 1)) for s in streams))
    return time.perf_counter() - start


async def ours_c(store: EventStore, reg: EventRegistry, appends: int) -> float:
    await ours_warm_up(store, reg)
    start = time.perf_counter()
    for _ in range(appends):
        events = [reg.new_event(Happened(PAYLOAD)) for _ in range(C_BATCH)]
        await store.append(new_stream_id(), events, expected_version=NO_STREAM)
    return time.perf_counter() - start


async def ours_fill(
    store: EventStore, reg: EventRegistry, total: int, per_stream: int
) -> list[str]:
    """Write ``total`` events in streams of ``per_stream``, 100 appends at a time."""
    streams = [new_stream_id() for _ in range(total // per_stream)]
    for start in range(0, len(streams), 100):
        await asyncio.gather(
            *(
                store.append(
                    s,
                    [reg.new_event(Happened(PAYLOAD)) for _ in range(per_stream)],
                    expected_version=NO_STREAM,
                )
                for s in streams[start : start + 100]
            )
        )
    return streams


async def ours_read_all(store: EventStore, reg: EventRegistry) -> tuple[int, float]:
    count = 0
    last: object = None
    start = time.perf_counter()
    async for record in store.read_all():
        last = reg.decode(record)
        count += 1
    elapsed = time.perf_counter() - start
    assert isinstance(last, Happened) and last.p == PAYLOAD
    return count, elapsed


async def ours_load_streams(store: EventStore, reg: EventRegistry, ids: list[str]) -> float:
    """Seconds to load and decode each stream once, in the given order."""
    start = time.perf_counter()
    for stream in ids:
        events = [reg.decode(r) for r in await store.load_stream(stream)]
        if len(events) != E_STREAM_LENGTH:
            raise AssertionError(f"{stream}: {len(events)} events")
    return time.perf_counter() - start


# -- peer ------------------------------------------------------------------------------------


class Peer:
    """eventsourcing's EventStore on its own SQLite or PostgreSQL persistence module."""

    def __init__(self, loc: Location, pool_size: int = 5, max_overflow: int = 10) -> None:
        factory: InfrastructureFactory[Any]
        if loc.backend == "sqlite":
            assert loc.sqlite_path is not None
            factory = SQLiteFactory({SQLiteFactory.SQLITE_DBNAME: loc.sqlite_path})
        else:
            assert loc.pg_schema is not None
            p = pg_params(loc.pg_url)
            factory = PostgresFactory(
                {
                    PostgresFactory.POSTGRES_DBNAME: p.dbname,
                    PostgresFactory.POSTGRES_HOST: p.host,
                    PostgresFactory.POSTGRES_PORT: str(p.port),
                    PostgresFactory.POSTGRES_USER: p.user,
                    PostgresFactory.POSTGRES_PASSWORD: p.password,
                    PostgresFactory.POSTGRES_SCHEMA: loc.pg_schema,
                    # The faster configuration: inserts run in a server-side function.
                    PostgresFactory.POSTGRES_ENABLE_DB_FUNCTIONS: "y",
                    PostgresFactory.POSTGRES_POOL_SIZE: str(pool_size),
                    PostgresFactory.POSTGRES_MAX_OVERFLOW: str(max_overflow),
                }
            )
        self.factory = factory
        transcoder = JSONTranscoder()
        # The transcodings Application.register_transcodings() adds.
        transcoder.register(UUIDAsHex())
        transcoder.register(DecimalAsStr())
        transcoder.register(DatetimeAsISO())
        self.recorder: ApplicationRecorder = factory.application_recorder()
        self.store: PeerEventStore[uuid.UUID] = PeerEventStore(
            factory.mapper(transcoder=transcoder), self.recorder
        )

    @staticmethod
    def event(originator_id: uuid.UUID, version: int) -> PeerHappened:
        return PeerHappened(  # type: ignore[call-arg]
            originator_id=originator_id,
            originator_version=version,
            timestamp=PeerHappened.create_timestamp(),
            p=PAYLOAD,
        )

    def append_one(self, originator_id: uuid.UUID, version: int) -> None:
        self.store.put([self.event(originator_id, version)])

    def warm_up(self) -> None:
        originator_id = uuid.uuid4()
        for version in range(1, WARM_UP + 1):
            self.append_one(originator_id, version)

    def fill(self, total: int, per_stream: int) -> list[uuid.UUID]:
        """Write ``total`` events in streams of ``per_stream``, about 1,000 events per call."""
        ids = [uuid.uuid4() for _ in range(total // per_stream)]
        per_call = max(1, D_BATCH // per_stream)
        for start in range(0, len(ids), per_call):
            self.store.put(
                [
                    self.event(oid, version)
                    for oid in ids[start : start + per_call]
                    for version in range(1, per_stream + 1)
                ]
            )
        return ids

    def read_all(self) -> Iterator[Any]:
        to_domain_event = self.store.mapper.to_domain_event
        start = 1
        while True:
            page = self.recorder.select_notifications(start, PAGE)
            for notification in page:
                yield to_domain_event(notification)
            if len(page) < PAGE:
                return
            start = page[-1].id + 1

    def sqlite_pragmas(self) -> tuple[str, int]:
        """journal_mode and synchronous of a connection from the peer's own pool."""
        assert isinstance(self.factory, SQLiteFactory)
        with self.factory.datastore.transaction(commit=False) as cursor:
            cursor.execute("PRAGMA journal_mode")
            mode = str(cursor.fetchone()[0])
            cursor.execute("PRAGMA synchronous")
            return mode, int(cursor.fetchone()[0])

    def close(self) -> None:
        self.factory.close()


def with_peer(loc: Location, body: Callable[[Peer], T], **options: int) -> T:
    peer = Peer(loc, **options)
    try:
        return body(peer)
    finally:
        peer.close()


def peer_a(peer: Peer, n: int) -> float:
    peer.warm_up()
    originator_id = uuid.uuid4()
    start = time.perf_counter()
    for version in range(1, n + 1):
        peer.append_one(originator_id, version)
    return time.perf_counter() - start


def peer_b(peer: Peer, per_client: int) -> float:
    barrier = threading.Barrier(B_CLIENTS + 1)
    errors: list[BaseException] = []

    def client() -> None:
        originator_id = uuid.uuid4()
        try:
            peer.append_one(originator_id, 1)  # warm-up: the pool opens its connections
            barrier.wait()
            for version in range(2, per_client + 2):
                peer.append_one(originator_id, version)
        except BaseException as exc:
            errors.append(exc)
            barrier.abort()

    threads = [threading.Thread(target=client) for _ in range(B_CLIENTS)]
    for thread in threads:
        thread.start()
    with contextlib.suppress(threading.BrokenBarrierError):  # a client failed: raised below
        barrier.wait()
    start = time.perf_counter()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - start
    if errors:
        raise errors[0]
    return elapsed


def peer_c(peer: Peer, appends: int) -> float:
    peer.warm_up()
    start = time.perf_counter()
    for _ in range(appends):
        originator_id = uuid.uuid4()
        peer.store.put([peer.event(originator_id, v) for v in range(1, C_BATCH + 1)])
    return time.perf_counter() - start


def peer_read_all(peer: Peer) -> tuple[int, float]:
    count = 0
    last: object = None
    start = time.perf_counter()
    for event in peer.read_all():
        last = event
        count += 1
    elapsed = time.perf_counter() - start
    assert isinstance(last, PeerHappened) and last.p == PAYLOAD
    return count, elapsed


def peer_load_streams(peer: Peer, ids: list[uuid.UUID]) -> float:
    start = time.perf_counter()
    for originator_id in ids:
        events = list(peer.store.get(originator_id))
        if len(events) != E_STREAM_LENGTH:
            raise AssertionError(f"{originator_id}: {len(events)} events")
    return time.perf_counter() - start


def with_both(
    ours_at: Location,
    peer_at: Location,
    body: Callable[[EventStore, EventRegistry, Peer], Awaitable[T]],
) -> T:
    """Both sides open at once, so that read rounds can alternate between them."""

    async def main() -> T:
        store = open_ours(ours_at)
        await store.setup()
        try:
            peer = Peer(peer_at)
            try:
                return await body(store, registry(), peer)
            finally:
                peer.close()
        finally:
            await store.close()

    return asyncio.run(main())


# -- RSS while reading, in a child process ------------------------------------------------------


def measure_rss(loc: Location, impl: str, expected: int) -> float:
    """RSS growth in MiB of a fresh process reading the whole log at ``loc``, decoded."""
    spec = json.dumps({"location": asdict(loc), "impl": impl, "expected": expected})
    done = subprocess.run(
        [sys.executable, "-m", "bench._rss", spec],
        capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parents[1],
    )
    if done.returncode != 0:
        raise RuntimeError(f"RSS child for {impl} failed:\n{done.stderr[-2000:]}")
    report = json.loads(done.stdout.strip().splitlines()[-1])
    if report["count"] != expected:
        raise AssertionError(f"{impl} read {report['count']} events, expected {expected}")
    return float(report["peak_mb"] - report["baseline_mb"])


def rss_child(spec_json: str) -> None:
    spec = json.loads(spec_json)
    loc = Location(**spec["location"])
    baseline = peak = 0.0
    count = 0

    def sample() -> None:
        nonlocal peak
        peak = max(peak, rss_mb())

    if spec["impl"] == "ours":

        async def read(store: EventStore, reg: EventRegistry) -> None:
            nonlocal baseline, peak, count
            baseline = peak = rss_mb()
            async for record in store.read_all():
                reg.decode(record)
                count += 1
                if count % RSS_SAMPLE_EVERY == 0:
                    sample()

        with_ours(loc, read)
    else:

        def read_peer(peer: Peer) -> None:
            nonlocal baseline, peak, count
            baseline = peak = rss_mb()
            for _ in peer.read_all():
                count += 1
                if count % RSS_SAMPLE_EVERY == 0:
                    sample()

        with_peer(loc, read_peer)
    sample()
    print(json.dumps({"baseline_mb": baseline, "peak_mb": peak, "count": count}))


# -- the run ---------------------------------------------------------------------------------


def _sqlite_check(config: Config) -> None:
    """Say, and insist, that both sides run SQLite with the same journal and sync settings."""
    with fresh(config, "sqlite", "check") as loc:
        mode, sync = with_peer(loc, Peer.sqlite_pragmas)

        async def ours_pragmas(store: EventStore, _reg: EventRegistry) -> tuple[str, int]:
            conn = store.engine.raw_connection()  # type: ignore[attr-defined]
            try:
                cur = conn.cursor()
                cur.execute("PRAGMA journal_mode")
                our_mode = str(cur.fetchone()[0])
                cur.execute("PRAGMA synchronous")
                return our_mode, int(cur.fetchone()[0])
            finally:
                conn.close()

        ours = with_ours(loc, ours_pragmas)
    progress(f"SQLite journal_mode/synchronous: ours {ours}, peer {(mode, sync)} (2 = FULL)")
    if (mode.lower(), sync) != (ours[0].lower(), ours[1]):
        raise RuntimeError(f"unlike SQLite settings: ours {ours}, peer {(mode, sync)}")


def floor_a(loc: Location, n: int) -> float:
    """Seconds for ``n`` one-row commits into our events table by the bare driver, no store.

    Each commit is a prepared INSERT of a ready-made row, from one client that waits for every
    acknowledgement: the round trip and the durable commit that any store pays for (a), and
    nothing else. Divided by the peer's time it is the best ratio (a) could have.
    """
    with_ours(loc, _tables_only)  # our setup() makes the table, with its keys and guards
    warm = _floor_rows(WARM_UP)
    rows = _floor_rows(n, first=WARM_UP + 1)
    insert = f"INSERT INTO events ({eventstore.sql.COLUMNS}) VALUES "
    if loc.backend == "sqlite":
        import sqlite3

        conn = sqlite3.connect(str(loc.sqlite_path), isolation_level=None)
        try:
            conn.execute("PRAGMA synchronous=FULL")
            statement = insert + "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
            for row in warm:
                conn.execute(statement, row)
            start = time.perf_counter()
            for row in rows:
                conn.execute(statement, row)
            return time.perf_counter() - start
        finally:
            conn.close()

    async def main() -> float:
        import asyncpg

        p = pg_params(loc.pg_url)
        conn = await asyncpg.connect(
            host=p.host,
            port=p.port,
            user=p.user,
            password=p.password or None,
            database=p.dbname,
            server_settings={"search_path": str(loc.pg_schema)},
        )
        try:
            statement = await conn.prepare(
                insert + "($1, $2, $3, $4::uuid, $5, $6, $7, $8, $9, $10)"
            )
            for row in warm:
                await statement.fetchval(*row)
            start = time.perf_counter()
            for row in rows:
                await statement.fetchval(*row)
            return time.perf_counter() - start
        finally:
            await conn.close()

    return asyncio.run(main())


async def _tables_only(_store: EventStore, _reg: EventRegistry) -> None:
    return None


def _floor_rows(n: int, first: int = 1) -> list[tuple[Any, ...]]:
    stream = new_stream_id()
    data = json.dumps({"p": PAYLOAD})
    stamp = time.time_ns() // 1000
    return [
        (
            first + i,
            stream,
            first + i,
            # Time-ordered, as our store's: the floor must not pay for random index inserts.
            str(uuid7()),
            "Happened",
            1,
            data,
            "{}",
            stamp,
            hashlib.sha256(str(i).encode()).digest(),
        )
        for i in range(n)
    ]


def write_scenario(
    config: Config,
    backend: str,
    label: str,
    repeats: int,
    ours_body: Callable[[EventStore, EventRegistry], Awaitable[float]],
    peer_body: Callable[[Peer], float],
    floor_body: Callable[[Location], float] | None = None,
    **peer_options: int,
) -> tuple[float, float, float]:
    """Fastest seconds of each side (and of the floor, if given; else 0) over ``repeats``
    alternating runs on fresh databases."""
    ours: list[float] = []
    peer: list[float] = []
    floor: list[float] = []
    for _ in range(repeats):
        with fresh(config, backend, f"{label}_ours") as loc:
            ours.append(with_ours(loc, ours_body))
        with fresh(config, backend, f"{label}_peer") as loc:
            peer.append(with_peer(loc, peer_body, **peer_options))
        if floor_body is not None:
            with fresh(config, backend, f"{label}_floor") as loc:
                floor.append(floor_body(loc))
    return min(ours), min(peer), min(floor, default=0.0)


def read_all_scenario(
    config: Config, backend: str, sizes: Sizes
) -> tuple[float, float, float, float]:
    """(d): events/s of each side, then RSS growth (MiB) of each side in a child process."""
    n = sizes.d_events
    with fresh(config, backend, "d_ours") as ours_at, fresh(config, backend, "d_peer") as peer_at:

        async def body(store: EventStore, reg: EventRegistry, peer: Peer) -> tuple[float, float]:
            started = time.perf_counter()
            await ours_fill(store, reg, n, D_BATCH)
            progress(f"{backend}: ours wrote {n:,} events in {time.perf_counter() - started:.1f}s")
            started = time.perf_counter()
            peer.fill(n, D_BATCH)
            progress(f"{backend}: peer wrote {n:,} events in {time.perf_counter() - started:.1f}s")
            ours: list[float] = []
            theirs: list[float] = []
            for _ in range(sizes.d_rounds):
                count, seconds = await ours_read_all(store, reg)
                if count != n:
                    raise AssertionError(f"ours: read_all returned {count} of {n} events")
                ours.append(seconds)
                count, seconds = peer_read_all(peer)
                if count != n:
                    raise AssertionError(f"peer: read_all returned {count} of {n} events")
                theirs.append(seconds)
            return min(ours), min(theirs)

        ours_s, peer_s = with_both(ours_at, peer_at, body)
        ours_rss = measure_rss(ours_at, "ours", n)
        peer_rss = measure_rss(peer_at, "peer", n)
    return rate(n, ours_s), rate(n, peer_s), ours_rss, peer_rss


def load_stream_scenario(config: Config, backend: str, sizes: Sizes) -> tuple[float, float]:
    """(e): streams/s of each side, fastest of ``e_rounds`` alternating passes."""
    n = sizes.e_streams
    with fresh(config, backend, "e_ours") as ours_at, fresh(config, backend, "e_peer") as peer_at:

        async def body(store: EventStore, reg: EventRegistry, peer: Peer) -> tuple[float, float]:
            ours_ids = await ours_fill(store, reg, n * E_STREAM_LENGTH, E_STREAM_LENGTH)
            peer_ids = peer.fill(n * E_STREAM_LENGTH, E_STREAM_LENGTH)
            random.Random(2).shuffle(ours_ids)
            random.Random(2).shuffle(peer_ids)
            ours: list[float] = []
            theirs: list[float] = []
            for _ in range(sizes.e_rounds):
                ours.append(await ours_load_streams(store, reg, ours_ids))
                theirs.append(peer_load_streams(peer, peer_ids))
            return min(ours), min(theirs)

        ours_s, peer_s = with_both(ours_at, peer_at, body)
    return rate(n, ours_s), rate(n, peer_s)


def run_backend(config: Config, backend: str, sizes: Sizes) -> list[Result]:
    results: list[Result] = []

    def record(scenario: str, unit: str, ours: float, peer: float) -> None:
        result = Result(scenario, backend, unit, ours, peer)
        results.append(result)
        progress(
            f"{backend:10} {scenario:48} ours {ours:>10,.1f}  peer {peer:>10,.1f}  "
            f"ratio {result.ratio:.2f}  {unit}"
        )

    repeats = sizes.write_repeats
    n = sizes.a_appends
    ours_s, peer_s, floor_s = write_scenario(
        config,
        backend,
        "a",
        repeats,
        lambda s, r: ours_a(s, r, n),
        lambda p: peer_a(p, n),
        floor_body=lambda loc: floor_a(loc, n),
    )
    record(SCENARIO_A, "events/s", rate(n, ours_s), rate(n, peer_s))
    record(SCENARIO_A_FLOOR, "events/s", rate(n, floor_s), rate(n, peer_s))

    per_client = sizes.b_per_client
    ours_s, peer_s, _ = write_scenario(
        config,
        backend,
        "b",
        repeats,
        lambda s, r: ours_b(s, r, per_client),
        lambda p: peer_b(p, per_client),
        # A pool as big as the thread count was the peer's fastest setting here (vs 5+10, 20).
        pool_size=B_CLIENTS,
        max_overflow=0,
    )
    n = B_CLIENTS * per_client
    record(SCENARIO_B, "events/s", rate(n, ours_s), rate(n, peer_s))

    appends = sizes.c_appends
    ours_s, peer_s, _ = write_scenario(
        config,
        backend,
        "c",
        repeats,
        lambda s, r: ours_c(s, r, appends),
        lambda p: peer_c(p, appends),
    )
    n = C_BATCH * appends
    record(SCENARIO_C, "events/s", rate(n, ours_s), rate(n, peer_s))

    if backend == "sqlite":
        # The same single-client scenarios with each of the other two writers: "thread" (every
        # commit on the writer thread; what the default does under concurrency or on a slow
        # disk) and "inline" (every commit on the loop's thread; for a single-writer tool).
        a_n = sizes.a_appends
        for writer in ("thread", "inline"):
            SQLITE_OPTIONS["writer"] = writer
            try:
                ours_s, peer_s, _ = write_scenario(
                    config,
                    backend,
                    "a",
                    repeats,
                    lambda s, r: ours_a(s, r, a_n),
                    lambda p: peer_a(p, a_n),
                )
                record(
                    f"{SCENARIO_A} ({writer} writer)",
                    "events/s",
                    rate(a_n, ours_s),
                    rate(a_n, peer_s),
                )
                ours_s, peer_s, _ = write_scenario(
                    config,
                    backend,
                    "c",
                    repeats,
                    lambda s, r: ours_c(s, r, appends),
                    lambda p: peer_c(p, appends),
                )
                n = C_BATCH * appends
                record(
                    f"{SCENARIO_C} ({writer} writer)", "events/s", rate(n, ours_s), rate(n, peer_s)
                )
            finally:
                SQLITE_OPTIONS.clear()

    ours_rate, peer_rate, ours_rss, peer_rss = read_all_scenario(config, backend, sizes)
    record(SCENARIO_D, "events/s", ours_rate, peer_rate)
    record(
        f"d RSS growth reading {sizes.d_events:,} events (lower is better)",
        "MB",
        ours_rss,
        peer_rss,
    )

    ours_rate, peer_rate = load_stream_scenario(config, backend, sizes)
    record(SCENARIO_E, "streams/s", ours_rate, peer_rate)
    return results


def source_fingerprint() -> str:
    """A digest of the event store's sources, to tell which version of them a run measured."""
    digest = hashlib.sha256()
    for path in sorted(Path(eventstore.__file__).parent.glob("*.py")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


def run(config: Config) -> list[Result]:
    import psycopg

    sizes = sizes_for(config)
    progress(f"eventstore benchmark ({config.mode}): {sizes}")
    progress(f"ours: eventstore sources sha256 {source_fingerprint()}")
    progress(
        f"peer: eventsourcing {importlib.metadata.version('eventsourcing')}, psycopg "
        f"{psycopg.__version__} ({psycopg.pq.__impl__} implementation)"
    )
    server = pg_execute(config.pg_url, "SELECT version()")[0][0]
    sync_commit = pg_execute(config.pg_url, "SHOW synchronous_commit")[0][0]
    progress(f"PostgreSQL: {server.split(' on ')[0]}, synchronous_commit={sync_commit}")
    _sqlite_check(config)
    results: list[Result] = []
    for backend in BACKENDS:
        results.extend(run_backend(config, backend, sizes))
    return results
