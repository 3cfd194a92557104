"""GraphQL throughput and latency on one uvicorn worker over SQLite with 10,000 statements.

The targets, each as a ratio to Strawberry-on-our-server's own ``{ __typename }``
throughput measured in the same run: the statement page >= 0.5x, a 3-level list >= 0.25x;
p99 < 50 ms at 100 concurrent connections; a 10,000-node response in < 1 s of server time.
The load generator is wrk (Debian package ``wrk``, one thread) on loopback, sharing the
machine's two cores with the server, as a client on the same host would.

The three queries are measured in rounds, one after the other within each round, and the
round with the median ratio is reported (every round's figures go to stderr): on this shared
machine the baseline drifted by a fifth between the start and the end of one run, and a ratio
between figures taken half a minute apart measured the drift as much as the server.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import json
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bench.common import Config, Result, progress, sqlite_file

TYPENAME = "{ __typename }"
STATEMENT_PAGE = """
query Page($id: ID!) {
  statement(id: $id) {
    id slug title kind location occurredOn publishedAt paragraphs viewCount
    minister { id name title }
    topics { slug name }
    related { id title slug minister { id name } }
  }
}"""
THREE_LEVELS = """
query List {
  statements(first: 20) {
    edges { node {
      id title
      minister { id name statements(first: 5) { edges { node { id title topics { slug name } } } } }
    } }
  }
}"""
TEN_THOUSAND = """
query Big {
  archive {
    year month count
    statements(first: 100) { edges { node { id title slug minister { id name } } } }
  }
}"""

LUA = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Accept"] = "application/graphql-response+json"
wrk.body = [[{body}]]
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _post(url: str, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
    body = json.dumps({"query": query, "variables": variables or {}}).encode()
    request = urllib.request.Request(
        url, body, {"Content-Type": "application/json", "Accept": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        result: dict[str, Any] = json.loads(response.read())
    if result.get("errors"):
        raise RuntimeError(f"query failed: {result['errors']}")
    return result


def _wrk(
    url: str, body: str, connections: int, seconds: int, tmp: Path
) -> tuple[float, float, float]:
    script = tmp / "post.lua"
    script.write_text(LUA.replace("{body}", body), encoding="utf-8")
    # One wrk thread: with two, wrk and the server want three cores of the two, and the p99
    # measured the scheduling of wrk's threads (page p99 291 ms with -t2, 48 ms with -t1 at
    # the same throughput); one thread sends far more than one worker answers.
    out = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", str(script), url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p50 = _ms(re.search(r"50%\s+([\d.]+\w+)", out).group(1))  # type: ignore[union-attr]
    p99 = _ms(re.search(r"99%\s+([\d.]+\w+)", out).group(1))  # type: ignore[union-attr]
    if "Non-2xx" in out:
        raise RuntimeError(f"wrk saw errors:\n{out}")
    return rps, p50, p99


RECORD_VIEW = "mutation View($id: ID!) { recordView(input: {statementId: $id}) { position } }"


class _Views:
    recorded = 0


@contextlib.contextmanager
def _recording_views(url: str, statement_id: str, per_second: float) -> Iterator[_Views]:
    """Record views of one statement at a steady rate until the block ends.

    Each view is sent on a pool's thread, so that one waiting behind wrk's 100 connections
    does not hold back the next.
    """
    views = _Views()
    stop = threading.Event()
    pool = concurrent.futures.ThreadPoolExecutor(16, thread_name_prefix="bench-views")

    counted = threading.Lock()

    def record() -> None:
        _post(url, RECORD_VIEW, {"id": statement_id})
        with counted:
            views.recorded += 1

    def schedule() -> None:
        next_at = time.monotonic()
        while not stop.is_set():
            pool.submit(record)
            next_at += 1.0 / per_second
            stop.wait(max(0.0, next_at - time.monotonic()))

    scheduler = threading.Thread(target=schedule, name="bench-views", daemon=True)
    scheduler.start()
    try:
        yield views
    finally:
        stop.set()
        scheduler.join(timeout=30)
        pool.shutdown(wait=True)


def _cache_counts(port: int) -> tuple[float, float]:
    """The reader cache's (hits, misses) so far, from /metrics."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    found = dict(re.findall(r'statements_read_cache_statements\{result="(\w+)"\} ([\d.e+]+)', text))
    return float(found.get("hit", 0)), float(found.get("miss", 0))


