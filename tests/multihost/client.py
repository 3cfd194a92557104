"""Client code that knows several API hosts and moves to another when one fails.

This is the retry policy docs/API.md recommends, written as a client would write it:

* **Subscriptions** (graphql-transport-ws): the client pings every ``ping_every`` seconds and
  treats a connection that has said nothing for ``dead_after`` seconds as lost (a host that
  vanished never closes its sockets). On any loss it tries the *next* host in its list after a
  backoff drawn uniformly from ``[0, min(cap, base * 2**attempt)]`` ("full jitter", so that a
  thousand dashboards do not reconnect in one burst), and subscribes again. A value resets the
  attempt count.
* **Mutations**: a request that fails before it was sent (connection refused) moves to the next
  host and is sent again. One that was sent but not answered (timeout, reset) may or may not
  have been applied, so it is *not* resent blindly: ``recordView`` has no idempotency key, and
  the caller decides. It is counted as unacknowledged, and the next request goes to the next
  host.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import httpx
import websockets

TRANSPORT_WS = "graphql-transport-ws"
RECORD_VIEW = """mutation($id: ID!) { recordView(input: {statementId: $id}) { position } }"""
PUBLISH = """mutation($input: PublishStatementInput!) {
  publishStatement(input: $input) { statementId position } }"""
VIEW_COUNT = "subscription($id: ID!) { viewCount(statementId: $id) { viewCount } }"


@dataclass(frozen=True)
class RetryPolicy:
    base: float = 0.1
    cap: float = 2.0
    ping_every: float = 1.0
    dead_after: float = 3.0
    request_timeout: float = 3.0

    def backoff(self, attempt: int) -> float:
        return random.uniform(0, min(self.cap, self.base * 2**attempt))


class Lost(Exception):
    """The connection said nothing for too long, or the server ended the operation."""


async def publish(http: httpx.AsyncClient, url: str, token: str, title: str) -> str:
    response = await http.post(
        url + "/graphql",
        json={
            "query": PUBLISH,
            "variables": {
                "input": {
                    "title": title,
                    "body": "First paragraph.\n\nSecond paragraph.",
                    "kind": "speech",
                    "occurredOn": "2024-05-01",
                    "publishedAt": "2024-05-01T10:00:00+03:00",
                    "ministerName": "Test Minister",
                }
            },
        },
        headers={"authorization": f"Bearer {token}"},
    )
    body = response.json()
    assert "errors" not in body, body
    return str(body["data"]["publishStatement"]["statementId"])


@dataclass
class ViewWriter:
    """Records views of one statement at about ``rate`` a second, failing over between hosts."""

    hosts: list[str]
    token: str
    statement_id: str
    rate: float = 6.0
    start: int = 0
    policy: RetryPolicy = field(default_factory=RetryPolicy)
    acked: list[int] = field(default_factory=list)
    unacknowledged: int = 0
    not_sent: int = 0
    refused: Counter[str] = field(default_factory=Counter)
    by_host: Counter[str] = field(default_factory=Counter)

    async def run(self, stop: asyncio.Event) -> None:
        current = self.start
        headers = {"authorization": f"Bearer {self.token}"}
        payload = {"query": RECORD_VIEW, "variables": {"id": self.statement_id}}
        timeout = httpx.Timeout(self.policy.request_timeout)
        async with httpx.AsyncClient(timeout=timeout) as http:
            while not stop.is_set():
                host = self.hosts[current]
                try:
                    response = await http.post(host + "/graphql", json=payload, headers=headers)
                    body = response.json()
                except httpx.ConnectError:
                    self.not_sent += 1
                    current = (current + 1) % len(self.hosts)
                    await asyncio.sleep(self.policy.backoff(1))
                    continue
                except (httpx.HTTPError, ValueError):
                    self.unacknowledged += 1
                    current = (current + 1) % len(self.hosts)
                    continue
                errors = body.get("errors")
                if errors:
                    code = str(errors[0].get("extensions", {}).get("code", "?"))
                    self.refused[code] += 1
                    if code == "RATE_LIMITED":
                        await asyncio.sleep(1.0)
                    else:
                        current = (current + 1) % len(self.hosts)
                    continue
                self.acked.append(int(body["data"]["recordView"]["position"]))
                self.by_host[host] += 1
                await asyncio.sleep(1 / self.rate)


@dataclass
class CountSubscriber:
    """``viewCount`` over graphql-transport-ws with the failover policy; every value received,
    with the time and host, and every loss and reconnection."""

    hosts: list[str]
    statement_id: str
    start: int = 0
    policy: RetryPolicy = field(default_factory=RetryPolicy)
    values: list[tuple[float, int, str]] = field(default_factory=list)
    lost_at: list[float] = field(default_factory=list)
    resumed_at: list[float] = field(default_factory=list)
    failures: Counter[str] = field(default_factory=Counter)

    @property
    def counts(self) -> list[int]:
        return [count for _, count, _ in self.values]

    @property
    def host(self) -> str | None:
        return self.values[-1][2] if self.values else None

    async def run(self, stop: asyncio.Event) -> None:
        current, attempt = self.start, 0
        while not stop.is_set():
            host = self.hosts[current]
            try:
                await self._session(host, stop)
                return
            except (OSError, TimeoutError, Lost, websockets.exceptions.WebSocketException) as exc:
                self.failures[type(exc).__name__] += 1
                self.lost_at.append(time.monotonic())
            current = (current + 1) % len(self.hosts)
            await asyncio.sleep(self.policy.backoff(attempt))
            attempt += 1

    async def _session(self, host: str, stop: asyncio.Event) -> None:
        policy = self.policy
        async with websockets.connect(
            host,
            subprotocols=[TRANSPORT_WS],  # type: ignore[list-item]
            open_timeout=policy.dead_after,
            ping_interval=None,  # the protocol's own ping, as graphql-ws clients do
            close_timeout=0.5,
        ) as ws:
            await ws.send(json.dumps({"type": "connection_init", "payload": {}}))
            ack = json.loads(await asyncio.wait_for(ws.recv(), policy.dead_after))
            if ack.get("type") != "connection_ack":
                raise Lost(f"no connection_ack: {ack}")
            await ws.send(
                json.dumps(
                    {
                        "id": "1",
                        "type": "subscribe",
                        "payload": {"query": VIEW_COUNT, "variables": {"id": self.statement_id}},
                    }
                )
            )
            heard = time.monotonic()
            first = True
            while not stop.is_set():
                try:
                    raw = await asyncio.wait_for(ws.recv(), policy.ping_every)
                except TimeoutError:
                    if time.monotonic() - heard > policy.dead_after:
                        raise Lost(f"{host} silent for {policy.dead_after} s") from None
                    await ws.send(json.dumps({"type": "ping"}))
                    continue
                heard = time.monotonic()
                message: dict[str, Any] = json.loads(raw)
                kind = message.get("type")
                if kind == "ping":
                    await ws.send(json.dumps({"type": "pong"}))
                elif kind == "next":
                    payload = message["payload"]
                    if payload.get("errors"):
                        raise Lost(f"error from {host}: {payload['errors']}")
                    count = int(payload["data"]["viewCount"]["viewCount"])
                    if first and self.lost_at:
                        self.resumed_at.append(heard)
                    first = False
                    self.values.append((heard, count, host))
                elif kind in ("error", "complete"):
                    raise Lost(f"{kind} from {host}: {message}")


async def wait_for(predicate: Any, timeout: float, interval: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        await asyncio.sleep(interval)
    return bool(predicate())
