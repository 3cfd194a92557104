"""Ours against PostGraphile v4 on PostgreSQL, one process each, on the same read models.

Issue 21's targets, as ratios of requests per second measured in the same run: the statement
page >= 1.0x PostGraphile, the 3-level list >= 2.0x, and the page with 10 views a second
recorded meanwhile >= 0.9x the same page without. The floor is ``{ __typename }``, ours against
theirs: what each server costs before any query work; the page's cost above that floor (µs per
request) shows what part of the page is ours.

Our read models come from ``statements demo`` in a schema of their own; PostGraphile reads
copies of them with foreign keys (``bench/postgraphile_copies.sql``), in another schema.
PostGraphile is installed with npm into ``bench/.postgraphile/`` (gitignored) on first use;
if that fails, its rows are skipped and the reason printed. The answers are checked as equal on
a sample of statements and on the list before anything is timed.

Each server is one process (one uvicorn worker; one node process) and wrk runs with one thread
on the same two cores, in rounds that alternate which server goes first. Ours also runs with
its read cache off (a third process, idle while the others are measured), so that the cache's
part and the SQL's part of the page's rate can be told apart.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bench.common import Config, Result, pg_execute, pg_params, pg_schema, progress
from bench.graphql import (
    STATEMENT_PAGE,
    THREE_LEVELS,
    TYPENAME,
    _free_port,
    _post,
    _recording_views,
    _wrk,
)

HERE = Path(__file__).parent
INSTALL_DIR = HERE / ".postgraphile"
POSTGRAPHILE = INSTALL_DIR / "node_modules" / ".bin" / "postgraphile"
COPIES_SQL = HERE / "postgraphile_copies.sql"

THEIR_PAGE = """
query Page($id: String!) {
  statementById(id: $id) {
    id slug title kind location occurredOn publishedAt paragraphs
    viewTotalByStatementId { viewCount }
    ministerByMinisterId { id name title }
    statementTopicsByStatementId(orderBy: POSITION_ASC) { nodes { topicByTopicSlug { slug name } } }
    related { nodes { id title slug ministerByMinisterId { id name } } }
  }
}"""
THEIR_LIST = """
query List {
  allStatements(first: 20, orderBy: [PUBLISHED_AT_DESC, ID_DESC], condition: {withdrawn: false}) {
    edges { node {
      id title
      ministerByMinisterId { id name
        statementsByMinisterId(first: 5, orderBy: [PUBLISHED_AT_DESC, ID_DESC],
                               condition: {withdrawn: false}) {
          edges { node { id title
            statementTopicsByStatementId(orderBy: POSITION_ASC) {
              nodes { topicByTopicSlug { slug name } } } } } } }
    } }
  }
}"""
# Ours with the raw statement ids, to compare with theirs.
OUR_PAGE_CHECK = """
query Page($id: ID!) {
  statement(id: $id) {
    statementId slug title kind location occurredOn publishedAt paragraphs viewCount
    minister { name title }
    topics { slug name }
    related { statementId title slug minister { name } }
  }
}"""
OUR_LIST_CHECK = """
query List {
  statements(first: 20) {
    edges { node {
      statementId title
      minister { name statements(first: 5) { edges { node { statementId title
        topics { slug name } } } } }
    } }
  }
}"""
SAMPLE = 48


def _install() -> str | None:
    """Install PostGraphile v4 if needed; None when ready, else why it cannot run."""
    if POSTGRAPHILE.exists():
        return None
    if shutil.which("npm") is None or shutil.which("node") is None:
        return "node and npm are not installed"
    INSTALL_DIR.mkdir(exist_ok=True)
    progress("postgraphile: npm install postgraphile@4")
    done = subprocess.run(
        [
            "npm",
            "install",
            "--no-audit",
            "--no-fund",
            "--prefix",
            str(INSTALL_DIR),
            "postgraphile@4",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0 or not POSTGRAPHILE.exists():
        return f"npm install postgraphile@4 failed: {done.stderr.strip()[-500:]}"
    return None


def _wait_ready(url: str, process: subprocess.Popen[bytes], what: str) -> None:
    for _ in range(600):
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited with {process.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{what} did not get ready")


@contextlib.contextmanager
def _process(args: list[str], env: dict[str, str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("wb") as out:
        process = subprocess.Popen(args, env=env, stdout=out, stderr=subprocess.STDOUT)
        try:
            yield process
        finally:
            process.terminate()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _instant(text: str) -> float:
    return dt.datetime.fromisoformat(text).timestamp()


def _ours_page(page: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": page["statementId"],
        "slug": page["slug"],
        "title": page["title"],
        "kind": page["kind"].lower(),
        "location": page["location"],
        "occurredOn": page["occurredOn"],
        "publishedAt": _instant(page["publishedAt"]),
        "paragraphs": page["paragraphs"],
        "viewCount": int(page["viewCount"]),
        "minister": [page["minister"]["name"], page["minister"]["title"]],
        "topics": [[t["slug"], t["name"]] for t in page["topics"]],
        "related": [
            [r["statementId"], r["title"], r["slug"], r["minister"]["name"]]
            for r in page["related"]
        ],
    }


def _their_page(page: dict[str, Any]) -> dict[str, Any]:
    views = page["viewTotalByStatementId"]
    return {
        "id": page["id"],
        "slug": page["slug"],
        "title": page["title"],
        "kind": page["kind"].lower(),
        "location": page["location"],
        "occurredOn": page["occurredOn"],
        "publishedAt": _instant(page["publishedAt"]),
        "paragraphs": page["paragraphs"],
        "viewCount": int(views["viewCount"]) if views else 0,
        "minister": [page["ministerByMinisterId"]["name"], page["ministerByMinisterId"]["title"]],
        "topics": [
            [n["topicByTopicSlug"]["slug"], n["topicByTopicSlug"]["name"]]
            for n in page["statementTopicsByStatementId"]["nodes"]
        ],
        "related": [
            [r["id"], r["title"], r["slug"], r["ministerByMinisterId"]["name"]]
            for r in page["related"]["nodes"]
        ],
    }


def _ours_list(data: dict[str, Any]) -> list[Any]:
    return [
        [
            e["node"]["statementId"],
            e["node"]["title"],
            e["node"]["minister"]["name"],
            [
                [
                    n["node"]["statementId"],
                    n["node"]["title"],
                    [t["slug"] for t in n["node"]["topics"]],
                ]
                for n in e["node"]["minister"]["statements"]["edges"]
            ],
        ]
        for e in data["statements"]["edges"]
    ]


def _their_list(data: dict[str, Any]) -> list[Any]:
    return [
        [
            e["node"]["id"],
            e["node"]["title"],
            e["node"]["ministerByMinisterId"]["name"],
            [
                [
                    n["node"]["id"],
                    n["node"]["title"],
                    [
                        t["topicByTopicSlug"]["slug"]
                        for t in n["node"]["statementTopicsByStatementId"]["nodes"]
                    ],
                ]
                for n in e["node"]["ministerByMinisterId"]["statementsByMinisterId"]["edges"]
            ],
        ]
        for e in data["allStatements"]["edges"]
    ]


def _check_answers(ours: str, theirs: str, ids: list[str]) -> None:
    """Raise unless both servers answer the sample of pages and the list alike."""
    for sid in ids:
        mine = _ours_page(_post(ours, OUR_PAGE_CHECK, {"id": sid})["data"]["statement"])
        other = _their_page(_post(theirs, THEIR_PAGE, {"id": sid})["data"]["statementById"])
        if mine != other:
            raise RuntimeError(f"the page of {sid} differs:\nours   {mine}\ntheirs {other}")
    mine_list = _ours_list(_post(ours, OUR_LIST_CHECK)["data"])
    their_list = _their_list(_post(theirs, THEIR_LIST)["data"])
    if mine_list != their_list:
        raise RuntimeError(f"the 3-level list differs:\nours   {mine_list}\ntheirs {their_list}")


def _run(args: list[str], env: dict[str, str]) -> None:
    done = subprocess.run(args, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(args[1:3])} failed: {done.stderr.strip()[-2000:]}")


def _rate(url: str, body: str, connections: int, seconds: int, tmp: Path) -> float | None:
    """wrk's requests per second; a run with errors is run again, twice at most (the
    database is shared with other work here, and a refused connection is an error). None if
    every try saw errors: that run is left out of the medians, and said so."""
    for attempt in range(3):
        try:
            return _wrk(url, body, connections, seconds, tmp)[0]
        except RuntimeError as exc:
            reason = str(exc).splitlines()
            progress(f"postgraphile: errors in try {attempt + 1}: {' '.join(reason[-3:-1])}")
    return None


def _pg_dsn(url: str) -> str:
    p = pg_params(url)
    return f"postgres://{p.user}@{p.host}:{p.port}/{p.dbname}"


def run(config: Config) -> list[Result]:
    if shutil.which("wrk") is None:
        raise SystemExit("bench/postgraphile.py needs wrk: apt-get install wrk")
    statements = 1_000 if config.quick else 10_000
    seconds = 3 if config.quick else 10
    rounds_count = 1 if config.quick else 3
    statements_bin = str(Path(sys.executable).with_name("statements"))
    why_not = _install()
    url = config.pg_url
    sa_url = "postgresql+asyncpg://" + url.split("://", 1)[1]
    results: list[Result] = []
    with (
        pg_schema(url, "pgl_ours") as ours_schema,
        pg_schema(url, "pgl_theirs") as their_schema,
        tempfile.TemporaryDirectory() as tmp_dir,
    ):
        tmp = Path(tmp_dir)
        # The servers' logs stay beside the results, for a run that went wrong.
        logs = HERE / "results" / "postgraphile-logs"
        logs.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "STATEMENTS_DATABASE_SCHEMA": ours_schema}
        progress(f"postgraphile: demo data, {statements:,} statements on PostgreSQL")
        _run([statements_bin, "demo", "--db", sa_url, "--statements", str(statements)], env)
        _run([statements_bin, "projections", "rebuild", "--db", sa_url], env)
        port = _free_port()
        cold_port = _free_port()
        ours = f"http://127.0.0.1:{port}/graphql"
        cold = f"http://127.0.0.1:{cold_port}/graphql"
        serve = [statements_bin, "serve", "--db", sa_url, "--production"]
        with (
            _process([*serve, "--port", str(port)], env, logs / "ours.log") as ours_server,
            _process(
                [*serve, "--port", str(cold_port)],
                {**env, "STATEMENTS_READ_CACHE_ROWS": "0", "STATEMENTS_RUN_PROJECTIONS": "0"},
                logs / "cold.log",
            ) as cold_server,
        ):
            _wait_ready(f"http://127.0.0.1:{port}/readyz", ours_server, "our server")
            _wait_ready(f"http://127.0.0.1:{cold_port}/readyz", cold_server, "our cold server")
            listed = _post(
                ours,
                "{ statements(first: 100) { nodes { id statementId related { id } } } }",
            )["data"]["statements"]["nodes"]
            busiest = max(listed, key=lambda n: len(n["related"]))
            sample = [n["statementId"] for n in listed[::2]][:SAMPLE]
            page_body = json.dumps({"query": STATEMENT_PAGE, "variables": {"id": busiest["id"]}})
            ours_bodies = {
                "typename": json.dumps({"query": TYPENAME}),
                "page": page_body,
                "list": json.dumps({"query": THREE_LEVELS}),
            }
            their_server: contextlib.AbstractContextManager[Any] = contextlib.nullcontext()
            theirs = ""
            if why_not is None:
                their_port = _free_port()
                theirs = f"http://127.0.0.1:{their_port}/graphql"
                copies = COPIES_SQL.read_text(encoding="utf-8").format(
                    src=f'"{ours_schema}"', dst=f'"{their_schema}"'
                )
                pg_execute(url, copies)
                their_server = _process(
                    [
                        str(POSTGRAPHILE),
                        "--connection",
                        _pg_dsn(url),
                        "--schema",
                        their_schema,
                        "--port",
                        str(their_port),
                        "--host",
                        "127.0.0.1",
                        "--disable-query-log",
                        "--disable-default-mutations",
                        "--no-setof-functions-contain-nulls",
                    ],
                    dict(os.environ),
                    logs / "postgraphile.log",
                )
            with their_server as postgraphile:
                if postgraphile is not None:
                    # PostGraphile answers GET /graphql with 405 once it is up.
                    for _ in range(300):
                        try:
                            _post(theirs, TYPENAME)
                            break
                        except OSError:
                            if postgraphile.poll() is not None:
                                raise RuntimeError("PostGraphile exited") from None
                            time.sleep(0.2)
                    progress(f"postgraphile: checking {len(sample)} pages and the list")
                    _check_answers(ours, theirs, sample)
                    _check_answers(cold, theirs, sample[:4])
                    their_bodies = {
                        "typename": json.dumps({"query": TYPENAME}),
                        "page": json.dumps(
                            {"query": THEIR_PAGE, "variables": {"id": busiest["statementId"]}}
                        ),
                        "list": json.dumps({"query": THEIR_LIST}),
                    }
                else:
                    progress(f"postgraphile: its rows are skipped: {why_not}")
                    their_bodies = {}
                results.extend(
                    _measure(
                        ours, cold, theirs, ours_bodies, their_bodies, seconds, rounds_count, tmp
                    )
                )
                # Reads under writes: the page with 10 views a second of that statement
                # recorded meanwhile (each view moves the views read model: the page's cached
                # rows are dropped every time), against the page alone, alternately.
                quiet: list[float] = []
                busy: list[float] = []
                for number in range(rounds_count):
                    progress(f"postgraphile: round {number + 1}, page with and without views")
                    alone = _rate(ours, page_body, 10, seconds, tmp)
                    with _recording_views(ours, busiest["id"], per_second=10) as views:
                        under = _rate(ours, page_body, 10, seconds, tmp)
                    if alone is None or under is None:
                        continue
                    quiet.append(alone)
                    busy.append(under)
                    progress(
                        f"postgraphile: {views.recorded} views recorded, "
                        f"{busy[-1]:,.0f} vs {quiet[-1]:,.0f} req/s"
                    )
                results.append(
                    Result(
                        "page, 10 views/s recorded meanwhile: req/s vs without (>= 0.9)",
                        "postgresql",
                        "req/s",
                        sorted(busy)[len(busy) // 2] if busy else float("nan"),
                        sorted(quiet)[len(quiet) // 2] if quiet else float("nan"),
                    )
                )
    return results


def _measure(
    ours: str,
    cold: str,
    theirs: str,
    ours_bodies: dict[str, str],
    their_bodies: dict[str, str],
    seconds: int,
    rounds_count: int,
    tmp: Path,
) -> list[Result]:
    runs = [("typename", 10), ("page", 10), ("page", 50), ("list", 10), ("list", 50)]
    measured: dict[tuple[str, str, int], list[float]] = {}
    for number in range(rounds_count):
        for name, connections in runs:
            sides = [("ours", ours, ours_bodies), ("cold", cold, ours_bodies)]
            if their_bodies:
                sides.append(("theirs", theirs, their_bodies))
            if number % 2:
                sides.reverse()
            for side, url, bodies in sides:
                if side == "cold" and name == "typename":
                    continue
                progress(
                    f"postgraphile: round {number + 1}, {side} {name}, "
                    f"{connections} conns, {seconds}s"
                )
                rps = _rate(url, bodies[name], connections, seconds, tmp)
                if rps is None:
                    progress("postgraphile:   left out: errors in every try")
                    continue
                measured.setdefault((side, name, connections), []).append(rps)
                progress(f"postgraphile:   {rps:,.0f} req/s")

    def median(side: str, name: str, connections: int) -> float:
        values = sorted(measured.get((side, name, connections), []))
        return values[len(values) // 2] if values else float("nan")

    results: list[Result] = []
    labels = {"typename": "{ __typename }", "page": "statement page", "list": "3-level list"}
    targets = {"typename": "floor", "page": ">= 1.0", "list": ">= 2.0"}
    for name, connections in runs:
        label = f"{labels[name]}, {connections} conns"
        if their_bodies:
            results.append(
                Result(
                    f"{label}: req/s vs PostGraphile ({targets[name]})",
                    "postgresql",
                    "req/s",
                    median("ours", name, connections),
                    median("theirs", name, connections),
                )
            )
            if name != "typename":
                results.append(
                    Result(
                        f"{label}, our read cache off: req/s vs PostGraphile",
                        "postgresql",
                        "req/s",
                        median("cold", name, connections),
                        median("theirs", name, connections),
                    )
                )
        else:
            results.append(
                Result(
                    f"{label}: req/s vs our {{ __typename }}",
                    "postgresql",
                    "req/s",
                    median("ours", name, connections),
                    median("ours", "typename", 10),
                )
            )
    if their_bodies:
        # Cost per request above each server's own floor, in µs: what the page itself costs.
        def above(side: str) -> float:
            return 1e6 / median(side, "page", 10) - 1e6 / median(
                "ours" if side == "cold" else side, "typename", 10
            )

        for side, what in (("ours", "cache on"), ("cold", "cache off")):
            results.append(
                Result(
                    "statement page, 10 conns: µs per request above { __typename }, "
                    f"ours ({what}) vs PostGraphile",
                    "postgresql",
                    "µs",
                    above(side),
                    above("theirs"),
                )
            )
    return results
