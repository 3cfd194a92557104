"""The Merkle tree's costs (against their targets), on SQLite and PostgreSQL.

* Appends: the event store's scenarios b (50 concurrent clients, one event per append) and c
  (100 events per append) with the tree kept, against the same store with ``merkle=False``
  (the "peer" column): the ratio must stay >= 0.95. Runs alternate on fresh databases; the
  fastest of each side counts. Beside the rate, the CPU time our process spent on the same
  runs, which the machine's other load does not change.
* Proofs: a log of 1,000,000 events (50,000 with ``--quick``), written by ``restore`` (which
  builds the tree as appends do); inclusion proofs of random positions in random tree sizes,
  and consistency proofs between random sizes, in process, through the store's reads. The
  "peer" column is the bound, 5 ms at p99. Beside them, the floor: the same store reading one
  stored node (one indexed row, the least any proof reads), timed the same way in the same
  run, so that a tail the machine's load causes shows in both.
* Building the tree from an export (``statements events export`` of that log, not gzipped):
  ``eventstore.tree.export_tree``, one process per CPU; the "peer" column is the target,
  500,000 events/s. Beside it, the floor: bare hashlib computing the same leaves and nodes
  from records already parsed and encoded in memory, in one process.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
import statistics
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import orjson

from bench.common import BACKENDS, Config, Result, progress, rate
from bench.eventstore import (
    B_CLIENTS,
    C_BATCH,
    PAYLOAD,
    SCENARIO_B,
    SCENARIO_C,
    Location,
    fresh,
    ours_b,
    ours_c,
    registry,
    sizes_for,
)
from eventstore import EventRegistry, EventStore, open_store
from eventstore.audit import export_file
from eventstore.chain import GENESIS_HASH, record_encoding, record_hash
from eventstore.ids import uuid7
from eventstore.planning import Row
from eventstore.tree import consistency_proof, export_tree, inclusion_proof

PROOF_BOUND_MS = 5.0
EXPORT_TARGET = 500_000
PROOFS = 2_000


def _open(loc: Location, merkle: bool) -> EventStore:
    if loc.backend == "sqlite":
        return open_store(f"sqlite:///{loc.sqlite_path}", merkle=merkle)
    return open_store(loc.pg_url, schema=loc.pg_schema, merkle=merkle)


def _with_store(
    loc: Location, merkle: bool, body: Callable[[EventStore, EventRegistry], Awaitable[float]]
) -> tuple[float, float]:
    """The body's seconds, and the CPU seconds this process spent in it (every thread: on
    SQLite the writer's too; on PostgreSQL not the server's)."""

    async def main() -> tuple[float, float]:
        store = _open(loc, merkle)
        await store.setup()
        try:
            cpu = time.process_time()
            seconds = await body(store, registry())
            return seconds, time.process_time() - cpu
        finally:
            await store.close()

    return asyncio.run(main())


def append_cost(config: Config, backend: str) -> list[Result]:
    sizes = sizes_for(config)
    repeats = 1 if config.quick else 3
    scenarios: list[tuple[str, Callable[[EventStore, EventRegistry], Awaitable[float]], int]] = [
        (
            SCENARIO_B,
            lambda s, r: ours_b(s, r, sizes.b_per_client),
            B_CLIENTS * sizes.b_per_client,
        ),
        (SCENARIO_C, lambda s, r: ours_c(s, r, sizes.c_appends), C_BATCH * sizes.c_appends),
    ]
    results: list[Result] = []
    for name, body, events in scenarios:
        with_tree: list[tuple[float, float]] = []
        without: list[tuple[float, float]] = []
        for _ in range(repeats):
            with fresh(config, backend, "merkle_on") as loc:
                with_tree.append(_with_store(loc, True, body))
            with fresh(config, backend, "merkle_off") as loc:
                without.append(_with_store(loc, False, body))
        result = Result(
            f"{name}: with the tree (peer: without it)",
            backend,
            "events/s",
            rate(events, min(wall for wall, _cpu in with_tree)),
            rate(events, min(wall for wall, _cpu in without)),
        )
        # CPU time is what the tree adds to our process, whatever else the machine runs.
        cpu = Result(
            f"{name}: this process's CPU time, with the tree (peer: without it)",
            backend,
            "events/CPU-s",
            rate(events, min(cpu for _wall, cpu in with_tree)),
            rate(events, min(cpu for _wall, cpu in without)),
        )
        for row in (result, cpu):
            progress(f"{backend}: {row.scenario}: ratio {row.ratio:.3f}")
        results.extend((result, cpu))
    return results


def _rows(count: int) -> Iterator[Row]:
    """A log of ``count`` events with a sound chain, as an export would restore it."""
    previous = GENESIS_HASH
    data = f'{{"p":"{PAYLOAD}"}}'
    stamp = 1_700_000_000_000_000
    versions: dict[str, int] = {}
    for position in range(1, count + 1):
        stream = f"stream-{position % 5000}"
        version = versions[stream] = versions.get(stream, 0) + 1
        event_id = str(uuid7())
        fields = (stream, version, event_id, "Happened", 1, data, "{}", stamp + position)
        digest = record_hash(previous, position, *fields)
        yield Row(position, *fields, digest)
        previous = digest


def _percentiles(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return statistics.median(ordered), ordered[int(len(ordered) * 0.99) - 1]


async def _proofs(store: EventStore, size: int) -> dict[str, tuple[float, float]]:
    """(p50, p99) in ms of inclusion proofs, of consistency proofs and of the floor (reading one
    stored node), in wall time; and of the proofs in this thread's CPU time, which leaves out
    the time the machine's other processes took (and, on PostgreSQL, the server's work)."""
    pick = random.Random(18)
    samples: dict[str, list[float]] = {
        name: []
        for name in ("inclusion", "consistency", "floor", "inclusion cpu", "consistency cpu")
    }
    clock, cpu = time.perf_counter, time.thread_time
    for _ in range(PROOFS):
        started = clock()
        await store.read_tree_nodes([pick.randint(1, size)])
        samples["floor"].append((clock() - started) * 1000)
        tree_size = pick.randint(size // 2, size)
        position = pick.randint(1, tree_size)
        started, started_cpu = clock(), cpu()
        await inclusion_proof(store, position, tree_size)
        samples["inclusion"].append((clock() - started) * 1000)
        samples["inclusion cpu"].append((cpu() - started_cpu) * 1000)
        new = pick.randint(2, size)
        old = pick.randint(1, new - 1)
        started, started_cpu = clock(), cpu()
        await consistency_proof(store, old, new)
        samples["consistency"].append((clock() - started) * 1000)
        samples["consistency cpu"].append((cpu() - started_cpu) * 1000)
    return {name: _percentiles(values) for name, values in samples.items()}


def proofs_and_export(config: Config, backend: str, events: int) -> list[Result]:
    results: list[Result] = []
    with fresh(config, backend, "merkle_proofs") as loc:

        async def main() -> tuple[dict[str, tuple[float, float]], float, float]:
            store = _open(loc, True)
            await store.setup()
            try:
                started = time.perf_counter()
                await store.restore(lambda: _rows(events))
                progress(
                    f"{backend}: restored {events:,} events (with their tree) in "
                    f"{time.perf_counter() - started:.1f}s"
                )
                await _proofs(store, events)  # warm-up: caches, prepared statements
                figures = await _proofs(store, events)
                export_seconds = floor_rate = 0.0
                if backend == "sqlite":
                    export = config.tmp_dir / "merkle-export.jsonl"
                    await export_file(store, export)
                    export_seconds = min(_export_seconds(export, events) for _ in range(3))
                    floor_rate = max(_hashlib_floor(export) for _ in range(3))
                    export.unlink()
                return figures, export_seconds, floor_rate
            finally:
                await store.close()

        figures, export_seconds, floor_rate = asyncio.run(main())
    size = f"{events:,} events"
    rows = [
        ("inclusion", f"inclusion proof at {size}"),
        ("consistency", f"consistency proof at {size}"),
        ("floor", f"floor: read one stored node at {size}"),
        ("inclusion cpu", f"inclusion proof at {size}, this thread's CPU time"),
        ("consistency cpu", f"consistency proof at {size}, this thread's CPU time"),
    ]
    for name, label in rows:
        p50, p99 = figures[name]
        results.append(
            Result(f"{label}, p99 (peer: the bound)", backend, "ms", p99, PROOF_BOUND_MS)
        )
        results.append(Result(f"{label}, p50", backend, "ms", p50, PROOF_BOUND_MS))
    if export_seconds:
        results.append(
            Result(
                f"tree of an export of {size} (peer: the target)",
                "file",
                "events/s",
                rate(events, export_seconds),
                EXPORT_TARGET,
            )
        )
        results.append(
            Result(
                "floor: bare hashlib, the same leaves and as many nodes, records in memory, one "
                "process (peer: the target)",
                "file",
                "events/s",
                floor_rate,
                EXPORT_TARGET,
            )
        )
    for result in results:
        progress(f"{backend}: {result.scenario}: {result.ours:,.2f} {result.unit}")
    return results


def _export_seconds(path: Path, events: int) -> float:
    started = time.perf_counter()
    size, _root = export_tree(path)
    seconds = time.perf_counter() - started
    if size != events:
        raise AssertionError(f"the export's tree has {size} leaves, not {events}")
    return seconds


def _hashlib_floor(path: Path, limit: int = 200_000) -> float:
    """Events/s of SHA-256 alone over the export's first ``limit`` events: each leaf, then
    level by level as many nodes as their tree has (n - 1), from records parsed and encoded
    beforehand."""
    records: list[bytes] = []
    with path.open("rb") as source:
        for line in source:
            item = orjson.loads(line)
            records.append(
                b"\x00"
                + record_encoding(
                    item["position"],
                    item["stream_id"],
                    item["version"],
                    item["event_id"],
                    item["type"],
                    item["schema_version"],
                    item["data"],
                    item["metadata"],
                    item["recorded_at"],
                )
            )
            if len(records) == limit:
                break
    sha = hashlib.sha256
    started = time.perf_counter()
    level = [sha(record).digest() for record in records]
    while len(level) > 1:
        odd = level[-1:] if len(level) & 1 else []
        pairs = zip(level[::2], level[1::2], strict=False)
        level = [sha(b"\x01" + a + b).digest() for a, b in pairs] + odd
    return len(records) / (time.perf_counter() - started)


def run(config: Config) -> list[Result]:
    events = 50_000 if config.quick else 1_000_000
    results: list[Result] = []
    for backend in BACKENDS:
        results.extend(append_cost(config, backend))
        results.extend(proofs_and_export(config, backend, events))
    return results
