"""Scale: append, read_all, the statement page and a proof against a small store and at N
events (``python -m bench --only scale --events 20000000``; docs/SCALING.md has the figures).

A private PostgreSQL cluster of its own (tests/reliability/pgcluster.py; it is thrown away
afterwards) and one ``statements serve`` process running every projection, as an API host does:
1. **small**: the demo's statements (1,000) and views (10,000), projections caught up; measure.
2. **fill** to N events: first one statement per 1,000 events to come, published through the
   command handlers (so the read models grow with the log as they would on the site), then
   ``Viewed`` events spread over them, written by a PL/pgSQL procedure (``FILL``) that numbers,
   versions, chains them and grows the Merkle tree exactly as the store does (``verifyLog``
   over the range passes; the last 10,000 node blobs are rebuilt in Python and compared) and
   commits every 100,000. Through the Python append path 20M events took hours on this
   machine; that path's own rate is measured in both phases instead. The server's projections
   follow the fill as it commits. Each tenth reports the rate, the projections' slowest
   position and the sizes.
3. **large**: projections caught up (or what they reached in ``CATCH_UP_LIMIT``); measure.

Measured each time:
* **append**: 500 one-event appends in a row (p50 and p99 µs), as a lone recordView does;
* **batched append**: 10 s of appends of 1,000 views, 4 in flight (events/s), as batched
  ingestion would;
* **read_all**: 200,000 events from the store's tail, decoded (events/s);
* **statement page**: 300 requests of the statement page in a row over HTTP (p50 and p99 ms);
* **proof**: an ``inclusionProof`` of a random event in the tree at the head, over HTTP (ms),
  checked against the root; and ``verifyLog(from, to)`` over the last 10,000 events (the
  chain's range check);
* **sizes**: the events table with its indexes, and the read models.

Needs about 1 KB of disk per event (20 GB for 20M; ``df -h`` first).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import shutil
import statistics
import tempfile
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import httpx

from bench.common import Config, Result, progress
from domain.commands import CommandMetadata, PublishStatement
from domain.events import MinisterRef
from domain.handlers import StatementHandlers
from domain.streams import views_stream
from eventstore import ANY, EventStore, NewEvent, open_store
from eventstore.merkle import TreeBuilder, verify_inclusion
from eventstore.tree import frontier_of, frontier_positions, row_of, tree_blobs, tree_root
from eventstore.urls import create_engine
from graphql_api.security.auth import create_token
from graphql_api.service_layer.demo_loader import write_demo
from graphql_api.service_layer.eventlog import StoreEventLog
from projections.registry import event_registry
from tests.reliability.live import LiveServer
from tests.reliability.pgcluster import PrivateCluster, pg_bindir

META = CommandMetadata(actor="bench", correlation_id="bench-scale")
STATEMENT_PAGE = """
query Page($id: ID!) {
  statement(id: $id) {
    id slug title kind location occurredOn publishedAt paragraphs viewCount
    minister { id name title }
    topics { slug name }
    related { id title slug minister { id name } }
  }
}"""
VERIFY = """query($from: Int!, $to: Int!) { verifyLog(from: $from, to: $to) { ok checked } }"""
PROOF = """query($position: Int!, $size: Int!) {
  inclusionProof(position: $position, treeSize: $size) { leafIndex leafHash hashes }
}"""
CHECKED_BLOBS = 10_000
BATCH = 1000
IN_FLIGHT = 4
VIEWS_PER_STATEMENT = 1000
COMMIT_EVERY = 100_000
#: Views for the statements in ``ids``, numbered after the head, each chained to the previous
#: event exactly as eventstore/chain.py does and given its Merkle node blob exactly as
#: eventstore/merkle.py's ``append_leaf`` does (docs/AUDIT.md), in transactions of COMMIT_EVERY.
#: ``frontier`` is the tree's frontier at the head (``eventstore.tree.frontier_of``), largest
#: subtree first; the procedure keeps it as it appends.
FILL = r"""
CREATE OR REPLACE PROCEDURE bench_fill_views(
  target bigint, ids text[], chunk int, frontier bytea[])
