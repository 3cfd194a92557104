"""What read-your-writes costs ``recordView``: 1,000 views a second, with and without the wait.

A mutation answers once the read models show its write (``graphql_api.service_layer.consistency``);
for a view that means waiting for the views projection to commit a batch holding it. This benchmark
offers ``recordView`` at a fixed rate (1,000 views/s by default, open loop: a view is due every
millisecond whether or not earlier ones were answered, so a slow server is charged for the
queue it builds) to one ``statements serve`` worker, once with the wait (the default,
``STATEMENTS_POSITION_WAIT_SECONDS=5``) and once without (``=0``), and reports the views/s
answered and the p50/p99 latency, measured from when each view was due. The views come from one
``ingest`` token (its limit raised out of the way) and go to 100 demo statements in turn; the
mutation selects ``position viewCount`` (``viewCount`` is null without the wait).

Rounds alternate between the two settings and the median round of each is reported: on a shared
machine figures taken a minute apart drift. Run on its own with::

    python -m bench --only views            # SQLite, and PostgreSQL if it answers
    python -m bench --only views --quick    # a smoke run: 3 s rounds

``ours`` is with the wait, ``peer`` without it, so ``ours/peer`` is what the wait costs.
The PostgreSQL URL comes from ``STATEMENTS_BENCH_DATABASE_URL``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.common import Config, Result, pg_execute, pg_schema, progress, sqlite_file

RATE = 1000.0
CONNECTIONS = 128
STATEMENTS = 100
VIEW = "mutation View($id: ID!) { recordView(input: {statementId: $id}) { position viewCount } }"
IDS = "{ statements(first: 100) { nodes { statementId } pageInfo { hasNextPage endCursor } } }"


@dataclass(frozen=True)
class Round:
    answered_per_s: float
    p50_ms: float
    p99_ms: float
    errors: int


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _bin(name: str) -> str:
    return str(Path(sys.executable).parent / name)


def _cli(db: str, env: dict[str, str], *args: str) -> str:
    return subprocess.run(
        [_bin("statements"), *args, "--db", db],
        capture_output=True,
        text=True,
        check=True,
        env=env,
    ).stdout


@contextlib.contextmanager
def _server(db: str, env: dict[str, str], wait: float) -> Iterator[str]:
    port = _free_port()
    server = subprocess.Popen(
        [_bin("statements"), "serve", "--db", db, "--port", str(port), "--production"],
        env={
            **env,
            "STATEMENTS_POSITION_WAIT_SECONDS": str(wait),
            "STATEMENTS_INGEST_VIEW_RATE": "1000000",
            "STATEMENTS_INGEST_VIEW_BURST": "1000000",
        },
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            with (
                contextlib.suppress(OSError),
                urllib.request.urlopen(f"{url}/readyz", timeout=2) as response,
            ):
                if response.status == 200:
                    break
            if server.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("statements serve did not become ready")
            time.sleep(0.1)
        yield url
    finally:
        server.terminate()
        server.wait(timeout=30)


def _statement_ids(url: str) -> list[str]:
    request = urllib.request.Request(
        f"{url}/graphql",
        json.dumps({"query": IDS}).encode(),
        {"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        body: dict[str, Any] = json.loads(response.read())
    return [n["statementId"] for n in body["data"]["statements"]["nodes"]]


def _request(port: int, token: str, statement_id: str) -> bytes:
    body = json.dumps({"query": VIEW, "variables": {"id": statement_id}}).encode()
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


async def _offer(url: str, token: str, ids: list[str], seconds: float) -> Round:
    """Views at RATE per second for ``seconds``, open loop; latency from each view's due time."""
    port = int(url.rsplit(":", 1)[1])
    requests = [_request(port, token, i) for i in ids]
    idle: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = asyncio.Queue()
    for _ in range(CONNECTIONS):
        idle.put_nowait(await asyncio.open_connection("127.0.0.1", port))
    loop = asyncio.get_running_loop()
    latencies: list[float] = []
    errors = 0
    tasks: set[asyncio.Task[None]] = set()

    async def one(due: float, request: bytes) -> None:
        nonlocal errors
        connection = await idle.get()
        try:
            body = await _exchange(*connection, request)
        except (OSError, asyncio.IncompleteReadError):
            errors += 1
            connection = await asyncio.open_connection("127.0.0.1", port)
        else:
            latencies.append(loop.time() - due)
            if b'"errors"' in body:
                errors += 1
        idle.put_nowait(connection)

    start = loop.time()
    count = int(seconds * RATE)
    for n in range(count):
        due = start + n / RATE
        delay = due - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        task = loop.create_task(one(due, requests[n % len(requests)]))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    await asyncio.gather(*tasks)
    elapsed = loop.time() - start
    while not idle.empty():
        _reader, writer = idle.get_nowait()
        writer.close()
    latencies.sort()
    return Round(
        answered_per_s=len(latencies) / elapsed,
        p50_ms=1000 * latencies[len(latencies) // 2],
        p99_ms=1000 * latencies[int(len(latencies) * 0.99)],
        errors=errors,
    )


def _measure(config: Config, db: str, env: dict[str, str], backend: str) -> list[Result]:
    progress(f"views {backend}: demo data and an ingest token")
    _cli(db, env, "demo", "--statements", str(STATEMENTS), "--views", "0", "--seed", "1")
    token = _cli(db, env, "token", "create", "--role", "ingest", "--name", "bench").strip()
    seconds = 3.0 if config.quick else 10.0
    rounds = 1 if config.quick else 3
    measured: dict[float, list[Round]] = {5.0: [], 0.0: []}
    for n in range(rounds):
        for wait in (5.0, 0.0):
            with _server(db, env, wait) as url:
                ids = _statement_ids(url)
                asyncio.run(_offer(url, token, ids, 1.0))  # warm up: connections, plans
                result = asyncio.run(_offer(url, token, ids, seconds))
            progress(
                f"views {backend} round {n + 1} wait={wait:g}: {result.answered_per_s:,.0f}/s, "
                f"p50 {result.p50_ms:.1f} ms, p99 {result.p99_ms:.1f} ms, "
                f"{result.errors} errors"
            )
            if result.errors:
                raise RuntimeError(f"{result.errors} views failed (wait={wait:g})")
            measured[wait].append(result)

    def median(wait: float, field: str) -> float:
        return statistics.median(getattr(r, field) for r in measured[wait])

    label = f"recordView at {RATE:,.0f}/s offered, with/without read-your-writes"
    return [
        Result(
            f"{label}: answered",
            backend,
            "views/s",
            *(median(w, "answered_per_s") for w in (5.0, 0.0)),
        ),
        Result(f"{label}: p50", backend, "ms", *(median(w, "p50_ms") for w in (5.0, 0.0))),
        Result(f"{label}: p99", backend, "ms", *(median(w, "p99_ms") for w in (5.0, 0.0))),
    ]


def run(config: Config) -> list[Result]:
    base_env = {k: v for k, v in os.environ.items() if not k.startswith("STATEMENTS_")}
    results: list[Result] = []
    with sqlite_file(config, "views") as path:
        results += _measure(config, f"sqlite:///{path}", base_env, "sqlite")
    try:
        pg_execute(config.pg_url, "SELECT 1")
    except Exception as exc:
        progress(f"views: PostgreSQL at {config.pg_url} is not reachable ({exc}); skipped")
        return results
    with pg_schema(config.pg_url, "views") as schema:
        env = {**base_env, "STATEMENTS_DATABASE_SCHEMA": schema}
        results += _measure(config, config.pg_url, env, "postgresql")
    return results
