"""A load generator over HTTP that writes down every mutation the server acknowledged."""

from __future__ import annotations

import itertools
import random
import threading
import uuid
from dataclasses import dataclass, field
from typing import Any

import httpx

from tests.reliability.live import gql

PUBLISH = """
mutation($input: PublishStatementInput!) {
  publishStatement(input: $input) { statementId version position }
}
"""
RECORD_VIEW = """
mutation($id: ID!) { recordView(input: {statementId: $id}) { statementId position viewCount } }
"""
IDS = "query { statements(first: 50) { edges { node { id } } } }"


@dataclass(frozen=True)
class Ack:
    kind: str  # "publish" or "view"
    statement_id: str
    position: int
    title: str | None = None


@dataclass
class Tally:
    acks: list[Ack] = field(default_factory=list)
    refused: dict[str, int] = field(default_factory=dict)  # error code -> count
    transport_errors: int = 0
    server_errors: int = 0  # HTTP 5xx or INTERNAL_SERVER_ERROR
    lock: threading.Lock = field(default_factory=threading.Lock)

    def refuse(self, code: str) -> None:
        with self.lock:
            self.refused[code] = self.refused.get(code, 0) + 1


def publish_input(title: str) -> dict[str, Any]:
    return {
        "title": title,
        "body": f"Body of {title}.\n\nSecond paragraph.",
        "kind": "comment",
        "ministerName": "Sergey Lavrov",
        "location": "Moscow",
        "occurredOn": "2024-03-01",
        "publishedAt": "2024-03-01T12:00:00+03:00",
    }


def statement_ids(base_url: str) -> list[str]:
    with httpx.Client(base_url=base_url, timeout=10) as client:
        body = gql(client, IDS).json()
    assert body.get("data"), body
    return [edge["node"]["id"] for edge in body["data"]["statements"]["edges"]]


_counter = itertools.count()


def one_request(
    client: httpx.Client, tally: Tally, token: str, ids: list[str], rng: random.Random
) -> None:
    """One publish (one in five) or view; records it only if the server acknowledged it."""
    if rng.random() < 0.2:
        title = f"Load statement {next(_counter)} {uuid.uuid4().hex[:8]}"
        kind, response = "publish", gql(client, PUBLISH, {"input": publish_input(title)}, token)
        field_name = "publishStatement"
    else:
        title = None
        kind, response = "view", gql(client, RECORD_VIEW, {"id": rng.choice(ids)}, token)
        field_name = "recordView"
    if response.status_code >= 500:
        with tally.lock:
            tally.server_errors += 1
        return
    body = response.json()
    payload = (body.get("data") or {}).get(field_name)
    if payload is not None and payload.get("position") is not None:
        with tally.lock:
            tally.acks.append(Ack(kind, payload["statementId"], payload["position"], title))
        return
    for error in body.get("errors") or [{}]:
        code = (error.get("extensions") or {}).get("code", "NO_CODE")
        if code == "INTERNAL_SERVER_ERROR":
            with tally.lock:
                tally.server_errors += 1
        tally.refuse(code)


def run_load(
    base_url: str,
    token: str,
    ids: list[str],
    tally: Tally,
    stop: threading.Event,
    *,
    threads: int = 6,
    seed: int = 0,
) -> list[threading.Thread]:
    """Start ``threads`` workers that send mutations until ``stop`` is set."""

    def worker(n: int) -> None:
        rng = random.Random(seed * 1000 + n)
        with httpx.Client(base_url=base_url, timeout=10) as client:
            while not stop.is_set():
                try:
                    one_request(client, tally, token, ids, rng)
                except httpx.HTTPError:
                    with tally.lock:
                        tally.transport_errors += 1
                    stop.wait(0.02)

    started = [threading.Thread(target=worker, args=(n,), daemon=True) for n in range(threads)]
    for thread in started:
        thread.start()
    return started
