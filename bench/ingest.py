"""Batched view ingestion on PostgreSQL: ``recordViews`` across two API processes, sustained.

Two ``statements serve`` processes (one worker each) share one PostgreSQL schema, on this one
machine: the "two hosts" of the target are two processes here, and the machine's two cores are
shared with PostgreSQL, the load generator and whatever else runs. A generator process offers
batches of 1,000 views at 20,000 views/s (open loop: a batch is due every 50 ms whether or not
earlier ones were answered, alternating between the two servers, at most ``IN_FLIGHT``
outstanding per server) for 60 s (10 s with ``--quick``). Each view names one of ``STATEMENTS``
statements at random. The mutation selects ``position`` only, and read-your-writes is on (the
default), so each answer means the views projection has counted the batch.

Measured, all against the batch's ``recorded_at`` (the store's clock when it was appended):

* **views/s**: views acknowledged over the run's wall time, against the 20,000 offered;
* **projection lag**: until the views projection's checkpoint covers the batch, taken from the
  checkpoint table's own NOTIFY (p50, p99; target p99 < 1 s);
* **live counts**: until a ``viewCount`` subscriber first gets a count that includes the
  batch, over WebSocket on both servers (``WATCHED`` statements, a subscriber per statement per
  server): p50, p99 (target < 500 ms), max; a count going down or a wrong final count is an
  error;
* **fan-out**: notifications of the event store's channel received by one LISTEN connection
  (per second) and their latency from ``recorded_at``: this is the PostgreSQL LISTEN/NOTIFY
  path that carries the live counts between processes;
* **the floor**: the same ``ViewsRecorded`` events appended straight through the event store
  (no HTTP, no GraphQL, no read-your-writes), ``IN_FLIGHT`` appends at a time, in a schema of
  its own, in the same run: what the store can take on this machine now;
* **CPU** of each server and of the generator, per 1,000 views.

Run: ``python -m bench --only ingest`` (``--quick``: a 10 s smoke run).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import functools
import json
import multiprocessing
import os
import random
import socket
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, Final

from bench.common import Config, Result, pg_execute, pg_schema, progress

RATE: Final = 20_000
BATCH: Final = 1_000
STATEMENTS: Final = 200
WATCHED: Final = 25
IN_FLIGHT: Final = 8
VARIANTS: Final = 40
FINAL_GRACE: Final = 20.0
#: How long requests sent before the end of the run may take to be answered.
ANSWER_GRACE: Final = 15.0
TRANSPORT_WS: Final = "graphql-transport-ws"
VIEW_COUNT: Final = "subscription($id: ID!) { viewCount(statementId: $id) { viewCount } }"
RECORD: Final = "mutation($input: RecordViewsInput!) { recordViews(input: $input) { position } }"
PUBLISH: Final = """mutation($input: PublishStatementInput!) {
  publishStatement(input: $input) { statementId } }"""


def _pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _bin(name: str) -> str:
    return str(Path(sys.executable).parent / name)


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextlib.contextmanager
def _server(db: str, env: dict[str, str]) -> Iterator[tuple[str, int]]:
    port = _free_port()
    server = subprocess.Popen(
        [_bin("statements"), "serve", "--db", db, "--port", str(port), "--production"],
        env={
            **env,
            "STATEMENTS_INGEST_VIEW_RATE": "10000000",
            "STATEMENTS_INGEST_VIEW_BURST": "10000000",
        },
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            with (
                contextlib.suppress(OSError),
                urllib.request.urlopen(f"{url}/readyz", timeout=2) as response,
            ):
                if response.status == 200:
                    break
            if server.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("statements serve did not become ready")
            time.sleep(0.2)
        yield url, server.pid
    finally:
        server.terminate()
        server.wait(timeout=30)


def _post(url: str, query: str, variables: dict[str, Any], token: str) -> dict[str, Any]:
    request = urllib.request.Request(
        f"{url}/graphql",
        json.dumps({"query": query, "variables": variables}).encode(),
        {"Content-Type": "application/json", "Authorization": f"Bearer {token}"},
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        body: dict[str, Any] = json.loads(response.read())
    if "errors" in body:
        raise RuntimeError(f"{query[:40]}...: {body['errors']}")
    return body


def _publish(url: str, token: str, n: int) -> str:
    statement = {
        "title": f"Ingestion benchmark statement {n}",
        "body": f"Statement {n} of the ingestion benchmark.",
        "kind": "comment",
        "ministerName": "Sergey Lavrov",
        "occurredOn": "2020-01-01",
        "publishedAt": "2020-01-01T10:00:00+03:00",
    }
    body = _post(url, PUBLISH, {"input": statement}, token)
    return str(body["data"]["publishStatement"]["statementId"])


# -- the generator (a process of its own) ---------------------------------------------------


def _variants(ids: list[str], seed: int) -> list[list[str]]:
    """``VARIANTS`` lists of ``BATCH`` statement ids drawn at random; batch k sends list k % V."""
    rng = random.Random(seed)
    return [[rng.choice(ids) for _ in range(BATCH)] for _ in range(VARIANTS)]


def _request(port: int, token: str, batch_id: str, views_json: bytes) -> bytes:
    body = (
        b'{"query":'
        + json.dumps(RECORD).encode()
        + b',"variables":{"input":{"batchId":"'
        + batch_id.encode()
        + b'","views":'
        + views_json
        + b"}}}"
    )
    head = (
        f"POST /graphql HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        f"Content-Type: application/json\r\nAuthorization: Bearer {token}\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


async def _exchange(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes
) -> bytes:
    writer.write(request)
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    return await reader.readexactly(length)


async def _generate(
    conn: Connection, urls: list[str], token: str, variants: list[list[str]], seconds: float
) -> dict[str, Any]:
    at = datetime.now(UTC).replace(microsecond=0).isoformat()
    bodies = [
        json.dumps([{"statementId": s, "at": at} for s in v], separators=(",", ":")).encode()
        for v in variants
    ]
    ports = [int(u.rsplit(":", 1)[1]) for u in urls]
    idle: list[asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter]]] = []
    for port in ports:
        queue: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = asyncio.Queue()
        for _ in range(IN_FLIGHT):
            queue.put_nowait(await asyncio.open_connection("127.0.0.1", port))
        idle.append(queue)
    loop = asyncio.get_running_loop()
    acked: list[tuple[int, int, float, float]] = []  # (batch, position, due, answered)
    errors: list[str] = []
    tasks: set[asyncio.Task[None]] = set()
    run = f"{os.getpid()}-{time.time_ns()}"

    sent: set[int] = set()

    async def one(k: int, due: float) -> None:
        server = k % len(ports)
        connection = await idle[server].get()
        sent.add(k)
        request = _request(ports[server], token, f"{run}-{k}", bodies[k % len(bodies)])
        try:
            raw = await _exchange(*connection, request)
        except (OSError, asyncio.IncompleteReadError) as exc:
            errors.append(repr(exc)[:200])
            connection = await asyncio.open_connection("127.0.0.1", ports[server])
        else:
            body = json.loads(raw)
            if "errors" in body:
                errors.append(json.dumps(body["errors"])[:200])
            # A batch answered with POSITION_NOT_REACHED is written all the same.
            payload = (body.get("data") or {}).get("recordViews")
            if payload is not None:
                acked.append((k, int(payload["position"]), due, loop.time()))
        idle[server].put_nowait(connection)

    conn.send("started")
    start, cpu0 = loop.time(), time.process_time()
    interval = BATCH / RATE
    k = 0
    while loop.time() - start < seconds:
        due = start + k * interval
        delay = due - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        task = loop.create_task(one(k, due))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        k += 1
    # Open loop: what was not sent by the end is not offered any longer (the backlog is the
    # figure), and what was sent gets a bounded time to be answered.
    wall = loop.time() - start
    waiting = [t for t in tasks if not t.done()]
    await asyncio.wait(waiting, timeout=ANSWER_GRACE)
    for task in waiting:
        task.cancel()
    await asyncio.gather(*waiting, return_exceptions=True)
    # Views/s is over the time until the last answer, so answers taken in the grace count.
    wall = max([wall] + [answered - start for _k, _p, _d, answered in acked])
    for queue in idle:
        while not queue.empty():
            queue.get_nowait()[1].close()
    return {
        "acked": acked,
        "errors": errors,
        "offered": k,
        "sent": len(sent),
        "wall": wall,
        "cpu": time.process_time() - cpu0,
    }


def _generator_main(
    conn: Connection, urls: list[str], token: str, variants: list[list[str]], seconds: float
) -> None:
    conn.send(asyncio.run(_generate(conn, urls, token, variants, seconds)))


# -- the observers (subscribers and LISTEN connections, in this process) --------------------


@dataclass
class _Sub:
    statement_id: str
    server: int
    last: int | None = None
    samples: list[tuple[float, int]] = field(default_factory=list)  # (wall time, count)
    errors: list[str] = field(default_factory=list)
    ready: asyncio.Event = field(default_factory=asyncio.Event)


async def _follow(sub: _Sub, ws_url: str, stop: asyncio.Event) -> None:
    import websockets

    try:
        async with websockets.connect(ws_url, subprotocols=[TRANSPORT_WS], open_timeout=60) as ws:  # type: ignore[list-item]
            await ws.send(json.dumps({"type": "connection_init", "payload": {}}))
            await ws.recv()
            payload = {"query": VIEW_COUNT, "variables": {"id": sub.statement_id}}
            await ws.send(json.dumps({"id": "1", "type": "subscribe", "payload": payload}))
            while not stop.is_set():
                try:
                    raw = await asyncio.wait_for(ws.recv(), 0.5)
                except TimeoutError:
                    continue
                now = time.time()
                message = json.loads(raw)
                if message.get("type") == "ping":
                    await ws.send('{"type":"pong"}')
                    continue
                if message.get("type") != "next" or "errors" in message["payload"]:
                    sub.errors.append(repr(message)[:200])
                    return
                count = int(message["payload"]["data"]["viewCount"]["viewCount"])
                if sub.last is not None and count < sub.last:
                    sub.errors.append(f"count went down {sub.last} -> {count}")
                sub.samples.append((now, count))
                sub.last = count
                sub.ready.set()
    except Exception as exc:
        sub.errors.append(repr(exc)[:200])
    finally:
        sub.ready.set()


async def _observe(
    pg_url: str,
    schema: str,
    urls: list[str],
    pids: list[int],
    token: str,
    ids: list[str],
    variants: list[list[str]],
    seconds: float,
) -> dict[str, Any]:
    import asyncpg

    from eventstore.postgres import PostgresEventStore
    from eventstore.watcher import notify_channel

    dsn = pg_url.replace("postgresql+asyncpg://", "postgresql://")
    store = PostgresEventStore(
        pg_url.replace("postgresql://", "postgresql+asyncpg://"), schema=schema
    )
    events_channel = store.notify_channel
    await store.close()
    notified: list[tuple[float, int]] = []
    checkpoints: list[tuple[float, int]] = []

    def on_event(_c: Any, _p: int, _ch: str, payload: str) -> None:
        notified.append((time.time(), int(payload)))

    def on_checkpoint(_c: Any, _p: int, _ch: str, payload: str) -> None:
        data = json.loads(payload)
        if data.get("name") == "views":
            checkpoints.append((time.time(), int(data["position"])))

    listener = await asyncpg.connect(dsn)
    await listener.add_listener(events_channel, on_event)
    await listener.add_listener(notify_channel(schema), on_checkpoint)
    head = int(await listener.fetchval(f'SELECT coalesce(max(position), 0) FROM "{schema}".events'))

    stop = asyncio.Event()
    watched = ids[:WATCHED]
    ws_urls = [u.replace("http://", "ws://") + "/graphql" for u in urls]
    subs = [_Sub(sid, n) for sid in watched for n in range(len(urls))]
    tasks = [asyncio.create_task(_follow(s, ws_urls[s.server], stop)) for s in subs]
    await asyncio.wait_for(asyncio.gather(*(s.ready.wait() for s in subs)), 120)

    ctx = multiprocessing.get_context("spawn")
    ours, theirs = ctx.Pipe()
    generator = ctx.Process(
        target=_generator_main, args=(theirs, urls, token, variants, seconds), daemon=True
    )
    generator.start()
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, ours.recv)  # started
    cpu0 = [_cpu_seconds(pid) for pid in pids]
    report: dict[str, Any] = await loop.run_in_executor(None, ours.recv)
    cpu = [_cpu_seconds(pid) - c for pid, c in zip(pids, cpu0, strict=True)]
    generator.join(30)

    # What was written is the truth (a batch sent but not answered in time may be written all
    # the same): once the log is still for three seconds, each batch's views of each watched
    # statement are read back from it.
    last, still = -1, 0
    for _ in range(int(FINAL_GRACE * 2)):
        now = int(await listener.fetchval(f'SELECT max(position) FROM "{schema}".events'))
        still = still + 1 if now == last else 0
        if still >= 6:
            break
        last = now
        await asyncio.sleep(0.5)
    rows = await listener.fetch(
        f"SELECT e.position, e.recorded_at, v->>'statement_id' AS sid, count(*) AS n "
        f"FROM \"{schema}\".events e, jsonb_array_elements(e.data::jsonb->'views') v "
        "WHERE e.position > $1 AND e.type = 'ViewsRecorded' "
        "GROUP BY e.position, e.recorded_at, sid ORDER BY e.position",
        head,
    )
    recorded = {int(r["position"]): int(r["recorded_at"]) / 1e6 for r in rows}
    watched_set = set(watched)
    written: dict[str, list[tuple[int, int]]] = {sid: [] for sid in watched}
    for r in rows:
        if r["sid"] in watched_set:
            written[r["sid"]].append((int(r["position"]), int(r["n"])))
    finals = {sid: sum(n for _p, n in batches) for sid, batches in written.items()}
    # The subscribers get the last counts within a tick or two; the grace only bounds a failure.
    for _ in range(int(FINAL_GRACE / 0.1)):
        if all((s.last or 0) >= s.samples[0][1] + finals[s.statement_id] for s in subs):
            break
        await asyncio.sleep(0.1)
    stop.set()
    await asyncio.gather(*tasks)
    await listener.close()
    return {
        **report,
        "subs": subs,
        "finals": finals,
        "written": written,
        "notified": notified,
        "checkpoints": checkpoints,
        "recorded": recorded,
        "server_cpu": cpu,
    }


# -- the floor: the same events straight through the store ----------------------------------


async def _floor(pg_url: str, schema: str, variants: list[list[str]], seconds: float) -> float:
    from eventstore import NO_STREAM, NewEvent, open_store

    at = datetime.now(UTC).replace(microsecond=0).isoformat()
    data = [{"batch_id": "", "views": [{"statement_id": s, "at": at} for s in v]} for v in variants]
    url = pg_url.replace("postgresql://", "postgresql+asyncpg://")
    appended = 0
    async with open_store(url, schema=schema) as store:
        loop = asyncio.get_running_loop()
        start = loop.time()

        async def worker(w: int) -> None:
            nonlocal appended
            n = 0
            while loop.time() - start < seconds:
                batch = dict(data[n % len(data)], batch_id=f"{w}-{n}")
                await store.append(
                    f"view-batch-{w}-{n}", [NewEvent("ViewsRecorded", batch)], NO_STREAM
                )
                appended += 1
                n += 1

        await asyncio.gather(*(worker(w) for w in range(IN_FLIGHT * 2)))
        wall = loop.time() - start
    return appended * BATCH / wall


# -- analysis ---------------------------------------------------------------------------------


def _analyse(outcome: dict[str, Any], label: str) -> list[Result]:
    acked: list[tuple[int, int, float, float]] = outcome["acked"]
    recorded: dict[int, float] = outcome["recorded"]
    views = len(acked) * BATCH
    achieved = views / outcome["wall"]
    answer = [answered - due for _k, _p, due, answered in acked]

    # Projection lag: from recorded_at until the first checkpoint NOTIFY at or past the batch.
    checkpoints = sorted(outcome["checkpoints"], key=lambda c: c[0])
    lag: list[float] = []
    for position, at in recorded.items():
        for when, reached in checkpoints:
            if reached >= position:
                lag.append(when - at)
                break

    # Live counts: each batch's effect on each watched statement, from recorded_at until a
    # subscriber's count first includes it (counts are cumulative in log order).
    errors = Counter[str]()
    live: list[float] = []
    for sub in outcome["subs"]:
        errors.update(e.split(" ")[0] for e in sub.errors)
        base = sub.samples[0][1] if sub.samples else 0
        total, i = base, 0
        samples = sub.samples
        for position, n in outcome["written"][sub.statement_id]:
            total += n
            while i < len(samples) and samples[i][1] < total:
                i += 1
            if i < len(samples):
                live.append(samples[i][0] - recorded[position])
        final = base + outcome["finals"][sub.statement_id]
        if sub.last is None or sub.last < final:
            errors["final-count-not-reached"] += 1
        elif sub.last > final:
            errors["final-count-too-high"] += 1

    notified = outcome["notified"]
    nlat = [when - recorded[p] for when, p in notified if p in recorded]
    nps = len(notified) / outcome["wall"]
    errors["request-errors"] += len(outcome["errors"])
    progress(
        f"ingest {label}: {achieved:,.0f} views/s ({outcome['offered']} batches due, "
        f"{outcome['sent']} sent, {len(acked)} answered), "
        f"answer p99 {_pct(answer, 0.99) * 1000:.0f} ms, projection lag p99 "
        f"{_pct(lag, 0.99) * 1000:.0f} ms, live p99 {_pct(live, 0.99) * 1000:.0f} ms, "
        f"{nps:.0f} NOTIFY/s (p99 {_pct(nlat, 0.99) * 1000:.0f} ms), errors {dict(errors)}"
        + (f", first: {outcome['errors'][0]}" if outcome["errors"] else "")
    )
    rows = [
        Result(f"{label}: views acknowledged", "postgresql", "views/s", achieved, float(RATE)),
        Result(f"{label}: answer p99 from due", "postgresql", "ms", _pct(answer, 0.99) * 1000, 0),
        Result(f"{label}: projection lag p50", "postgresql", "ms", _pct(lag, 0.5) * 1000, 1000),
        Result(f"{label}: projection lag p99", "postgresql", "ms", _pct(lag, 0.99) * 1000, 1000),
        Result(f"{label}: live count p50", "postgresql", "ms", _pct(live, 0.5) * 1000, 500),
        Result(f"{label}: live count p99", "postgresql", "ms", _pct(live, 0.99) * 1000, 500),
        Result(f"{label}: live count max", "postgresql", "ms", max(live, default=0) * 1000, 500),
        Result(f"{label}: NOTIFY received", "postgresql", "per s", nps, float("nan")),
        Result(f"{label}: NOTIFY latency p99", "postgresql", "ms", _pct(nlat, 0.99) * 1000, 0),
        Result(f"{label}: errors", "postgresql", "count", float(sum(errors.values())), 0),
    ]
    cpu = {f"server {n + 1}": c for n, c in enumerate(outcome["server_cpu"])}
    cpu["generator"] = outcome["cpu"]
    for name, seconds in cpu.items():
        per_k = 1000 * seconds / max(views / 1000, 1)
        rows.append(
            Result(f"{label}: CPU of {name}", "postgresql", "ms/1000 views", per_k, float("nan"))
        )
    return rows


def run(config: Config) -> list[Result]:
    try:
        pg_execute(config.pg_url, "SELECT 1")
    except Exception as exc:
        progress(f"ingest: PostgreSQL at {config.pg_url} is not reachable ({exc}); skipped")
        return []
    seconds = 10.0 if config.quick else 60.0
    base_env = {k: v for k, v in os.environ.items() if not k.startswith("STATEMENTS_")}
    results: list[Result] = []
    with pg_schema(config.pg_url, "ingest") as schema:
        env = {**base_env, "STATEMENTS_DATABASE_SCHEMA": schema}
        with (
            _server(config.pg_url, env) as (url_a, pid_a),
            _server(config.pg_url, env) as (
                url_b,
                pid_b,
            ),
        ):

            def token(role: str, name: str) -> str:
                return subprocess.run(
                    [
                        _bin("statements"),
                        "token",
                        "create",
                        "--role",
                        role,
                        "--name",
                        name,
                        "--db",
                        config.pg_url,
                    ],
                    capture_output=True,
                    text=True,
                    check=True,
                    env=env,
                ).stdout.strip()

            editor, ingest = token("editor", "bench-desk"), token("ingest", "bench-shipper")
            progress(f"ingest: publishing {STATEMENTS} statements")
            with concurrent.futures.ThreadPoolExecutor(8) as pool:
                ids = list(pool.map(functools.partial(_publish, url_a, editor), range(STATEMENTS)))
            variants = _variants(ids, seed=19)
            label = (
                f"recordViews, {BATCH:,} views a batch, {RATE:,} views/s offered for "
                f"{seconds:.0f} s, 2 servers, {WATCHED * 2} subscribers"
            )
            # A short warm-up: connections, plans, the hub's first loads.
            asyncio.run(
                _observe(
                    config.pg_url,
                    schema,
                    [url_a, url_b],
                    [pid_a, pid_b],
                    ingest,
                    ids,
                    variants,
                    2.0,
                )
            )
            outcome = asyncio.run(
                _observe(
                    config.pg_url,
                    schema,
                    [url_a, url_b],
                    [pid_a, pid_b],
                    ingest,
                    ids,
                    variants,
                    seconds,
                )
            )
            results += _analyse(outcome, label)
    with pg_schema(config.pg_url, "ingest_floor") as schema:
        floor_seconds = 5.0 if config.quick else 15.0
        floor = asyncio.run(_floor(config.pg_url, schema, variants, floor_seconds))
        progress(f"ingest floor: the store appends {floor:,.0f} views/s as ViewsRecorded events")
        results.append(
            Result(
                f"the floor: the same ViewsRecorded events appended through the store, "
                f"{IN_FLIGHT * 2} at a time, {floor_seconds:.0f} s",
                "postgresql",
                "views/s",
                floor,
                float(RATE),
            )
        )
    return results