def _median_round(
    rounds: list[dict[str, tuple[float, float, float]]], name: str
) -> dict[str, tuple[float, float, float]]:
    """The round whose ``name``/``{ __typename }`` throughput ratio is the median."""
    ranked = sorted(rounds, key=lambda measured: measured[name][0] / measured["typename"][0])
    return ranked[len(ranked) // 2]


def _ms(text: str) -> float:
    value, unit = re.match(r"([\d.]+)(\w+)", text).groups()  # type: ignore[union-attr]
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def _count_nodes(value: Any) -> int:
    if isinstance(value, dict):
        return 1 + sum(_count_nodes(v) for v in value.values())
    if isinstance(value, list):
        return sum(_count_nodes(v) for v in value)
    return 0


def run(config: Config) -> list[Result]:
    if shutil.which("wrk") is None:
        raise SystemExit("bench/graphql.py needs wrk: apt-get install wrk")
    statements = 500 if config.quick else 10_000
    seconds = 3 if config.quick else 5
    rounds_count = 1 if config.quick else 3
    statements_bin = str(Path(sys.executable).with_name("statements"))
    results: list[Result] = []
    with sqlite_file(config, "graphql") as path, tempfile.TemporaryDirectory() as tmp_dir:
        db = f"sqlite:///{path}"
        progress(f"graphql: demo data, {statements:,} statements")
        subprocess.run(
            [
                statements_bin,
                "demo",
                "--db",
                db,
                "--statements",
                str(statements),
                "--views",
                str(statements * 10),
            ],
            check=True,
            capture_output=True,
        )
        subprocess.run(
            [statements_bin, "projections", "rebuild", "--db", db], check=True, capture_output=True
        )
        port = _free_port()
        url = f"http://127.0.0.1:{port}/graphql"
        server = subprocess.Popen(
            [statements_bin, "serve", "--db", db, "--port", str(port), "--production"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            for _ in range(300):
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1) as r:
                        if r.status == 200:
                            break
                except OSError:
                    time.sleep(0.2)
            first = _post(url, "{ statements(first: 1) { edges { node { id } } } }")
            statement_id = first["data"]["statements"]["edges"][0]["node"]["id"]
            # The big response first, on an idle server (wrk leaves requests queued behind it).
            timings = []
            for _ in range(3):
                started = time.perf_counter()
                big = _post(url, TEN_THOUSAND)
                timings.append((time.perf_counter() - started) * 1000)
            nodes = _count_nodes(big["data"])
            results.append(
                Result(
                    f"response of {nodes:,} nodes (ms) vs 1 s target",
                    "sqlite",
                    "ms",
                    min(timings),
                    1000.0,
                )
            )
            tmp = Path(tmp_dir)
            bodies = {
                "typename": json.dumps({"query": TYPENAME}),
                "page": json.dumps({"query": STATEMENT_PAGE, "variables": {"id": statement_id}}),
                "list": json.dumps({"query": THREE_LEVELS}),
            }
            # Rounds at 100 connections, the three queries back to back in each.
            rounds: list[dict[str, tuple[float, float, float]]] = []
            for number in range(1, rounds_count + 1):
                measured = {}
                for name, body in bodies.items():
                    progress(f"graphql: round {number}, wrk {name}, 100 connections, {seconds}s")
                    measured[name] = _wrk(url, body, 100, seconds, tmp)
                rounds.append(measured)
                progress(
                    f"graphql: round {number}: "
                    + ", ".join(
                        f"{name} {rps:,.0f} req/s p50 {p50:.1f} p99 {p99:.1f} ms"
                        for name, (rps, p50, p99) in measured.items()
                    )
                )
            # The list again while views are recorded (10 a second, what the rate limiter
            # lets one client do): every view commits, and each commit empties the
            # reader's cache, so this is the list as a site with traffic serves it.
            progress(f"graphql: wrk list, 100 connections, {seconds}s, views recorded meanwhile")
            hits_before = _cache_counts(port)
            with _recording_views(url, statement_id, per_second=10) as views:
                busy_list = _wrk(url, bodies["list"], 100, seconds, tmp)
            hits_after = _cache_counts(port)
            progress(f"graphql: {views.recorded} views recorded during the list run")
            lookups = sum(hits_after) - sum(hits_before)
            hit_share = 100.0 * (hits_after[0] - hits_before[0]) / lookups if lookups else 0.0
            # With 100 connections always busy, latency is queueing: by Little's law the
            # mean is 100 / throughput. Ten connections show the latency of the work.
            light = {}
            for name, body in bodies.items():
                progress(f"graphql: wrk {name}, 10 connections, {seconds}s")
                light[name] = _wrk(url, body, 10, seconds, tmp)
            for name, label in (("page", "statement page"), ("list", "3-level list")):
                # The round whose ratio is the median; its own baseline.
                figures = _median_round(rounds, name)
                base = figures["typename"][0]
                rps, p50, p99 = figures[name]
                results.append(
                    Result(f"{label}: requests/s vs {{ __typename }}", "sqlite", "req/s", rps, base)
                )
                if name == "page":
                    # The same target met by the cheapest query there is, in the same round:
                    # what the server and machine allow before any of our work.
                    results.append(
                        Result(
                            "{ __typename }: p99 at 100 connections (ms) vs 50 ms target",
                            "sqlite",
                            "ms",
                            figures["typename"][2],
                            50.0,
                        )
                    )
                results.append(
                    Result(
                        f"{label}: p99 at 100 connections (ms) vs 50 ms target",
                        "sqlite",
                        "ms",
                        p99,
                        50.0,
                    )
                )
                results.append(
                    Result(
                        f"{label}: p50 at 100 connections (ms)",
                        "sqlite",
                        "ms",
                        p50,
                        figures["typename"][1],
                    )
                )
                _, light_p50, light_p99 = light[name]
                results.append(
                    Result(
                        f"{label}: p99 at 10 connections (ms) vs 50 ms target",
                        "sqlite",
                        "ms",
                        light_p99,
                        50.0,
                    )
                )
                results.append(
                    Result(
                        f"{label}: p50 at 10 connections (ms) vs {{ __typename }}'s",
                        "sqlite",
                        "ms",
                        light_p50,
                        light["typename"][1],
                    )
                )
            listed = _median_round(rounds, "list")
            results.append(
                Result(
                    "3-level list, 10 views/s recorded meanwhile: requests/s vs { __typename }",
                    "sqlite",
                    "req/s",
                    busy_list[0],
                    listed["typename"][0],
                )
            )
            results.append(
                Result(
                    "3-level list, 10 views/s recorded meanwhile: read cache hits (%)",
                    "sqlite",
                    "%",
                    hit_share,
                    100.0,
                )
            )
        finally:
            server.terminate()
            server.wait(timeout=30)
    return results
