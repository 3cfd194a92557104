"""Live subscriptions: 1,000 concurrent subscribers on one uvicorn worker at 1,000 views/s.

One uvicorn worker (tests/graphql_api/live_app.py: the real store, projections, hub and
graphql-transport-ws) runs on PostgreSQL. The subscribers (viewCount over 50 statements, 20
subscribers each) are spread over ``CLIENT_PROCESSES`` client processes, each with its own event
loop, and a separate generator process appends ``Viewed`` events at a steady 1,000/s straight to
the store, like another server process would; the worker learns of them through LISTEN/NOTIFY.
With all of it in one process, the clients' own loop fell behind and read messages late, which
counted as server latency; a receive timeout that also ran while the 1,000 connections were
still opening counted early subscribers as errors.

Every process stamps with ``time.monotonic()`` (CLOCK_MONOTONIC, one clock for the whole
machine), so a receive time in a client is comparable with an append's acknowledgement in the
generator. For every message that raises a subscriber's count, the latency is measured from the
acknowledged append of the *oldest* view the message newly covers to its arrival (the
conservative figure: it includes up to one whole 250 ms tick). Errors are classified: a
connection that fails or closes, a message that is not ``next``, a count that goes down, a count
above the number of views appended, a final count that is not the exact number appended. Also the
worker's RSS growth per subscriber and its CPU use while the views arrive.

Peer: the same dashboards polling the HTTP API once a second. Its latency is not measured but
bounded: a change waits for the next poll, so p50 = 500 ms and p99 = 990 ms plus the query
time; the ratio column compares with those figures (and with 1,000 requests/s of polling load
that the subscription server does not have).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import multiprocessing
import os
import statistics
import time
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, Final

import httpx
import websockets

from bench.common import Config, Result, pg_schema, progress
from domain.streams import views_stream
from eventstore import ANY, NewEvent, open_store
from tests.graphql_api.live_support import TRANSPORT_WS, live_server, make_tokens, publish

COUNT: Final = "subscription($id: ID!) { viewCount(statementId: $id) { viewCount } }"
STATEMENTS: Final = 50
CLIENT_PROCESSES: Final = 4
RATE: Final = 1000  # views/s
#: How long after the last append a subscriber may take to show the exact final count.
FINAL_GRACE: Final = 10.0
#: Opening 1,000 connections on a busy 2-core machine can take a while; this bounds "never".
READY_TIMEOUT: Final = 180.0


def _proc(pid: int) -> tuple[float, float]:
    """(RSS MiB, CPU seconds) of a process."""
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        rss = next(int(line.split()[1]) for line in status if line.startswith("VmRSS:")) / 1024
    return rss, _cpu(pid)


def _cpu(pid: int) -> float:
    with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _mean(values: list[float]) -> float:
    return statistics.fmean(values) if values else float("nan")


def _pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


# -- the client processes -------------------------------------------------------------------


@dataclass
class _Subscriber:
    n: int
    statement_id: str
    last: int | None = None
    final: int | None = None
    #: (arrival, count before, count after) of every message that raised the count.
    samples: list[tuple[float, int, int]] = field(default_factory=list)
    errors: list[tuple[str, str]] = field(default_factory=list)
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    done: asyncio.Event = field(default_factory=asyncio.Event)

    def report(self) -> dict[str, Any]:
        return {
            "n": self.n,
            "statement_id": self.statement_id,
            "last": self.last,
            "samples": self.samples,
            "errors": self.errors,
        }


async def _follow(sub: _Subscriber, ws_url: str) -> None:
    try:
        async with websockets.connect(
            ws_url,
            subprotocols=[TRANSPORT_WS],  # type: ignore[list-item]
            open_timeout=READY_TIMEOUT,
        ) as ws:
            await ws.send(json.dumps({"type": "connection_init", "payload": {}}))
            ack = json.loads(await ws.recv())
            if ack.get("type") != "connection_ack":
                sub.errors.append(("protocol", f"expected connection_ack, got {ack!r}"[:200]))
                return
            await ws.send(
                json.dumps(
                    {
                        "id": "1",
                        "type": "subscribe",
                        "payload": {"query": COUNT, "variables": {"id": sub.statement_id}},
                    }
                )
            )
            async for raw in ws:
                now = time.monotonic()
                message = json.loads(raw)
                kind = message.get("type")
                if kind == "ping":
                    await ws.send('{"type":"pong"}')
                    continue
                if kind != "next" or "errors" in message.get("payload", {}):
                    sub.errors.append(("protocol", repr(message)[:200]))
                    return
                count = int(message["payload"]["data"]["viewCount"]["viewCount"])
                last = sub.last
                if last is None:
                    sub.last = count
                    sub.ready.set()
                    continue
                if count < last:
                    sub.errors.append(("count went down", f"{last} -> {count}"))
                elif count > last:
                    sub.samples.append((now, last, count))
                sub.last = count
                if sub.final is not None and count >= sub.final:
                    return
            sub.errors.append(("closed", f"by the server: {ws.close_code} {ws.close_reason}"))
    except Exception as exc:  # every failure is an error of the run
        sub.errors.append(("connection", repr(exc)[:200]))
    finally:
        sub.ready.set()
        sub.done.set()


async def _client(conn: Connection, ws_url: str, assigned: list[tuple[int, str]]) -> None:
    loop = asyncio.get_running_loop()
    subs = [_Subscriber(n, sid) for n, sid in assigned]
    tasks = []
    for i, sub in enumerate(subs):
        tasks.append(asyncio.create_task(_follow(sub, ws_url)))
        if i % 25 == 24:
            await asyncio.sleep(0.02)  # a ramp, not a SYN flood
    await asyncio.gather(*(s.ready.wait() for s in subs))
    conn.send(("ready", sum(1 for s in subs if s.last is not None)))
    finals: dict[str, int] = await loop.run_in_executor(None, conn.recv)
    for sub in subs:
        sub.final = finals[sub.statement_id]
        if sub.last is not None and sub.last >= sub.final:
            sub.done.set()
    waiting = [s.done.wait() for s in subs]
    with contextlib.suppress(TimeoutError):  # who is still short is reported below
        await asyncio.wait_for(asyncio.gather(*waiting), FINAL_GRACE)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    conn.send([s.report() for s in subs])


def _client_main(conn: Connection, ws_url: str, assigned: list[tuple[int, str]]) -> None:
    asyncio.run(_client(conn, ws_url, assigned))


# -- the view generator ---------------------------------------------------------------------


async def _generate(
    conn: Connection, url: str, schema: str, ids: list[str], seconds: float
) -> dict[str, list[float]]:
    acks: dict[str, list[float]] = {sid: [] for sid in ids}

    async def view(sid: str) -> None:
        await store.append(views_stream(sid), [NewEvent("Viewed", {"statement_id": sid})], ANY)
        acks[sid].append(time.monotonic())

    async with open_store(url, schema=schema) as store:
        await store.head_position()  # connected before the clock starts
        conn.send("started")
        started = time.monotonic()
        sent = 0
        batch = 10
        while time.monotonic() - started < seconds:
            delay = started + sent / RATE - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            # A statement appears at most once per batch and batches follow each other, so
            # the k-th acknowledgement of a statement is its k-th view in log order.
            await asyncio.gather(*(view(ids[(sent + i) % len(ids)]) for i in range(batch)))
            sent += batch
    return acks


def _generator_main(
    conn: Connection, url: str, schema: str, ids: list[str], seconds: float
) -> None:
    conn.send(asyncio.run(_generate(conn, url, schema, ids, seconds)))


# -- the run --------------------------------------------------------------------------------


def _recv(conn: Connection, what: str, timeout: float) -> Any:
    if not conn.poll(timeout):
        raise RuntimeError(f"subscriptions bench: no {what} within {timeout:.0f} s")
    return conn.recv()


def _scenario(
    url: str, schema: str, ids: list[str], ws_url: str, pid: int, config: Config
) -> list[Result]:
    subscribers = 200 if config.quick else 1000
    seconds = 8.0 if config.quick else 20.0
    processes = 2 if config.quick else CLIENT_PROCESSES
    # spawn, not fork: each client starts with a fresh interpreter and no inherited loop.
    ctx = multiprocessing.get_context("spawn")
    rss0, _ = _proc(pid)
    clients = []
    for k in range(processes):
        ours, theirs = ctx.Pipe()
        assigned = [(n, ids[n % len(ids)]) for n in range(k, subscribers, processes)]
        proc = ctx.Process(target=_client_main, args=(theirs, ws_url, assigned), daemon=True)
        proc.start()
        clients.append((proc, ours))
    try:
        opened = sum(_recv(c, "ready", READY_TIMEOUT)[1] for _, c in clients)
        time.sleep(1)
        rss1, _ = _proc(pid)
        progress(
            f"subscriptions: {opened}/{subscribers} subscribers open in {processes} client "
            f"processes, worker RSS {rss0:.0f} -> {rss1:.0f} MiB"
        )
        ours, theirs = ctx.Pipe()
        generator = ctx.Process(
            target=_generator_main, args=(theirs, url, schema, ids, seconds), daemon=True
        )
        generator.start()
        _recv(ours, "generator start", 60)
        cpu0, client_cpu0 = _cpu(pid), sum(_cpu(p.pid or 0) for p, _ in clients)
        started = time.monotonic()
        acks: dict[str, list[float]] = _recv(ours, "generator result", seconds + 120)
        wall = time.monotonic() - started
        cpu1, client_cpu1 = _cpu(pid), sum(_cpu(p.pid or 0) for p, _ in clients)
        generator.join(30)
        finals = {sid: len(times) for sid, times in acks.items()}
        for _, conn in clients:
            conn.send(finals)
        reports = [r for _, c in clients for r in _recv(c, "client report", FINAL_GRACE + 60)]
    finally:
        for proc, _ in clients:
            proc.join(10)
            if proc.is_alive():
                proc.kill()

    latencies: list[float] = []
    errors: collections.Counter[str] = collections.Counter()
    examples: dict[str, str] = {}
    for report in reports:
        sid, last = report["statement_id"], report["last"]
        times = acks[sid]
        for kind, detail in report["errors"]:
            errors[kind] += 1
            examples.setdefault(kind, f"subscriber {report['n']}: {detail}")
        for arrival, before, after in report["samples"]:
            if after > len(times):
                errors["count above the views appended"] += 1
                examples.setdefault("count above the views appended", f"{after} > {len(times)}")
            elif before < len(times):
                latencies.append(arrival - times[before])
        # A subscriber that failed for a counted reason is not counted twice.
        if last != len(times) and not report["errors"]:
            errors["wrong final count"] += 1
            examples.setdefault(
                "wrong final count", f"subscriber {report['n']}: {last}, not {len(times)}"
            )
    total_errors = sum(errors.values())
    appended = sum(finals.values())
    achieved = appended / wall
    cpu = 100 * (cpu1 - cpu0) / wall
    client_cpu = 100 * (client_cpu1 - client_cpu0) / wall
    per_sub_kib = (rss1 - rss0) * 1024 / subscribers
    progress(
        f"subscriptions: {achieved:.0f} views/s, {len(latencies)} messages, p50 "
        f"{_pct(latencies, 0.5) * 1000:.0f} ms, p99 {_pct(latencies, 0.99) * 1000:.0f} ms, "
        f"max {max(latencies, default=float('nan')) * 1000:.0f} ms, errors {total_errors}, "
        f"worker CPU {cpu:.0f}%, clients' CPU {client_cpu:.0f}%, {per_sub_kib:.1f} KiB/subscriber"
    )
    for kind, count in errors.items():
        progress(f"subscriptions: {count} x {kind}, e.g. {examples[kind]}")
    label = f"{subscribers} subscribers, {achieved:.0f} views/s"
    return [
        Result(f"{label}: latency p50", "postgresql", "ms", _pct(latencies, 0.5) * 1000, 500.0),
        Result(f"{label}: latency p99", "postgresql", "ms", _pct(latencies, 0.99) * 1000, 990.0),
        Result(f"{label}: latency mean", "postgresql", "ms", _mean(latencies) * 1000, 500.0),
        Result(f"{label}: errors", "postgresql", "count", float(total_errors), 0.0),
        Result(f"{label}: memory per subscriber", "postgresql", "KiB", per_sub_kib, float("nan")),
        Result(f"{label}: worker CPU", "postgresql", "% of a core", cpu, float("nan")),
        Result(f"{label}: messages", "postgresql", "count", float(len(latencies)), float("nan")),
    ]


async def _publish(http_url: str, editor: str) -> list[str]:
    async with httpx.AsyncClient(timeout=30) as http:
        return [await publish(http, http_url, editor, f"Bench {i}") for i in range(STATEMENTS)]


def run(config: Config) -> list[Result]:
    with pg_schema(config.pg_url, "subs") as schema:
        url = config.pg_url
        tokens = make_tokens(url, schema)
        log_dir = Path(config.tmp_dir)
        with live_server(url, log_dir, schema=schema, env={"LIVE_MAX_SUBSCRIPTIONS": "10"}) as s:
            ids = asyncio.run(_publish(s.url, tokens.editor))
            results = _scenario(url, schema, ids, s.ws_url, s.process.pid, config)
        progress(json.dumps([r.as_json() for r in results])[:200])
        return results