LANGUAGE plpgsql AS $$
DECLARE
  n int := array_length(ids, 1);
  fl int := coalesce(array_length(frontier, 1), 0);
  pos bigint;
  prev bytea;
  versions bigint[];
  i int;
  k int;
  stream text;
  eid uuid;
  body text;
  stamp bigint;
  rec bytea;
  h bytea;
  cur bytea;
  nodes bytea;
  size bigint;
  last bigint;
  p_pos bigint[]; p_stream text[]; p_ver bigint[]; p_eid uuid[]; p_data text[];
  p_rec bigint[]; p_hash bytea[]; p_tree bytea[];
BEGIN
  SELECT position, hash INTO pos, prev FROM events ORDER BY position DESC LIMIT 1;
  versions := array_fill(0::bigint, ARRAY[n]);
  FOR i IN 1..n LOOP
    SELECT coalesce(max(version), 0) INTO last FROM events
    WHERE stream_id = 'statement-views-' || ids[i];
    versions[i] := last;
  END LOOP;
  WHILE pos < target LOOP
    p_pos := '{}'; p_stream := '{}'; p_ver := '{}'; p_eid := '{}'; p_data := '{}';
    p_rec := '{}'; p_hash := '{}'; p_tree := '{}';
    FOR k IN 1..LEAST(chunk, target - pos) LOOP
      pos := pos + 1;
      i := 1 + floor(random() * n)::int;
      versions[i] := versions[i] + 1;
      stream := 'statement-views-' || ids[i];
      eid := gen_random_uuid();
      body := '{"statement_id":"' || ids[i] || '"}';
      stamp := (extract(epoch FROM clock_timestamp()) * 1000000)::bigint;
      rec := int8send(octet_length(pos::text)) || convert_to(pos::text, 'UTF8')
        || int8send(octet_length(stream)) || convert_to(stream, 'UTF8')
        || int8send(octet_length(versions[i]::text)) || convert_to(versions[i]::text, 'UTF8')
        || int8send(36) || convert_to(eid::text, 'UTF8')
        || int8send(6) || convert_to('Viewed', 'UTF8')
        || int8send(1) || convert_to('1', 'UTF8')
        || int8send(octet_length(convert_to(body, 'UTF8'))) || convert_to(body, 'UTF8')
        || int8send(2) || convert_to('{}', 'UTF8')
        || int8send(octet_length(stamp::text)) || convert_to(stamp::text, 'UTF8');
      h := sha256(prev || rec);
      prev := h;
      -- The leaf and the perfect subtrees it completes (RFC 9162; merkle.append_leaf).
      cur := sha256('\x00'::bytea || rec);
      nodes := cur;
      size := pos - 1;
      WHILE size & 1 = 1 LOOP
        cur := sha256('\x01'::bytea || frontier[fl] || cur);
        nodes := nodes || cur;
        fl := fl - 1;
        size := size >> 1;
      END LOOP;
      fl := fl + 1;
      frontier[fl] := cur;
      p_pos := p_pos || pos; p_stream := p_stream || stream; p_ver := p_ver || versions[i];
      p_eid := p_eid || eid; p_data := p_data || body; p_rec := p_rec || stamp;
      p_hash := p_hash || h; p_tree := p_tree || nodes;
    END LOOP;
    INSERT INTO events (position, stream_id, version, event_id, type, schema_version, data,
                        metadata, recorded_at, hash, tree)
    SELECT a, b, c, d, 'Viewed', 1, e, '{}', f, g, t
    FROM unnest(p_pos, p_stream, p_ver, p_eid, p_data, p_rec, p_hash, p_tree)
      AS u(a, b, c, d, e, f, g, t);
    COMMIT;
  END LOOP;
