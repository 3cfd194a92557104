"""Live fan-out across hosts: LISTEN/NOTIFY from a PostgreSQL primary to two API hosts.

The multi-host topology of tests/multihost (network namespaces, needs root): a primary, a
replica, two API hosts running ``statements serve`` and a client host. From the client host a
generator process appends ``ViewsRecorded`` events (what ``recordViews`` writes: one event per
batch) straight through the event store at a fixed rate, so this measures what the live path
does with the events, not how they arrive (``bench/ingest.py`` measures the whole path through
``recordViews``). Each append is one batch of several views of one statement; concurrent
appends are group-committed, and each commit sends one NOTIFY.

Measured per rate:
* **notifications/s** received by a LISTEN connection on the client host, and their latency from
  the append's acknowledgement;
* **live count latency** from an append's acknowledgement to a ``viewCount`` subscriber (half on
  each API host) whose count first covers it: p50, p99 and max, including the hub's 250 ms tick;
* **errors**: a count that goes down, a final count that is not the number appended.

Run: ``python -m bench --only fanout`` (``--quick``: shorter, lower rates).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import multiprocessing
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, Final

import httpx
import websockets

from bench.common import Config, Result, progress
from domain.streams import view_batch_stream
from eventstore import ANY, NewEvent, open_store
from eventstore.postgres import PostgresEventStore
from tests.multihost.client import TRANSPORT_WS, VIEW_COUNT, publish, wait_for
from tests.multihost.failover import make_tokens
from tests.multihost.netns import cpu_seconds, unavailable_reason
from tests.multihost.topology import API_HOSTS, PRIMARY, Topology, topology

STATEMENTS: Final = 50
SUBSCRIBERS_PER_STATEMENT: Final = 4
ROUNDS_PER_SECOND: Final = 20
FINAL_GRACE: Final = 15.0


def _pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


# -- the generator (a process on the client host) -------------------------------------------


async def _generate(conn: Connection, url: str, ids: list[str], rate: int, seconds: float) -> Any:
    acks: dict[str, list[tuple[float, int]]] = {sid: [] for sid in ids}
    notified: list[tuple[float, int]] = []
    per_append = max(1, rate // (len(ids) * ROUNDS_PER_SECOND))
    per_round = per_append * len(ids)
    async with open_store(url) as store:
        assert isinstance(store, PostgresEventStore)
        import asyncpg

        lconn = await asyncpg.connect(url.replace("postgresql+asyncpg", "postgresql"))
        await lconn.add_listener(
            store._channel,
            lambda *args: notified.append((time.monotonic(), int(args[3]))),
        )
        await store.head_position()
        conn.send("started")

        at = datetime.now(UTC).isoformat()
        batches = 0

        async def views(sid: str) -> None:
            nonlocal batches
            batches += 1
            batch = {
                "batch_id": str(batches),
                "views": [{"statement_id": sid, "at": at}] * per_append,
            }
            events = [NewEvent("ViewsRecorded", batch)]
            await store.append(view_batch_stream(f"fanout-{batches}"), events, ANY)
            acks[sid].append((time.monotonic(), per_append))

        appended: list[tuple[float, int]] = []  # (ack, last position) of each round

        async def round_() -> None:
            await asyncio.gather(*(views(sid) for sid in ids))
            appended.append((time.monotonic(), await store.head_position()))

        started, cpu0 = time.monotonic(), time.process_time()
        sent = 0
        while time.monotonic() - started < seconds:
            delay = started + sent / rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            # Each statement once per round and rounds in turn: the k-th acknowledgement of a
            # statement covers its views in log order.
            await round_()
            sent += per_round
        wall, cpu = time.monotonic() - started, time.process_time() - cpu0
        await asyncio.sleep(1.0)
        await lconn.close()
    return {
        "acks": acks,
        "notified": notified,
        "rounds": appended,
        "wall": wall,
        "sent": sent,
        "generator_cpu": cpu,
    }


def _generator_main(conn: Connection, url: str, ids: list[str], rate: int, seconds: float) -> None:
    conn.send(asyncio.run(_generate(conn, url, ids, rate, seconds)))


# -- the subscribers (on the client host's thread) ------------------------------------------


@dataclass
class _Sub:
    statement_id: str
    host: str
    name: str
    last: int | None = None
    samples: list[tuple[float, int, int]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    ready: asyncio.Event = field(default_factory=asyncio.Event)


async def _follow(sub: _Sub, stop: asyncio.Event) -> None:
    try:
        async with websockets.connect(
            sub.host,
            subprotocols=[TRANSPORT_WS],
            open_timeout=60,  # type: ignore[list-item]
        ) as ws:
            await ws.send(json.dumps({"type": "connection_init", "payload": {}}))
            await ws.recv()
            payload = {"query": VIEW_COUNT, "variables": {"id": sub.statement_id}}
            await ws.send(json.dumps({"id": "1", "type": "subscribe", "payload": payload}))
            while not stop.is_set():
                try:
                    raw = await asyncio.wait_for(ws.recv(), 0.5)
                except TimeoutError:
                    continue
                now = time.monotonic()
                message = json.loads(raw)
                if message.get("type") == "ping":
                    await ws.send('{"type":"pong"}')
                    continue
                if message.get("type") != "next" or "errors" in message["payload"]:
                    sub.errors.append(repr(message)[:200])
                    return
                count = int(message["payload"]["data"]["viewCount"]["viewCount"])
                if sub.last is None:
                    sub.last = count
                    sub.ready.set()
                    continue
                if count < sub.last:
                    sub.errors.append(f"count went down {sub.last} -> {count}")
                elif count > sub.last:
                    sub.samples.append((now, sub.last, count))
                sub.last = count
    except Exception as exc:
        sub.errors.append(repr(exc)[:200])
    finally:
        sub.ready.set()


async def _measure(topo: Topology, ids: list[str], rate: int, seconds: float) -> dict[str, Any]:
    assert topo.primary is not None
    subs = [
        _Sub(sid, topo.apis[name].ws_url, name)
        for sid in ids
        for k in range(SUBSCRIBERS_PER_STATEMENT)
        for name in [API_HOSTS[k % len(API_HOSTS)]]
    ]
    stop = asyncio.Event()
    tasks = [asyncio.create_task(_follow(s, stop)) for s in subs]
    await asyncio.wait_for(asyncio.gather(*(s.ready.wait() for s in subs)), 120)
    ctx = multiprocessing.get_context("spawn")
    ours, theirs = ctx.Pipe()
    url = topo.primary.url_from_hosts().replace("postgresql://", "postgresql+asyncpg://")
    generator = ctx.Process(
        target=_generator_main, args=(theirs, url, ids, rate, seconds), daemon=True
    )
    generator.start()
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, ours.recv)  # started
    namespaces = {name: topo.network.namespace(name) for name in (*API_HOSTS, PRIMARY)}
    cpu0 = {name: cpu_seconds(ns) for name, ns in namespaces.items()}
    report: dict[str, Any] = await loop.run_in_executor(None, ours.recv)
    cpu = {name: cpu_seconds(ns) - cpu0[name] for name, ns in namespaces.items()}
    generator.join(30)
    finals = {sid: sum(n for _, n in acks) for sid, acks in report["acks"].items()}
    await wait_for(
        lambda: all(s.last is None or s.last >= finals[s.statement_id] + _base(s) for s in subs),
        FINAL_GRACE,
    )
    stop.set()
    await asyncio.gather(*tasks)
    cpu["generator"] = report["generator_cpu"]
    return {"subs": subs, "finals": finals, "cpu": cpu, **report}


def _base(sub: _Sub) -> int:
    """The count before the run: the first value a subscriber got (the statements are fresh)."""
    return sub.samples[0][1] if sub.samples else (sub.last or 0)


def _analyse(rate: int, outcome: dict[str, Any], label: str) -> list[Result]:
    acks: dict[str, list[tuple[float, int]]] = outcome["acks"]
    latencies: dict[str, list[float]] = {}
    errors: Counter[str] = Counter()
    for sub in outcome["subs"]:
        errors.update(e.split(" ")[0] for e in sub.errors)
        # cumulative views acknowledged for this statement, in order
        marks: list[tuple[int, float]] = []
        total = 0
        for ack, n in acks[sub.statement_id]:
            total += n
            marks.append((total, ack))
        base = _base(sub)
        host = sub.name
        i = 0
        for arrival, before, after in sub.samples:
            # every acknowledgement newly covered by this message: from before-base to after-base
            while i < len(marks) and marks[i][0] <= after - base:
                if marks[i][0] > before - base:
                    latencies.setdefault(host, []).append(arrival - marks[i][1])
                i += 1
        if sub.last != base + outcome["finals"][sub.statement_id]:
            errors["wrong-final-count"] += 1
    achieved = outcome["sent"] / outcome["wall"]
    notified = outcome["notified"]
    rounds = outcome["rounds"]
    nlat: list[float] = []
    j = 0
    for ack, position in rounds:
        while j < len(notified) and notified[j][1] < position:
            j += 1
        if j < len(notified):
            nlat.append(notified[j][0] - ack)
    nps = len(notified) / outcome["wall"]
    every = [v for values in latencies.values() for v in values]
    progress(
        f"fanout {label}: {achieved:.0f} views/s, {nps:.0f} NOTIFY/s, NOTIFY p99 "
        f"{_pct(nlat, 0.99) * 1000:.0f} ms, live p50 {_pct(every, 0.5) * 1000:.0f} ms, p99 "
        f"{_pct(every, 0.99) * 1000:.0f} ms, max {max(every, default=0) * 1000:.0f} ms, "
        f"errors {dict(errors)}, CPU s: "
        + ", ".join(f"{k} {v:.1f}" for k, v in sorted(outcome["cpu"].items()))
    )
    rows = [
        Result(f"{label}: views appended", "postgresql", "views/s", achieved, float(rate)),
        Result(f"{label}: NOTIFY received", "postgresql", "per s", nps, float("nan")),
        Result(f"{label}: NOTIFY latency p99", "postgresql", "ms", _pct(nlat, 0.99) * 1000, 0),
        Result(f"{label}: live latency p50", "postgresql", "ms", _pct(every, 0.5) * 1000, 500),
        Result(f"{label}: live latency p99", "postgresql", "ms", _pct(every, 0.99) * 1000, 500),
        Result(f"{label}: live latency max", "postgresql", "ms", max(every, default=0) * 1000, 0),
        Result(f"{label}: errors", "postgresql", "count", float(sum(errors.values())), 0),
    ]
    for host, seconds in sorted(outcome["cpu"].items()):
        # CPU per 1,000 views is what a quiet machine's capacity can be computed from.
        per_k = 1e6 * seconds / max(outcome["sent"], 1)
        rows.append(
            Result(f"{label}: CPU of {host}", "postgresql", "ms/1000 views", per_k, float("nan"))
        )
        rows.append(
            Result(
                f"{label}: CPU of {host}",
                "postgresql",
                "% of a core",
                100 * seconds / outcome["wall"],
                float("nan"),
            )
        )
    for host, values in sorted(latencies.items()):
        rows.append(
            Result(f"{label}: live p99 on {host}", "postgresql", "ms", _pct(values, 0.99) * 1000, 0)
        )
    return rows


def run(config: Config) -> list[Result]:
    reason = unavailable_reason()
    if reason is not None:
        progress(f"fanout: skipped, {reason}")
        return []
    rates = [1000, 5000] if config.quick else [1000, 5000, 10000, 20000]
    seconds = 5.0 if config.quick else 15.0
    results: list[Result] = []
    with (
        tempfile.TemporaryDirectory(prefix="bench-fanout-") as tmp,
        topology(Path(tmp)) as topo,
    ):
        topo.ensure_running()
        tokens = make_tokens(topo, 0)

        async def statements(rate: int) -> list[str]:
            async with httpx.AsyncClient(timeout=30) as http:
                url = topo.apis[API_HOSTS[0]].url
                return [
                    await publish(http, url, tokens[0], f"Fanout {rate} {i}")
                    for i in range(STATEMENTS)
                ]

        for rate in rates:
            ids = topo.run_client(functools.partial(statements, rate))
            outcome = topo.run_client(functools.partial(_measure, topo, ids, rate, seconds))
            label = f"{rate} views/s for {seconds:.0f} s, {len(outcome['subs'])} subscribers"
            results += _analyse(rate, outcome, label)
            with contextlib.suppress(Exception):
                progress(json.dumps([r.as_json() for r in results[-3:]])[:200])
    return results
