"""What every benchmark shares: run settings, timing, RSS, throwaway databases, result files."""

from __future__ import annotations

import contextlib
import gc
import json
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

RESULTS_DIR = Path(__file__).resolve().parent / "results"
PG_URL_ENV = "STATEMENTS_BENCH_DATABASE_URL"
DEFAULT_PG_URL = "postgresql://postgres@127.0.0.1:5432/test"
BACKENDS = ("sqlite", "postgresql")


@dataclass(frozen=True)
class Config:
    """How a run was asked for: ``quick`` is a smoke run, ``full`` the long RSS check."""

    quick: bool
    full: bool
    pg_url: str
    tmp_dir: Path
    #: The log's size for the scale benchmark (``--events``); None for its default.
    events: int | None = None

    @property
    def mode(self) -> str:
        return "quick" if self.quick else "full" if self.full else "default"


@dataclass(frozen=True)
class Result:
    """One row of a benchmark's results file; ``ratio`` is ours divided by peer."""

    scenario: str
    backend: str
    unit: str
    ours: float
    peer: float

    @property
    def ratio(self) -> float:
        return self.ours / self.peer if self.peer else float("nan")

    def as_json(self) -> dict[str, Any]:
        return {
            "scenario": self.scenario,
            "backend": self.backend,
            "unit": self.unit,
            "ours": round(self.ours, 2),
            "peer": round(self.peer, 2),
            "ratio": round(self.ratio, 3),
        }


def progress(message: str) -> None:
    """A progress line on stderr, so that stdout carries only the table."""
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def rate(count: int, seconds: float) -> float:
    return count / seconds if seconds > 0 else float("inf")


def timed(fn: Callable[[], object]) -> float:
    """Seconds one call takes, with the garbage collector settled beforehand."""
    gc.collect()
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def rss_mb() -> float:
    """This process's resident set size in MiB (Linux /proc)."""
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("VmRSS not found in /proc/self/status")


# -- PostgreSQL -----------------------------------------------------------------------------


@dataclass(frozen=True)
class PgParams:
    host: str
    port: int
    dbname: str
    user: str
    password: str


def pg_params(url: str) -> PgParams:
    """The connection parameters in a postgresql:// URL (any +driver suffix is ignored)."""
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    return PgParams(
        host=parsed.host or "127.0.0.1",
        port=parsed.port or 5432,
        dbname=parsed.database or "postgres",
        user=parsed.username or "postgres",
        password=parsed.password or "",
    )


def pg_execute(url: str, statement: str) -> list[tuple[Any, ...]]:
    """Run one statement in autocommit mode on a connection of its own."""
    import psycopg

    p = pg_params(url)
    with (
        psycopg.connect(
            host=p.host,
            port=p.port,
            dbname=p.dbname,
            user=p.user,
            password=p.password,
            autocommit=True,
        ) as conn,
        conn.cursor() as cur,
    ):
        cur.execute(statement.encode())
        return list(cur.fetchall()) if cur.description else []


@contextlib.contextmanager
def pg_schema(url: str, label: str) -> Iterator[str]:
    """A new, uniquely named schema, dropped with everything in it afterwards."""
    name = f"bench_{label}_{uuid.uuid4().hex[:10]}"
    pg_execute(url, f'CREATE SCHEMA "{name}"')
    try:
        yield name
    finally:
        pg_execute(url, f'DROP SCHEMA IF EXISTS "{name}" CASCADE')


@contextlib.contextmanager
def sqlite_file(config: Config, label: str) -> Iterator[Path]:
    """A path for a new SQLite file; the file and its -wal/-shm are removed afterwards."""
    path = config.tmp_dir / f"{label}_{uuid.uuid4().hex[:10]}.db"
    try:
        yield path
    finally:
        for suffix in ("", "-wal", "-shm", "-journal"):
            with contextlib.suppress(FileNotFoundError):
                Path(f"{path}{suffix}").unlink()


# -- results --------------------------------------------------------------------------------


def write_results(name: str, results: list[Result]) -> Path:
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"{name}.json"
    path.write_text(json.dumps([r.as_json() for r in results], indent=2) + "\n", encoding="utf-8")
    return path


def _figure(value: float) -> str:
    if value != value:  # NaN
        return "-"
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:,.1f}"


def format_table(results: list[Result]) -> str:
    headers = ("scenario", "backend", "unit", "ours", "peer", "ours/peer")
    rows = [
        (r.scenario, r.backend, r.unit, _figure(r.ours), _figure(r.peer), f"{r.ratio:.2f}")
        for r in results
    ]
    widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(headers)]
    right = {3, 4, 5}

    def line(cells: tuple[str, ...]) -> str:
        return "  ".join(
            c.rjust(widths[i]) if i in right else c.ljust(widths[i]) for i, c in enumerate(cells)
        )

    return "\n".join([line(headers), line(tuple("-" * w for w in widths)), *map(line, rows)])
