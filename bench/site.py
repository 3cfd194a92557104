"""The archive site's statement page against the same data through ``/graphql``, one worker.

A ``statements serve`` worker (SQLite, demo data) answers, in alternating rounds of closed-loop
load (``CONNECTIONS`` keep-alive connections, each sending its next request when the last was
answered):

* **ours**: ``GET /statements/{slug}``, the HTML page, over 50 demo statements in turn;
* **peer**: what a client app sends for the same page through ``/graphql``: the site's own
  ``StatementPage`` document (``graphql_api/site/documents/statement.graphql``) as a POST and,
  when counting is on, the ``StatementView`` mutation after it (the page does both in-process).

Counting on (``STATEMENTS_SITE_COUNT_VIEWS=1``, the view rate limit raised out of the way: every
request comes from one address) and off (``=0``) each get a server of their own. The median round
of each is reported; ``ours/peer`` is the page's requests/s over the client's pages/s. The machine
is shared with other work: compare ratios, not absolute figures::

    python -m bench --only site            # 5 s rounds, 3 of each
    python -m bench --only site --quick    # a smoke run: 2 s rounds, 1 of each
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import statistics
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from typing import Any

from bench.common import Config, Result, progress, sqlite_file
from bench.views import _bin, _free_port
from graphql_api.site.documents import SiteDocuments

CONNECTIONS = 8
STATEMENTS = 50
SLUGS = "{ statements(first: 50) { nodes { slug statementId } } }"


def _cli(db: str, *args: str) -> None:
    subprocess.run([_bin("statements"), *args, "--db", db], capture_output=True, check=True)


@contextlib.contextmanager
def _server(db: str, count_views: bool) -> Iterator[int]:
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("STATEMENTS_")}
    server = subprocess.Popen(
        [_bin("statements"), "serve", "--db", db, "--port", str(port)],
        env={
            **env,
            "STATEMENTS_SITE_COUNT_VIEWS": "1" if count_views else "0",
            "STATEMENTS_VIEW_RATE": "1000000",
            "STATEMENTS_VIEW_BURST": "1000000",
        },
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            with (
                contextlib.suppress(OSError),
                urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as r,
            ):
                if r.status == 200:
                    break
            if server.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("statements serve did not become ready")
            time.sleep(0.1)
        yield port
    finally:
        server.terminate()
        server.wait(timeout=30)


def _statements(port: int) -> list[dict[str, str]]:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/graphql",
        json.dumps({"query": SLUGS}).encode(),
        {"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        body: dict[str, Any] = json.loads(response.read())
    nodes: list[dict[str, str]] = body["data"]["statements"]["nodes"]
    return nodes


def _post(port: int, document: str, variables: dict[str, str]) -> bytes:
    body = json.dumps({"query": document, "variables": variables}).encode()
    head = (
        f"POST /graphql HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


def _page_requests(port: int, statement: dict[str, str]) -> list[bytes]:
    agent = "Mozilla/5.0 (X11; Linux x86_64) Firefox/128.0"
    return [
        f"GET /statements/{statement['slug']} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        f"User-Agent: {agent}\r\nAccept: text/html\r\n\r\n".encode()
    ]


def _api_requests(port: int, statement: dict[str, str], count_views: bool) -> list[bytes]:
    documents = SiteDocuments.load()
    sent = [_post(port, documents["statement"].text, {"slug": statement["slug"]})]
    if count_views:
        view = documents["statement_view"].text
        sent.append(_post(port, view, {"statementId": statement["statementId"]}))
    return sent


async def _exchange(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes
) -> None:
    writer.write(request)
    head = await reader.readuntil(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 200"):
        raise RuntimeError(head.split(b"\r\n", 1)[0].decode())
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    await reader.readexactly(length)


async def _load(port: int, pages: list[list[bytes]], seconds: float) -> float:
    """Pages answered per second: each page is its requests, one after another."""
    done = 0
    stop = time.perf_counter() + seconds

    async def connection(offset: int) -> None:
        nonlocal done
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        i = offset
        try:
            while time.perf_counter() < stop:
                for request in pages[i % len(pages)]:
                    await _exchange(reader, writer, request)
                done += 1
                i += 1
        finally:
            writer.close()

    started = time.perf_counter()
    await asyncio.gather(*(connection(n * 7) for n in range(CONNECTIONS)))
    return done / (time.perf_counter() - started)


def _measure(config: Config, db: str, count_views: bool) -> Result:
    seconds = 2.0 if config.quick else 5.0
    rounds = 1 if config.quick else 3
    ours: list[float] = []
    peer: list[float] = []
    with _server(db, count_views) as port:
        statements = _statements(port)
        page = [_page_requests(port, s) for s in statements]
        api = [_api_requests(port, s, count_views) for s in statements]
        asyncio.run(_load(port, page, 1.0))  # warm up: plans, caches, connections
        asyncio.run(_load(port, api, 1.0))
        for n in range(rounds):
            ours.append(asyncio.run(_load(port, page, seconds)))
            peer.append(asyncio.run(_load(port, api, seconds)))
            progress(
                f"site counting={'on' if count_views else 'off'} round {n + 1}: page "
                f"{ours[-1]:,.0f}/s, /graphql {peer[-1]:,.0f} pages/s"
            )
    label = "on" if count_views else "off"
    return Result(
        f"statement page HTML vs the same data via /graphql, 1 worker, counting {label}",
        "sqlite",
        "pages/s",
        statistics.median(ours),
        statistics.median(peer),
    )


def run(config: Config) -> list[Result]:
    with sqlite_file(config, "site") as path:
        db = f"sqlite:///{path}"
        progress("site: demo data")
        _cli(db, "demo", "--statements", str(STATEMENTS), "--views", "200", "--seed", "1")
        return [_measure(config, db, False), _measure(config, db, True)]
