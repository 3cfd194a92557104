"""A soak of mixed traffic against one `statements serve` on SQLite (`make soak`).

For ``STATEMENTS_SOAK_SECONDS`` (default 600): queries, views (from several editor tokens,
each below the per-client rate limit), publishes, and ~200 graphql-transport-ws subscribers
to ``viewCount`` that connect and drop all the time (some close politely, some just cut the
TCP connection). At the end: 0 errors of any kind, the server's RSS within 10% of its value
after the warm-up, and the open-subscription and open-websocket gauges back at 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import re
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets

from tests.reliability.live import LiveServer, cli, gql
from tests.reliability.load import PUBLISH, RECORD_VIEW, publish_input

SECONDS = float(os.environ.get("STATEMENTS_SOAK_SECONDS", "600"))
SUBSCRIBERS = int(os.environ.get("STATEMENTS_SOAK_SUBSCRIBERS", "200"))
VIEW_CLIENTS = 6
VIEWS_PER_SECOND = 7.0  # per client: below the limit of 10/s
COUNT = "subscription($id: ID!) { viewCount(statementId: $id) { statementId viewCount } }"
QUERIES = [
    ("query { statements(first: 10) { edges { node { id title viewCount } } } }", None),
    (
        'query { statements(first: 5, filter: {search: "minister"}) { edges { node { id } } } }',
        None,
    ),
    ("query($id: ID!) { statement(id: $id) { id title viewCount } }", "id"),
]

IDS = "query { statements(first: 50) { edges { node { statementId } } } }"

pytestmark = pytest.mark.slow


def _statement_ids(base_url: str) -> list[str]:
    """The plain statement ids (what ``viewCount(statementId)`` takes)."""
    with httpx.Client(base_url=base_url, timeout=10) as client:
        body = gql(client, IDS).json()
    return [edge["node"]["statementId"] for edge in body["data"]["statements"]["edges"]]


@dataclass
class Stats:
    requests: Counter[str] = field(default_factory=Counter)
    errors: list[Any] = field(default_factory=list)
    subscriptions: int = 0
    messages: int = 0
    rss_kib: list[tuple[float, int]] = field(default_factory=list)

    def error(self, what: Any) -> None:
        if len(self.errors) < 50:
            self.errors.append(what)
        else:
            self.errors.append("...")


async def _post(
    client: httpx.AsyncClient,
    stats: Stats,
    kind: str,
    query: str,
    variables: dict[str, Any] | None = None,
    token: str | None = None,
) -> None:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        response = await client.post(
            "/graphql", json={"query": query, "variables": variables}, headers=headers
        )
    except httpx.HTTPError as exc:
        stats.error((kind, "transport", repr(exc)))
        return
    stats.requests[kind] += 1
    if response.status_code != 200:
        stats.error((kind, response.status_code, response.text[:300]))
        return
    body = response.json()
    if body.get("errors") or not body.get("data"):
        stats.error((kind, body))


async def _every(period: float, stop: asyncio.Event, action: Any) -> None:
    next_at = time.monotonic()
    while not stop.is_set():
        await action()
        next_at += period
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), max(0.0, next_at - time.monotonic()))


async def _subscriber(url: str, ids: list[str], rng: random.Random, stats: Stats) -> None:
    """One client: connect, subscribe, read for a while, then leave politely or abruptly."""
    lifetime = rng.uniform(1.0, 15.0)
    try:
        async with websockets.connect(
            url,
            subprotocols=[websockets.Subprotocol("graphql-transport-ws")],
            open_timeout=10,
        ) as ws:
            await ws.send(json.dumps({"type": "connection_init"}))
            ack = json.loads(await asyncio.wait_for(ws.recv(), 10))
            if ack.get("type") != "connection_ack":
                stats.error(("ws init", ack))
                return
            await ws.send(
                json.dumps(
                    {
                        "id": "1",
                        "type": "subscribe",
                        "payload": {"query": COUNT, "variables": {"id": rng.choice(ids)}},
                    }
                )
            )
            stats.subscriptions += 1
            first = True
            ends = time.monotonic() + lifetime
            while (left := ends - time.monotonic()) > 0 or first:
                try:
                    raw = await asyncio.wait_for(ws.recv(), max(left, 10.0 if first else 0.01))
                except TimeoutError:
                    if first:
                        stats.error(("ws", "no first value in 10 s"))
                    break
                message = json.loads(raw)
                if message.get("type") == "ping":
                    await ws.send(json.dumps({"type": "pong"}))
                    continue
                if message.get("type") != "next" or message["payload"].get("errors"):
                    stats.error(("ws", message))
                    return
                stats.messages += 1
                first = False
            if rng.random() < 0.5:
                await ws.send(json.dumps({"id": "1", "type": "complete"}))
            else:
                ws.transport.abort()  # the client vanishes: no complete, no close frame
    except (OSError, websockets.exceptions.WebSocketException, TimeoutError) as exc:
        stats.error(("ws", repr(exc)))


async def _metric(client: httpx.AsyncClient, name: str) -> float:
    text = (await client.get("/metrics")).text
    match = re.search(rf"^{name} ([0-9.eE+-]+)$", text, re.MULTILINE)
    assert match, f"{name} not in /metrics"
    return float(match.group(1))


async def _soak(server: LiveServer, tokens: list[str], ids: list[str], seed: int) -> Stats:
    stats = Stats()
    stop = asyncio.Event()
    rng = random.Random(seed)
    ws_url = server.url.replace("http://", "ws://") + "/graphql"
    warmup = min(60.0, max(10.0, SECONDS * 0.15))
    limits = httpx.Limits(max_connections=50)
    async with httpx.AsyncClient(base_url=server.url, timeout=30, limits=limits) as client:

        def viewer(token: str) -> Any:
            async def view() -> None:
                await _post(client, stats, "view", RECORD_VIEW, {"id": rng.choice(ids)}, token)

            return view

        async def read() -> None:
            query, var = rng.choice(QUERIES)
            await _post(client, stats, "query", query, {var: rng.choice(ids)} if var else None)

        async def publish() -> None:
            title = f"Soak statement {uuid.uuid4().hex}"
            await _post(
                client, stats, "publish", PUBLISH, {"input": publish_input(title)}, tokens[0]
            )

        async def subscribers() -> None:
            running: set[asyncio.Task[None]] = set()
            while not stop.is_set():
                while len(running) < SUBSCRIBERS:
                    task = asyncio.create_task(_subscriber(ws_url, ids, rng, stats))
                    running.add(task)
                    task.add_done_callback(running.discard)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), 0.2)
            for task in list(running):
                task.cancel()
            await asyncio.gather(*running, return_exceptions=True)

        async def sample_rss() -> None:
            stats.rss_kib.append((round(time.monotonic() - started, 1), server.rss_kib()))

        started = time.monotonic()
        tasks = [
            *(
                asyncio.create_task(_every(1 / VIEWS_PER_SECOND, stop, viewer(t)))
                for t in tokens[:VIEW_CLIENTS]
            ),
            *(asyncio.create_task(_every(0.05, stop, read)) for _ in range(2)),
            asyncio.create_task(_every(0.5, stop, publish)),
            asyncio.create_task(_every(5.0, stop, sample_rss)),
            asyncio.create_task(subscribers()),
        ]
        await asyncio.sleep(warmup)
        warm_rss = server.rss_kib()
        await asyncio.sleep(max(0.0, SECONDS - warmup))
        stop.set()
        await asyncio.gather(*tasks)

        # Everyone has left: the gauges go back to 0.
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            subs = await _metric(client, "statements_open_subscriptions")
            sockets = await _metric(client, "statements_open_websockets")
            if subs == 0 and sockets == 0:
                break
            await asyncio.sleep(0.2)
        await asyncio.sleep(2)
        end_rss = server.rss_kib()
        summary = {
            "seconds": SECONDS,
            "warmup_seconds": warmup,
            "requests": stats.requests,
            "subscriptions": stats.subscriptions,
            "subscription_messages": stats.messages,
            "errors": len(stats.errors),
            "rss_kib_after_warmup": warm_rss,
            "rss_kib_end": end_rss,
            "rss_change_percent": round(100 * (end_rss - warm_rss) / warm_rss, 2),
            "rss_kib_max": max(r for _, r in stats.rss_kib),
            "rss_kib_samples": stats.rss_kib[:: max(1, len(stats.rss_kib) // 12)],
            "open_subscriptions_end": subs,
            "open_websockets_end": sockets,
        }
        print(json.dumps(summary))
        assert not stats.errors, (stats.errors[:10], summary)
        assert subs == 0 and sockets == 0, summary
        assert end_rss <= warm_rss * 1.10, summary
        assert stats.subscriptions >= SUBSCRIBERS, summary
        # Subscribers saw counts change, not only the first value.
        assert stats.messages > 1.2 * stats.subscriptions, summary
        return stats


def test_soak_mixed_traffic(request: pytest.FixtureRequest, tmp_path: Path) -> None:
    selected = "slow" in (request.config.getoption("markexpr") or "")
    if not selected and "STATEMENTS_SOAK_SECONDS" not in os.environ:
        pytest.skip("the soak runs under `make soak` (pytest -m slow)")
    db = f"sqlite:///{tmp_path / 'soak.db'}"
    cli("demo", "--db", db, "--statements", "30", "--views", "300")
    tokens = [
        cli("token", "create", "--db", db, "--role", "editor", "--name", f"soak{n}").stdout.strip()
        for n in range(VIEW_CLIENTS)
    ]
    server = LiveServer(db, tmp_path / "server.log")
    with server.running():
        server.wait_caught_up()
        ids = _statement_ids(server.url)
        asyncio.run(_soak(server, tokens, ids, seed=int(time.time())))
        server.wait_caught_up()
    assert "head" in cli("verify", "--db", db).stdout
    assert "unexpected error" not in server.log_path.read_text(errors="replace")
