"""PostgreSQL itself goes away: restarted under load, or out of disk space.

These faults hit the whole server, so they run on a private cluster (tests/reliability/
pgcluster.py), never on the machine's shared one. Each time: the API answers clear retryable
errors meanwhile (``SERVICE_UNAVAILABLE``, or HTTP 503 with ``Retry-After``; never a 500),
it recovers by itself within seconds, every acknowledged event is in the log exactly once,
the read models equal a rebuild and ``statements verify`` passes.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from tests.reliability.live import LiveServer, cli, dump_read_models
from tests.reliability.load import Ack, statement_ids
from tests.reliability.pgcluster import PrivateCluster, pg_bindir, private_cluster
from tests.reliability.test_db_faults import (
    Outcome,
    bad_errors,
    check_acks_in_log,
    mutate,
    prepare,
    query,
    unavailable_error,
    write_once_space_returns,
    write_until_full,
)

pytestmark = [
    # Marked postgres so that CI (.ci/run) counts a skip as a failure.
    pytest.mark.postgres,
    pytest.mark.skipif(
        pg_bindir() is None, reason="PostgreSQL server binaries (initdb, pg_ctl) not found"
    ),
]

RESTARTS = int(os.environ.get("STATEMENTS_PG_RESTARTS", "2"))
#: How long the server stays down in the stop/start rounds: long enough that the load sees it.
DOWN_SECONDS = float(os.environ.get("STATEMENTS_PG_DOWN_SECONDS", "2"))


@pytest.fixture
def cluster() -> Iterator[PrivateCluster]:
    with private_cluster() as started:
        yield started


@dataclass
class Sent:
    """One request of the load: when it was sent and answered, and what it got."""

    sent: float
    answered: float
    outcome: Outcome


@dataclass
class Load:
    """Mutations (one token per thread, below the view rate limit), queries and /readyz probes."""

    url: str
    tokens: list[str]
    ids: list[str]
    sent: list[Sent] = field(default_factory=list)
    ready: list[tuple[float, int]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    stop: threading.Event = field(default_factory=threading.Event)
    threads: list[threading.Thread] = field(default_factory=list)

    def _worker(self, n: int) -> None:
        token = self.tokens[n % len(self.tokens)]
        with httpx.Client(base_url=self.url, timeout=15) as client:
            i = 0
            while not self.stop.is_set():
                i += 1
                sent = time.monotonic()
                if n == 0:
                    outcome = query(client)
                else:
                    kind = "publish" if i % 4 == 0 else "view"
                    outcome = mutate(client, token, kind, self.ids[(n + i) % len(self.ids)])
                with self.lock:
                    self.sent.append(Sent(sent, time.monotonic(), outcome))
                self.stop.wait(0.1)

    def _probe(self) -> None:
        with httpx.Client(base_url=self.url, timeout=15) as client:
            while not self.stop.is_set():
                with contextlib.suppress(httpx.HTTPError):
                    code = client.get("/readyz").status_code
                    with self.lock:
                        self.ready.append((time.monotonic(), code))
                self.stop.wait(0.1)

    @contextlib.contextmanager
    def running(self) -> Iterator[Load]:
        self.threads = [
            threading.Thread(target=self._worker, args=(n,)) for n in range(len(self.tokens) + 1)
        ]
        self.threads.append(threading.Thread(target=self._probe))
        for thread in self.threads:
            thread.start()
        try:
            yield self
        finally:
            self.stop.set()
            for thread in self.threads:
                thread.join(30)
                assert not thread.is_alive()

    def between(self, start: float, end: float) -> list[Sent]:
        """Requests sent in [start, end)."""
        with self.lock:
            return [s for s in self.sent if start <= s.sent < end]

    def recovered_after(self, up: float, timeout: float = 20) -> tuple[float, float]:
        """Seconds from ``up`` to the first acknowledged mutation sent after it, and to the
        answer of the last error sent in the ``timeout`` seconds that followed that."""
        deadline = up + timeout
        first_ack: float | None = None
        while time.monotonic() < deadline:
            acks = [s for s in self.between(up, deadline) if s.outcome.ack is not None]
            if acks:
                first_ack = min(s.answered for s in acks)
                break
            time.sleep(0.05)
        assert first_ack is not None, f"no mutation acknowledged {timeout} s after the restart"
        # Keep the load going a little, to see that the errors stopped for good.
        time.sleep(1.5)
        failed = [s for s in self.between(up, time.monotonic()) if s.outcome.errors]
        last_error = max((s.answered for s in failed), default=up)
        return round(first_ack - up, 2), round(last_error - up, 2)


def assert_read_models_equal_rebuild(
    cluster: PrivateCluster, db: str, tmp_path: Path, name: str
) -> None:
    """Export the log, import it into a fresh database, rebuild there: same tables, same rows."""
    export = tmp_path / "log.jsonl"
    cli("events", "export", "--db", db, "--out", str(export))
    cluster.execute(f'CREATE DATABASE "{name}"')
    copy = cluster.database_url(name)
    cli("events", "import", "--db", copy, str(export))
    cli("projections", "rebuild", "--db", copy)
    live = dump_read_models(db)
    rebuilt = dump_read_models(copy)
    assert live.keys() == rebuilt.keys()
    for table in live:
        assert live[table] == rebuilt[table], table


def amcheck(cluster: PrivateCluster, database: str) -> None:
    """pg_amcheck over every table and index of ``database``: heap pages, and every B-tree
    checked against the heap (--heapallindexed); it exits non-zero on any corruption."""
    cluster.run(
        str(cluster.bindir / "pg_amcheck"),
        "--install-missing",
        "--heapallindexed",
        "-h",
        "127.0.0.1",
        "-p",
        str(cluster.port),
        "-U",
        "postgres",
        database,
    )


def final_checks(
    cluster: PrivateCluster, server: LiveServer, db: str, acks: list[Ack], tmp_path: Path
) -> None:
    check_acks_in_log(db, None, acks)
    assert "head" in cli("verify", "--db", db).stdout
    assert_read_models_equal_rebuild(cluster, db, tmp_path, "rebuilt")
    amcheck(cluster, "statements")
    assert "unexpected error" not in server.log_path.read_text(errors="replace")


# -- PostgreSQL restarted under load -----------------------------------------------------------


@pytest.mark.parametrize("mode", ["fast", "immediate"])
def test_postgres_restarted_under_load(mode: str, cluster: PrivateCluster, tmp_path: Path) -> None:
    cluster.execute('CREATE DATABASE "statements"')
    db = cluster.database_url("statements")
    tokens = prepare(db, None, tokens=4)
    server = LiveServer(db, tmp_path / "server.log")
    rounds: list[dict[str, object]] = []
    with server.running():
        server.wait_caught_up()
        ids = statement_ids(server.url)
        load = Load(server.url, tokens, ids)
        with load.running():
            for n in range(RESTARTS * 2):
                time.sleep(1.0)
                down = time.monotonic()
                if n % 2 == 0:
                    # A real restart: the outage lasts as long as pg_ctl takes.
                    took = cluster.restart(mode)
                else:
                    # Down for a while on purpose, so that the load surely meets the outage.
                    cluster.stop(mode)
                    time.sleep(DOWN_SECONDS)
                    cluster.start()
                    took = time.monotonic() - down
                up = time.monotonic()
                first_ack, errors_until = load.recovered_after(up)
                outage = load.between(down, up)
                rounds.append(
                    {
                        "how": "restart" if n % 2 == 0 else f"stop+{DOWN_SECONDS:g}s+start",
                        "pg_ctl_seconds": round(took, 2),
                        "sent_during_outage": len(outage),
                        "codes_during_outage": Counter(c for s in outage for c in s.outcome.codes),
                        "first_ack_after_up_seconds": first_ack,
                        "last_error_after_up_seconds": errors_until,
                    }
                )
        server.wait_caught_up()
        with httpx.Client(base_url=server.url, timeout=15) as client:
            final = mutate(client, tokens[0], "publish", ids[0])
        assert final.ack is not None, final
        server.wait_caught_up()

    outcomes = [s.outcome for s in load.sent] + [final]
    acks = [o.ack for o in outcomes if o.ack is not None]
    ready_codes = Counter(code for _, code in load.ready)
    summary = {
        "mode": mode,
        "rounds": rounds,
        "requests": len(outcomes),
        "acknowledged": Counter(a.kind for a in acks),
        "error_codes": Counter(c for o in outcomes for c in o.codes),
        "graphql_http_503": sum(1 for o in outcomes if o.status == 503),
        "readyz": ready_codes,
    }
    print(json.dumps(summary))
    assert not bad_errors(outcomes), (bad_errors(outcomes)[:5], summary)
    assert set(ready_codes) <= {200, 503}, summary
    # The long outages were seen, and answered with retryable errors, not hangs.
    held = [r for r in rounds if str(r["how"]).startswith("stop")]
    assert all(r["codes_during_outage"] for r in held), summary
    assert ready_codes[503] > 0, summary
    for r in rounds:
        assert float(str(r["first_ack_after_up_seconds"])) < 10, summary
        assert float(str(r["last_error_after_up_seconds"])) < 10, summary
    final_checks(cluster, server, db, acks, tmp_path)


# -- A full disk under PostgreSQL: the database's tablespace on a small tmpfs -------------------

#: Large enough for a copy of template1 (about 8 MB) and the demo data, small enough to fill.
DISK_SIZE = "24m"


@pytest.fixture
def small_tablespace(cluster: PrivateCluster) -> Iterator[Path]:
    """A tmpfs of DISK_SIZE holding the tablespace ``small``; unmounted after the test."""
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("the PostgreSQL full-disk test needs root to mount a small tmpfs")
    mount = cluster.root / "disk"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={DISK_SIZE},mode=0755", "tmpfs", str(mount)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        space = mount / "space"
        space.mkdir()
        cluster.give(space)
        cluster.execute(f"CREATE TABLESPACE small LOCATION '{space}'")
        yield mount
    finally:
        # The server must let go of the files before the unmount; the cluster fixture (torn
        # down after this one) deletes what is left.
        with contextlib.suppress(AssertionError, subprocess.TimeoutExpired):
            cluster.stop("immediate")
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_postgres_full_disk(
    cluster: PrivateCluster, small_tablespace: Path, tmp_path: Path
) -> None:
    cluster.execute('CREATE DATABASE "statements" TABLESPACE small')
    db = cluster.database_url("statements")
    (token,) = prepare(db, None)
    server = LiveServer(db, tmp_path / "server.log")
    acks: list[Ack] = []
    with server.running(), httpx.Client(base_url=server.url, timeout=30) as client:
        server.wait_caught_up()
        ids = statement_ids(server.url)
        first = mutate(client, token, "publish", ids[0])
        assert first.ack is not None, first
        acks.append(first.ack)

        # Rows still fit in pages already allocated: keep writing until a table must grow.
        written, failures = write_until_full(client, token, ids, small_tablespace, 2000)
        acks.extend(written)
        assert failures, "the disk never filled up"
        for outcome in failures:
            error = unavailable_error(outcome)
            assert "disk is full" in error["message"], error
        read = query(client)
        assert read.status == 200 and not bad_errors([read]), read

        for path in small_tablespace.glob("filler*"):
            path.unlink()
        # Space is back: writes succeed again without a restart (within a few seconds).
        freed = time.monotonic()
        recovered = write_once_space_returns(client, token, ids[0])
        assert recovered.ack is not None, recovered
        recovery = time.monotonic() - freed
        acks.append(recovered.ack)
        view = mutate(client, token, "view", ids[1])
        assert view.ack is not None, view
        acks.append(view.ack)
        caught_up = server.wait_caught_up()
        print(
            json.dumps(
                {
                    "acknowledged_before_refusal": len(acks) - 2,
                    "refused": [o.codes for o in failures],
                    "message": failures[0].errors[0]["message"],
                    "recovery_seconds": round(recovery, 2),
                    "head": caught_up["head"],
                }
            )
        )

    final_checks(cluster, server, db, acks, tmp_path)
