"""Live subscriptions: 1,000 concurrent subscribers on one uvicorn worker at 1,000 views/s.

One uvicorn worker (tests/graphql_api/live_app.py: the real store, projections, hub and
graphql-transport-ws) runs on PostgreSQL. The bench process opens the subscribers (viewCount over
50 statements, 20 subscribers each) and appends ``Viewed`` events at a steady 1,000/s straight
to the store, like another server process would; the worker learns of them through
LISTEN/NOTIFY. For every message a subscriber receives, the latency is measured from the
acknowledged append of the *oldest* view the message newly covers to its arrival (the
conservative figure). Also: errors (connection failures, closes, a count that goes down or a
final count that is wrong), the worker's RSS growth per subscriber and its CPU use.

Peer: the same dashboards polling the HTTP API once a second. Its latency is not measured but
bounded: a change waits for the next poll, so p50 = 500 ms and p99 = 990 ms plus the query
time; the ratio column compares with those figures (and with 1,000 requests/s of polling load
that the subscription server does not have).
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import time
from pathlib import Path

import httpx
import websockets

from bench.common import Config, Result, pg_schema, progress
from domain.streams import views_stream
from eventstore import ANY, NewEvent, open_store
from tests.graphql_api.live_support import (
    TRANSPORT_WS,
    WsClient,
    live_server,
    make_tokens,
    publish,
)

COUNT = "subscription($id: ID!) { viewCount(statementId: $id) { viewCount } }"
STATEMENTS = 50


def _proc(pid: int) -> tuple[float, float]:
    """(RSS MiB, CPU seconds) of a process."""
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        rss = next(int(line.split()[1]) for line in status if line.startswith("VmRSS:")) / 1024
    with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return rss, (int(fields[11]) + int(fields[12])) / ticks


def _mean(values: list[float]) -> float:
    return statistics.fmean(values) if values else float("nan")


def _pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def _scenario(
    url: str, schema: str, ws_url: str, http_url: str, editor: str, pid: int, config: Config
) -> list[Result]:
    subscribers = 200 if config.quick else 1000
    seconds = 8 if config.quick else 20
    rate = 1000
    async with httpx.AsyncClient(timeout=30) as http:
        ids = [await publish(http, http_url, editor, f"Bench {i}") for i in range(STATEMENTS)]
    rss0, _ = _proc(pid)
    errors = 0
    latencies: list[float] = []
    appended: dict[str, list[float]] = {sid: [] for sid in ids}  # k-th view -> ack time
    finals: dict[int, int] = {}

    async def subscriber(n: int, ready: asyncio.Event, stop: asyncio.Event) -> None:
        nonlocal errors
        sid = ids[n % STATEMENTS]
        try:
            async with websockets.connect(
                ws_url,
                subprotocols=[TRANSPORT_WS],  # type: ignore[list-item]
                open_timeout=30,
            ) as ws:
                client = WsClient(ws)
                await client.init()
                await client.subscribe("1", COUNT, {"id": sid})
                last = (await client.recv(30))["payload"]["data"]["viewCount"]["viewCount"]
                ready.set()
                while not stop.is_set() or last < len(appended[sid]):
                    try:
                        message = await client.recv(timeout=5)
                    except TimeoutError:
                        break
                    now = time.perf_counter()
                    count = message["payload"]["data"]["viewCount"]["viewCount"]
                    if count < last:
                        errors += 1
                    times = appended[sid]
                    if count > last and last < len(times):
                        latencies.append(now - times[last])
                    last = count
                finals[n] = last
        except Exception as exc:  # every failure is an error of the run
            progress(f"subscriber {n}: {exc!r}")
            errors += 1
            ready.set()

    stop = asyncio.Event()
    readies = [asyncio.Event() for _ in range(subscribers)]
    tasks = []
    for n in range(subscribers):
        tasks.append(asyncio.create_task(subscriber(n, readies[n], stop)))
        if n % 50 == 49:
            await asyncio.sleep(0.05)
    await asyncio.gather(*(r.wait() for r in readies))
    await asyncio.sleep(1)
    rss1, cpu0 = _proc(pid)
    progress(f"subscriptions: {subscribers} subscribers open, RSS {rss0:.0f} -> {rss1:.0f} MiB")

    async with open_store(url, schema=schema) as store:
        started = time.perf_counter()
        sent = 0
        batch = 10
        while time.perf_counter() - started < seconds:
            due = started + sent / rate
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            group = [ids[(sent + i) % STATEMENTS] for i in range(batch)]
            await asyncio.gather(
                *(
                    store.append(
                        views_stream(sid), [NewEvent("Viewed", {"statement_id": sid})], ANY
                    )
                    for sid in group
                )
            )
            ack = time.perf_counter()
            for sid in group:
                appended[sid].append(ack)
            sent += batch
        wall = time.perf_counter() - started
    _, cpu1 = _proc(pid)
    stop.set()
    await asyncio.gather(*tasks)
    wrong = sum(
        1 for n in range(subscribers) if finals.get(n) != len(appended[ids[n % STATEMENTS]])
    )
    errors += wrong
    achieved = sent / wall
    cpu = 100 * (cpu1 - cpu0) / wall
    per_sub_kib = (rss1 - rss0) * 1024 / subscribers
    progress(
        f"subscriptions: {achieved:.0f} views/s, {len(latencies)} messages, p50 "
        f"{_pct(latencies, 0.5) * 1000:.0f} ms, p99 {_pct(latencies, 0.99) * 1000:.0f} ms, "
        f"errors {errors}, CPU {cpu:.0f}%, {per_sub_kib:.1f} KiB/subscriber"
    )
    label = f"{subscribers} subscribers, {achieved:.0f} views/s"
    return [
        Result(f"{label}: latency p50", "postgresql", "ms", _pct(latencies, 0.5) * 1000, 500.0),
        Result(f"{label}: latency p99", "postgresql", "ms", _pct(latencies, 0.99) * 1000, 990.0),
        Result(f"{label}: latency mean", "postgresql", "ms", _mean(latencies) * 1000, 500.0),
        Result(f"{label}: errors", "postgresql", "count", float(errors), 0.0),
        Result(f"{label}: memory per subscriber", "postgresql", "KiB", per_sub_kib, float("nan")),
        Result(f"{label}: worker CPU", "postgresql", "% of a core", cpu, float("nan")),
        Result(f"{label}: messages", "postgresql", "count", float(len(latencies)), float("nan")),
    ]


def run(config: Config) -> list[Result]:
    with pg_schema(config.pg_url, "subs") as schema:
        url = config.pg_url
        tokens = make_tokens(url, schema)
        log_dir = Path(config.tmp_dir)
        with live_server(url, log_dir, schema=schema, env={"LIVE_MAX_SUBSCRIPTIONS": "10"}) as s:
            results = asyncio.run(
                _scenario(url, schema, s.ws_url, s.url, tokens.editor, s.process.pid, config)
            )
        progress(json.dumps([r.as_json() for r in results])[:200])
        return results