END $$;
"""
#: How long the large store's projections get to catch up before measuring anyway (seconds;
#: $STATEMENTS_BENCH_CATCH_UP_LIMIT overrides it).
CATCH_UP_LIMIT = 4 * 3600.0


@contextlib.contextmanager
def _cluster(root: Path) -> Iterator[PrivateCluster]:
    bindir = pg_bindir()
    assert bindir is not None, "no PostgreSQL binaries (initdb, pg_ctl)"
    cluster = PrivateCluster(bindir, root)
    try:
        cluster.init()
        with (cluster.data / "postgresql.conf").open("a") as conf:
            # A server sized for a large log on this machine; fsync and synchronous_commit stay
            # on, so an append costs what it costs in production.
            conf.write(
                "shared_buffers = 1GB\n"
                "max_wal_size = 8GB\n"
                "checkpoint_timeout = 15min\n"
                "work_mem = 16MB\n"
                "maintenance_work_mem = 256MB\n"
                "max_connections = 100\n"
            )
        cluster.start()
        yield cluster
    finally:
        if cluster.running():
            with contextlib.suppress(Exception):
                cluster.stop("immediate")
        shutil.rmtree(root, ignore_errors=True)


def _publish(n: int) -> PublishStatement:
    return PublishStatement(
        statement_id=str(uuid.uuid4()),
        title=f"Scale statement {n}",
        kind="comment",
        minister=MinisterRef(id=f"minister-{n % 40}", name=f"Minister {n % 40}", title="Minister"),
        occurred_on=date(2020, 1, 1),
        published_at=datetime(2020, 1, 1, 12, tzinfo=UTC),
        paragraphs=(f"Paragraph one of {n}.", "Paragraph two."),
        meta=META,
    )


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


async def _sizes(url: str) -> dict[str, int]:
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            from sqlalchemy import text

            rows = (
                await conn.execute(
                    text(
                        "SELECT relname, pg_total_relation_size(c.oid) FROM pg_class c "
                        "JOIN pg_namespace n ON n.oid = c.relnamespace "
                        "WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p')"
                    )
                )
            ).all()
    finally:
        await engine.dispose()
    sizes = {str(r[0]): int(r[1]) for r in rows}
    events = sizes.pop("events", 0)
    return {"events": events, "read models": sum(sizes.values())}


def _wait_caught_up(server: LiveServer, timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    body: dict[str, Any] = {}
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError, ValueError):
            body = httpx.get(f"{server.url}/readyz", timeout=10).json()
            projections = body.get("projections", {})
            if projections and all(p["lag_events"] == 0 for p in projections.values()):
                return body
        time.sleep(1)
    return body


async def _measure(
    store: EventStore, server: LiveServer, auditor: str, ids: list[str]
) -> dict[str, float]:
    figures: dict[str, float] = {}
    # append: one event at a time, as a lone recordView
    times: list[float] = []
    for i in range(500):
        sid = ids[i % len(ids)]
        started = time.perf_counter()
        await store.append(views_stream(sid), [NewEvent("Viewed", {"statement_id": sid})], ANY)
        times.append(time.perf_counter() - started)
    figures["append p50 µs"] = _pct(times, 0.5) * 1e6
    figures["append p99 µs"] = _pct(times, 0.99) * 1e6
    figures["batched append events/s"] = await _batched(store, ids)
    # read_all from the tail
    head = await store.head_position()
    start = max(0, head - 200_000)
    started = time.perf_counter()
    count = 0
    async for _ in store.read_all(start):
        count += 1
    figures["read_all events/s"] = count / (time.perf_counter() - started)
    async with httpx.AsyncClient(base_url=server.url, timeout=60) as http:
        # the statement page
        page: list[float] = []
        for _ in range(300):
            sid = random.choice(ids)
            started = time.perf_counter()
            response = await http.post(
                "/graphql", json={"query": STATEMENT_PAGE, "variables": {"id": sid}}
            )
            page.append(time.perf_counter() - started)
            body = response.json()
            assert "errors" not in body and body["data"]["statement"], body
        figures["statement page p50 ms"] = statistics.median(page) * 1000
        figures["statement page p99 ms"] = _pct(page, 0.99) * 1000
        # a proof over the last 10,000 events (the chain's range check)
        head = await store.head_position()
        proofs: list[float] = []
        for _ in range(3):
            started = time.perf_counter()
            response = await http.post(
                "/graphql",
                json={"query": VERIFY, "variables": {"from": max(1, head - 9_999), "to": head}},
                headers={"authorization": f"Bearer {auditor}"},
            )
            proofs.append(time.perf_counter() - started)
            body = response.json()
            assert body["data"]["verifyLog"]["ok"], body
        figures["verifyLog 10,000 events ms"] = min(proofs) * 1000
        # an inclusion proof of a random event, verified against the tree's root
        root = await tree_root(store, head)
        inclusion: list[float] = []
        for _ in range(20):
            position = random.randint(1, head)
            started = time.perf_counter()
            response = await http.post(
                "/graphql",
                json={"query": PROOF, "variables": {"position": position, "size": head}},
                headers={"authorization": f"Bearer {auditor}"},
            )
            inclusion.append(time.perf_counter() - started)
            proof = response.json()["data"]["inclusionProof"]
            verify_inclusion(
                proof["leafIndex"],
                head,
                bytes.fromhex(proof["leafHash"]),
                [bytes.fromhex(h) for h in proof["hashes"]],
                root,
            )
        figures["inclusion proof p50 ms"] = statistics.median(inclusion) * 1000
    return figures


async def _batched(store: EventStore, ids: list[str], seconds: float = 10.0) -> float:
    """Events/s of appends of BATCH views, IN_FLIGHT at a time, for ``seconds``."""
    appended = 0
    started = time.perf_counter()
    while time.perf_counter() - started < seconds:
        await asyncio.gather(
            *(
                store.append(
                    views_stream(sid),
                    [NewEvent("Viewed", {"statement_id": sid}) for _ in range(BATCH)],
                    ANY,
                )
                for sid in random.sample(ids, IN_FLIGHT)
            )
        )
        appended += BATCH * IN_FLIGHT
    return appended / (time.perf_counter() - started)


async def _fill(
    store: EventStore,
    handlers: StatementHandlers,
    ids: list[str],
    target: int,
    server: LiveServer,
    url: str,
) -> list[dict[str, Any]]:
    """Publish a statement per 1,000 events to come, then fill the log with views to
    ``target`` events; a mark (rate, projections, sizes) per tenth."""
    import asyncpg

    started = time.perf_counter()
    while len(ids) * VIEWS_PER_STATEMENT < target:
        command = _publish(len(ids))
        await handlers.handle(command)
        ids.append(command.statement_id)
    progress(f"scale fill: {len(ids)} statements in {time.perf_counter() - started:.0f} s")
    marks: list[dict[str, Any]] = []
    conn = await asyncpg.connect(url.replace("postgresql+asyncpg", "postgresql"))
    try:
        await conn.execute(FILL)
        head = int(await conn.fetchval("SELECT max(position) FROM events"))
        step = max(COMMIT_EVERY, (target - head) // 10)
        last_head, last_time = head, time.perf_counter()
        while head < target:
            goal = min(target, head + step)
            frontier = frontier_of(head, await store.read_tree_nodes(frontier_positions(head)))
            await conn.execute(
                "CALL bench_fill_views($1, $2, $3, $4)", goal, ids, COMMIT_EVERY, frontier
            )
            head = int(await conn.fetchval("SELECT max(position) FROM events"))
            now = time.perf_counter()
            ready: Any = {}
            with contextlib.suppress(httpx.HTTPError, ValueError):
                async with httpx.AsyncClient(timeout=30) as http:
                    ready = (await http.get(f"{server.url}/readyz")).json()
            projections = ready.get("projections", {}) if isinstance(ready, dict) else {}
            mark = {
                "head": head,
                "fill events/s": (head - last_head) / (now - last_time),
                "elapsed s": now - started,
                "statements": len(ids),
                "slowest projection": min((p["position"] for p in projections.values()), default=0),
                **await _sizes(url),
            }
            marks.append(mark)
            progress(f"scale fill: {json.dumps(mark)}")
            last_head, last_time = head, now
    finally:
        await conn.close()
    await _check_tree(store, CHECKED_BLOBS)
    return marks


async def _check_tree(store: EventStore, count: int) -> None:
    """Rebuild the last ``count`` node blobs from their rows and the frontier before them, as
    the store would have written them; the procedure's must be the same bytes."""
    head = await store.head_position()
    start = max(0, head - count)
    frontier = frontier_of(start, await store.read_tree_nodes(frontier_positions(start)))
    rows = [row_of(record) async for record in store.read_all(start)]
    stored = await store.read_tree_range(start + 1, head)
    built = dict(
        zip(
            (row.position for row in rows),
            tree_blobs(rows, TreeBuilder(start, frontier)),
            strict=True,
        )
    )
    wrong = [p for p in built if stored.get(p) != built[p]]
    if wrong:
        raise AssertionError(f"scale fill: wrong Merkle node blobs at positions {wrong[:5]}")
    progress(f"scale fill: the Merkle nodes of positions {start + 1}..{head} check out")


