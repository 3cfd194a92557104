"""Replicas: the statement page's throughput with a primary and one streaming replica, divided by
the primary alone, with the CPU time each request costs (``python -m bench --only replicas``).

Two private PostgreSQL clusters (tests/reliability/pgcluster.py; thrown away afterwards): a
primary, and a ``pg_basebackup -R`` of it streaming from it on the same machine. One
``statements serve`` process runs every projection on the primary. The demo's statements are
written and the projections caught up; then:

1. **primary alone**: the server as it is; CONCURRENCY clients request the statement page
   (a random statement each time) for SECONDS;
2. **primary + replica**: the server started again with ``STATEMENTS_READ_REPLICA_URLS`` naming
   the replica, once the router uses it; the same load.

Each phase reports requests/s and the CPU seconds per request of the API process, of each
cluster's server processes and of the load generator (this process), read from /proc, and how
many query operations each read target answered (``/metrics``). Everything shares the
machine's cores, so the ratio is bounded by whichever of those saturates first: the figures
say which.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import re
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

from bench.common import Config, Result, progress
from domain.handlers import StatementHandlers
from eventstore import open_store
from eventstore.urls import create_engine
from graphql_api.service_layer.demo_loader import write_demo
from graphql_api.service_layer.eventlog import StoreEventLog
from projections.registry import event_registry
from tests.reliability.live import LiveServer
from tests.reliability.pgcluster import PrivateCluster, pg_bindir

STATEMENT_PAGE = """
query Page($id: ID!) {
  statement(id: $id) {
    id slug title kind location occurredOn publishedAt paragraphs viewCount
    minister { id name title }
    topics { slug name }
    related { id title slug minister { id name } }
  }
}"""
CONCURRENCY = 16
SECONDS = 15.0
QUICK_SECONDS = 4.0
DATABASE = "postgres"
_TICK = os.sysconf("SC_CLK_TCK")


def _cpu(pid: int) -> float:
    with contextlib.suppress(OSError):
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / _TICK
    return 0.0


def _tree_cpu(root: int) -> float:
    """CPU seconds of a process and its children now alive."""
    total = _cpu(root)
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError, IndexError):
                fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
                if int(fields[1]) == root:
                    total += _cpu(int(entry))
    return total


def _postmaster(cluster: PrivateCluster) -> int:
    return int((cluster.data / "postmaster.pid").read_text().split()[0])


@contextlib.contextmanager
def _clusters() -> Iterator[tuple[PrivateCluster, PrivateCluster]]:
    bindir = pg_bindir()
    assert bindir is not None, "no PostgreSQL binaries (initdb, pg_ctl, pg_basebackup)"
    # Each in a directory of its own, which PostgreSQL's user is given.
    primary = PrivateCluster(bindir, Path(tempfile.mkdtemp(prefix="statements-primary-")))
    replica = PrivateCluster(bindir, Path(tempfile.mkdtemp(prefix="statements-replica-")))
    try:
        primary.init()
        primary.start()
        # initdb's pg_hba trusts local replication connections; wal_level is replica already.
        replica.give(replica.root)
        replica.run(
            str(bindir / "pg_basebackup"),
            "-h",
            "127.0.0.1",
            "-p",
            str(primary.port),
            "-U",
            "postgres",
            "-D",
            str(replica.data),
            "-R",
            "-X",
            "stream",
            "--checkpoint=fast",
            "--no-sync",
            timeout=120,
        )
        with (replica.data / "postgresql.conf").open("a") as conf:
            conf.write(f"port = {replica.port}\nunix_socket_directories = '{replica.root}'\n")
        replica.start()
        yield primary, replica
    finally:
        for cluster in (replica, primary):
            if cluster.running():
                with contextlib.suppress(Exception):
                    cluster.stop("immediate")
            shutil.rmtree(cluster.root, ignore_errors=True)


async def _load(url: str, ids: list[str], seconds: float) -> tuple[int, float]:
    """Requests answered in ``seconds`` by CONCURRENCY clients in a loop, and the wall time."""
    done = 0
    deadline = time.monotonic() + seconds
    limits = httpx.Limits(max_connections=CONCURRENCY)
    async with httpx.AsyncClient(base_url=url, timeout=30, limits=limits) as http:

        async def client() -> None:
            nonlocal done
            while time.monotonic() < deadline:
                response = await http.post(
                    "/graphql",
                    json={"query": STATEMENT_PAGE, "variables": {"id": random.choice(ids)}},
                )
                body = response.json()
                assert "errors" not in body and body["data"]["statement"], body
                done += 1

        started = time.monotonic()
        await asyncio.gather(*(client() for _ in range(CONCURRENCY)))
        return done, time.monotonic() - started


def _targets(server: LiveServer) -> dict[str, float]:
    text = httpx.get(f"{server.url}/metrics", timeout=10).text
    return {
        m.group(1): float(m.group(2))
        for m in re.finditer(
            r'^statements_read_target_queries\{target="([^"]+)"\} (\S+)$', text, re.M
        )
    }


def _replica_healthy(server: LiveServer) -> bool:
    text = httpx.get(f"{server.url}/metrics", timeout=10).text
    return bool(re.search(r"^statements_replica_healthy\{[^}]*\} 1$", text, re.M))


def _wait(condition: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"replicas bench: {what} within {timeout} s")
        time.sleep(0.2)


def _ready(server: LiveServer) -> bool:
    with contextlib.suppress(httpx.HTTPError):
        return httpx.get(f"{server.url}/readyz", timeout=10).status_code == 200
    return False


def _phase(
    server: LiveServer,
    clusters: dict[str, PrivateCluster],
    ids: list[str],
    seconds: float,
) -> dict[str, Any]:
    assert server.process is not None
    api = server.process.pid
    asyncio.run(_load(server.url, ids, 1.0))  # warm-up: plans compiled, pools filled
    before = {name: _tree_cpu(_postmaster(c)) for name, c in clusters.items()}
    api_before, own_before = _tree_cpu(api), time.process_time()
    targets_before = _targets(server)
    requests, wall = asyncio.run(_load(server.url, ids, seconds))
    cpu = {name: _tree_cpu(_postmaster(c)) - before[name] for name, c in clusters.items()}
    cpu["api"] = _tree_cpu(api) - api_before
    cpu["load generator"] = time.process_time() - own_before
    targets = {k: v - targets_before.get(k, 0.0) for k, v in _targets(server).items()}
    return {"requests/s": requests / wall, "requests": requests, "cpu": cpu, "targets": targets}


async def _write_data(url: str, statements: int) -> list[str]:
    async with open_store(url) as store:
        handlers = StatementHandlers(StoreEventLog(store, event_registry()))
        await write_demo(handlers, statements=statements, views=statements * 5, seed=5)
    engine = create_engine(url)
    try:
        from sqlalchemy import text

        async with engine.connect() as conn:
            rows = (await conn.execute(text("SELECT id FROM statements"))).all()
    finally:
        await engine.dispose()
    return [str(r[0]) for r in rows]


def run(config: Config) -> list[Result]:
    seconds = QUICK_SECONDS if config.quick else SECONDS
    phases: dict[str, dict[str, Any]] = {}
    with _clusters() as (primary, replica):
        url = primary.database_url(DATABASE)
        replica_url = replica.database_url(DATABASE)
        clusters = {"primary": primary, "replica": replica}
        server = LiveServer(url, config.tmp_dir / "replicas-server.log")
        server.start(timeout=120)
        try:
            ids = asyncio.run(_write_data(url, 200 if config.quick else 1000))
            _wait(lambda: _ready(server), 600, "the projections did not catch up")
            phases["primary alone"] = _phase(server, clusters, ids, seconds)
        finally:
            server.stop()
        server = LiveServer(
            url,
            config.tmp_dir / "replicas-server.log",
            env={"STATEMENTS_READ_REPLICA_URLS": replica_url},
        )
        server.start(timeout=120)
        try:
            _wait(lambda: _replica_healthy(server), 60, "the router did not use the replica")
            phases["primary + replica"] = _phase(server, clusters, ids, seconds)
        finally:
            server.stop()
    for name, phase in phases.items():
        progress(f"replicas {name}: {phase}")
    alone, both = phases["primary alone"], phases["primary + replica"]
    rows = [
        Result(
            f"statement page, {CONCURRENCY} clients: primary + 1 replica (peer: primary alone)",
            "postgresql",
            "req/s",
            both["requests/s"],
            alone["requests/s"],
        )
    ]
    for part in ("api", "primary", "replica", "load generator"):
        rows.append(
            Result(
                f"CPU per request, {part} (ours: with the replica; peer: primary alone)",
                "postgresql",
                "ms",
                both["cpu"][part] / both["requests"] * 1000,
                alone["cpu"][part] / alone["requests"] * 1000,
            )
        )
    served = both["targets"]
    on_replica = sum(v for k, v in served.items() if k != "primary")
    rows.append(
        Result(
            "queries read on the replica (ours) of all queries (peer), with the replica",
            "postgresql",
            "queries",
            on_replica,
            sum(served.values()),
        )
    )
    return rows