async def _run_phases(url: str, server: LiveServer, events: int) -> dict[str, Any]:
    async with open_store(url) as store:
        handlers = StatementHandlers(StoreEventLog(store, event_registry()))
        await write_demo(handlers, statements=1000, views=10_000, seed=5)
        engine = create_engine(url)
        try:
            auditor, _ = await create_token(engine, "auditor", "bench-scale")
            from sqlalchemy import text

            async with engine.connect() as conn:
                rows = (await conn.execute(text("SELECT id FROM statements"))).all()
        finally:
            await engine.dispose()
        ids = [str(r[0]) for r in rows]
        await asyncio.to_thread(_wait_caught_up, server, 600)
        small_head = await store.head_position()
        small = await _measure(store, server, auditor, ids)
        small_sizes = await _sizes(url)
        progress(f"scale small ({small_head} events): {json.dumps(small)}")
        marks = await _fill(store, handlers, ids, events, server, url)
        started = time.perf_counter()
        behind = await store.head_position() - min(
            (m["slowest projection"] for m in marks[-1:]), default=0
        )
        limit = float(os.environ.get("STATEMENTS_BENCH_CATCH_UP_LIMIT", CATCH_UP_LIMIT))
        ready = await asyncio.to_thread(_wait_caught_up, server, limit)
        catch_up = time.perf_counter() - started
        large_head = await store.head_position()
        large = await _measure(store, server, auditor, ids)
        progress(f"scale large ({large_head} events): {json.dumps(large)}")
        return {
            "small": small,
            "small head": small_head,
            "small sizes": small_sizes,
            "large": large,
            "large head": large_head,
            "large sizes": await _sizes(url),
            "marks": marks,
            "catch up s": catch_up,
            "behind at the end of the fill": behind,
            "caught up": all(p["lag_events"] == 0 for p in ready.get("projections", {}).values()),
        }


def run(config: Config) -> list[Result]:
    events = config.events or (200_000 if config.quick else 2_000_000)
    free = shutil.disk_usage(tempfile.gettempdir()).free
    if free < events * 1500:
        raise SystemExit(
            f"scale: {events:,} events need about {events * 1500 / 1e9:.0f} GB free in "
            f"{tempfile.gettempdir()}, {free / 1e9:.0f} GB are"
        )
    root = Path(tempfile.mkdtemp(prefix="statements-scale-"))
    with _cluster(root) as cluster:
        url = cluster.database_url("postgres")
        server = LiveServer(url, config.tmp_dir / "scale-server.log")
        server.start(timeout=120)
        try:
            outcome = asyncio.run(_run_phases(url, server, events))
        finally:
            server.stop()
    results_dir = Path(__file__).resolve().parent / "results"
    results_dir.mkdir(exist_ok=True)
    (results_dir / f"scale-{events}.json").write_text(json.dumps(outcome, indent=2))
    small, large = outcome["small"], outcome["large"]
    label = f"{outcome['small head']:,} -> {outcome['large head']:,} events"
    rows = [
        Result(f"{name} ({label})", "postgresql", name.rsplit(" ", 1)[-1], large[name], small[name])
        for name in small
    ]
    for what in ("events", "read models"):
        rows.append(
            Result(
                f"{what} size ({label})",
                "postgresql",
                "MB",
                outcome["large sizes"][what] / 1e6,
                outcome["small sizes"][what] / 1e6,
            )
        )
    marks = outcome["marks"]
    if marks:
        rows.append(
            Result(
                "projections' position when the fill ended",
                "postgresql",
                "events",
                float(marks[-1]["slowest projection"]),
                float(marks[-1]["head"]),
            )
        )
    rows.append(
        Result(
            "projections' catch-up after the fill"
            + ("" if outcome["caught up"] else " (not caught up)"),
            "postgresql",
            "s",
            outcome["catch up s"],
            float("nan"),
        )
    )
    return rows
