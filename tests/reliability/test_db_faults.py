"""Database faults: PostgreSQL connections ended under load, SQLite locked by another
process, a full disk. Each time: clear retryable errors, recovery without a restart, nothing
acknowledged lost, nothing corrupted."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from domain.streams import statement_stream, views_stream
from eventstore.sqlite import sqlite_path
from tests.conftest import run_pg
from tests.reliability.live import LiveServer, cli, event_rows, gql
from tests.reliability.load import (
    PUBLISH,
    RECORD_VIEW,
    Ack,
    publish_input,
    statement_ids,
)

QUERY = "query { statements(first: 5) { edges { node { id title viewCount } } } }"
#: POSITION_NOT_REACHED: a mutation acknowledged while the read models were still cut off from
#: the database (its payload comes with the error).
RETRYABLE = {"SERVICE_UNAVAILABLE", "RATE_LIMITED", "POSITION_NOT_REACHED"}


@dataclass
class Outcome:
    """What one request got: an acknowledgement, or the errors, or a transport failure."""

    ack: Ack | None = None
    status: int = 0
    errors: list[dict[str, Any]] = field(default_factory=list)
    transport_error: bool = False
    seconds: float = 0.0
    retry_after: str | None = None

    @property
    def codes(self) -> list[str]:
        return [(e.get("extensions") or {}).get("code", "NO_CODE") for e in self.errors]


def mutate(client: httpx.Client, token: str, kind: str, statement_id: str) -> Outcome:
    """One publish or view; an acknowledgement only if the payload has a position."""
    started = time.monotonic()
    title = None
    try:
        if kind == "publish":
            title = f"Fault statement {uuid.uuid4().hex}"
            response = gql(client, PUBLISH, {"input": publish_input(title)}, token)
            field_name = "publishStatement"
        else:
            response = gql(client, RECORD_VIEW, {"id": statement_id}, token)
            field_name = "recordView"
    except httpx.HTTPError:
        return Outcome(transport_error=True, seconds=time.monotonic() - started)
    outcome = Outcome(status=response.status_code, seconds=time.monotonic() - started)
    outcome.retry_after = response.headers.get("retry-after")
    if response.status_code >= 500 and "json" not in response.headers.get("content-type", ""):
        return outcome
    body = response.json()
    payload = (body.get("data") or {}).get(field_name)
    if payload is not None and payload.get("position") is not None:
        outcome.ack = Ack(kind, payload["statementId"], payload["position"], title)
    outcome.errors = body.get("errors") or []
    return outcome


def query(client: httpx.Client) -> Outcome:
    started = time.monotonic()
    try:
        response = gql(client, QUERY)
    except httpx.HTTPError:
        return Outcome(transport_error=True, seconds=time.monotonic() - started)
    outcome = Outcome(status=response.status_code, seconds=time.monotonic() - started)
    outcome.retry_after = response.headers.get("retry-after")
    if "json" in response.headers.get("content-type", ""):
        outcome.errors = response.json().get("errors") or []
    return outcome


def bad_errors(outcomes: list[Outcome]) -> list[Any]:
    """Every answer that is not an acknowledgement, a result, or a clear retryable error."""
    bad: list[Any] = []
    for o in outcomes:
        if o.transport_error:
            bad.append("transport error")
        if o.status >= 500 and not (o.status == 503 and o.retry_after and o.errors):
            bad.append(("status", o.status, o.errors))
        for error in o.errors:
            extensions = error.get("extensions") or {}
            if extensions.get("code") not in RETRYABLE:
                bad.append(error)
            elif o.status == 200 and extensions.get("retryable") is not True:
                bad.append(error)  # in a 503 the Retry-After header says it
    return bad


def check_acks_in_log(db: str, schema: str | None, acks: list[Ack]) -> None:
    """Every acknowledged event is in the log, once, where the server said."""
    log = {p: (stream, type_, data) for p, stream, type_, data in event_rows(db, schema)}
    positions = [a.position for a in acks]
    assert len(positions) == len(set(positions))
    titles = Counter(
        json.loads(data).get("title")
        for _, type_, data in log.values()
        if type_ == "StatementPublished"
    )
    for ack in acks:
        assert ack.position in log, ack
        stream, type_, data = log[ack.position]
        if ack.kind == "publish":
            assert (stream, type_) == (statement_stream(ack.statement_id), "StatementPublished")
            assert json.loads(data)["title"] == ack.title
            assert titles[ack.title] == 1, ack
        else:
            assert (stream, type_) == (views_stream(ack.statement_id), "Viewed")


def prepare(db: str, schema: str | None, tokens: int = 1) -> list[str]:
    """Demo data and ``tokens`` editor tokens (distinct clients for the view rate limit)."""
    cli("demo", "--db", db, "--statements", "8", "--views", "20", schema=schema)
    return [
        cli(
            "token",
            "create",
            "--db",
            db,
            "--role",
            "editor",
            "--name",
            f"faults{n}",
            schema=schema,
        ).stdout.strip()
        for n in range(tokens)
    ]


def unavailable_error(outcome: Outcome) -> dict[str, Any]:
    assert outcome.ack is None and outcome.status == 200 and outcome.errors, outcome
    (error,) = outcome.errors
    assert error["extensions"]["code"] == "SERVICE_UNAVAILABLE", outcome
    assert error["extensions"]["retryable"] is True, outcome
    return error


def integrity_ok(path: str) -> None:
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    finally:
        conn.close()


# -- PostgreSQL: every connection of the server ended, a few times, under load --------------


@pytest.mark.postgres
def test_postgres_connections_terminated_under_load(
    pg_schema: tuple[str, str], tmp_path: Path
) -> None:
    db, schema = pg_schema
    tokens = prepare(db, schema, tokens=4)
    server = LiveServer(db, tmp_path / "server.log", schema=schema)
    terminations = int(os.environ.get("STATEMENTS_PG_TERMINATIONS", "4"))
    outcomes: list[Outcome] = []
    ready_codes: Counter[int] = Counter()
    lock = threading.Lock()
    stop = threading.Event()

    def worker(n: int, ids: list[str]) -> None:
        token = tokens[n % len(tokens)]
        with httpx.Client(base_url=server.url, timeout=15) as client:
            i = 0
            while not stop.is_set():
                i += 1
                if n == 0:
                    o = query(client)
                else:
                    kind = "publish" if i % 4 == 0 else "view"
                    o = mutate(client, token, kind, ids[(n + i) % len(ids)])
                with lock:
                    outcomes.append(o)
                stop.wait(0.1)  # views stay below the per-client rate limit

    def ready_probe() -> None:
        with httpx.Client(base_url=server.url, timeout=15) as client:
            while not stop.is_set():
                with contextlib.suppress(httpx.HTTPError):
                    code = client.get("/readyz").status_code
                    with lock:
                        ready_codes[code] += 1
                stop.wait(0.1)

    recoveries: list[float] = []
    with server.running():
        server.wait_caught_up()
        ids = statement_ids(server.url)
        threads = [threading.Thread(target=worker, args=(n, ids)) for n in range(5)]
        threads.append(threading.Thread(target=ready_probe))
        for thread in threads:
            thread.start()
        try:
            for _ in range(terminations):
                time.sleep(1.0)
                run_pg(
                    db,
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid()",
                )
                ended = time.monotonic()
                with lock:
                    seen = len(outcomes)
                # Recovered: a mutation acknowledged after the termination, by itself.
                while time.monotonic() - ended < 20:
                    with lock:
                        if any(o.ack for o in outcomes[seen:]):
                            break
                    time.sleep(0.05)
                recoveries.append(round(time.monotonic() - ended, 2))
            time.sleep(1.5)
        finally:
            stop.set()
            for thread in threads:
                thread.join(30)
        server.wait_caught_up()
        # After the outages: a query and a mutation work at once.
        with httpx.Client(base_url=server.url, timeout=15) as client:
            final = mutate(client, tokens[0], "publish", ids[0])
            assert final.ack is not None, final
            outcomes.append(final)

    acks = [o.ack for o in outcomes if o.ack is not None]
    codes = Counter(c for o in outcomes for c in o.codes)
    summary = {
        "terminations": terminations,
        "requests": len(outcomes),
        "acknowledged": Counter(a.kind for a in acks),
        "error_codes": codes,
        "graphql_http_503": sum(1 for o in outcomes if o.status == 503),
        "readyz": ready_codes,
        "recovery_seconds": recoveries,
    }
    print(json.dumps(summary))
    assert not bad_errors(outcomes), (bad_errors(outcomes)[:5], summary)
    assert set(ready_codes) <= {200, 503}, summary
    assert all(r < 10 for r in recoveries), summary
    check_acks_in_log(db, schema, acks)
    assert "head" in cli("verify", "--db", db, schema=schema).stdout
    assert "unexpected error" not in server.log_path.read_text(errors="replace")


# -- SQLite: another process holds the write lock longer than the busy timeout ---------------

HOLD_LOCK = """
import sqlite3, sys, time
# Wait for the lock: the server may be committing (a projection batch) at this very moment.
conn = sqlite3.connect(sys.argv[1], timeout=30, isolation_level=None)
conn.execute("BEGIN IMMEDIATE")
print("locked", flush=True)
time.sleep(float(sys.argv[2]))
conn.execute("ROLLBACK")
"""


def test_sqlite_locked_by_another_process(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'locked.db'}"
    (token,) = prepare(db, None)
    server = LiveServer(db, tmp_path / "server.log")
    with server.running(), httpx.Client(base_url=server.url, timeout=30) as client:
        server.wait_caught_up()
        ids = statement_ids(server.url)
        before = [mutate(client, token, kind, ids[0]) for kind in ("publish", "view")]
        assert all(o.ack for o in before), before

        holder = subprocess.Popen(
            [sys.executable, "-c", HOLD_LOCK, sqlite_path(db), "11.5"],
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
            # Reads go on (WAL): a query is answered at once.
            read = query(client)
            # Not blocked behind the lock's 5 s busy timeout (a hang guard, not a speed target).
            assert not read.errors and read.status == 200 and read.seconds < 4, read
            # One after the other: each waits out the busy timeout (5 s) on its own.
            during = [mutate(client, token, kind, ids[1]) for kind in ("publish", "view")]
            assert holder.poll() is None, ("the lock was released too early", during)
        finally:
            holder.wait(30)
            if holder.stdout is not None:
                holder.stdout.close()
        assert len(during) == 2
        for outcome in during:
            error = unavailable_error(outcome)
            assert "locked" in error["message"], error
            assert 4.5 < outcome.seconds < 7, outcome  # the busy timeout (5 s) ran out

        # The lock is gone: mutations succeed again, without a restart.
        after = [mutate(client, token, kind, ids[2]) for kind in ("publish", "view")]
        assert all(o.ack for o in after), after
        server.wait_caught_up()
        print(json.dumps({"failed_after_seconds": [round(o.seconds, 2) for o in during]}))

    check_acks_in_log(db, None, [o.ack for o in before + after if o.ack])
    failed_titles = {json.loads(d).get("title") for _, _, t, d in event_rows(db)} & {
        o.ack.title for o in during if o.ack
    }
    assert not failed_titles
    assert "head" in cli("verify", "--db", db).stdout
    integrity_ok(sqlite_path(db))
    assert "unexpected error" not in server.log_path.read_text(errors="replace")


# -- A full disk: a 4 MiB tmpfs ---------------------------------------------------------------


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 4 MiB tmpfs, mounted for the test and unmounted after it."""
    mount = tmp_path / "disk"
    mount.mkdir()
    if shutil.which("mount") is None or os.geteuid() != 0:
        pytest.skip("a full-disk test needs root to mount a small tmpfs")
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(path: Path) -> None:
    """Write zeros to ``path`` until the disk is full."""
    subprocess.run(["dd", "if=/dev/zero", f"of={path}", "bs=16k"], capture_output=True, check=False)


def write_until_full(
    client: httpx.Client, token: str, ids: list[str], disk: Path, attempts: int
) -> tuple[list[Ack], list[Outcome]]:
    """Fill ``disk``, then keep writing (and filling what a write freed) until 3 are refused:
    the database may still have room in pages or WAL it already holds."""
    acks: list[Ack] = []
    failures: list[Outcome] = []
    fill(disk / "filler")
    for i in range(attempts):
        outcome = mutate(client, token, "publish" if i % 2 else "view", ids[i % len(ids)])
        if outcome.ack is not None:
            acks.append(outcome.ack)
            fill(disk / f"filler{i}")
            continue
        failures.append(outcome)
        if len(failures) >= 3:
            break
    return acks, failures


def write_once_space_returns(
    client: httpx.Client, token: str, statement_id: str, seconds: float = 15
) -> Outcome:
    """Retry a publish until one is acknowledged (every refusal meanwhile a clean one)."""
    deadline = time.monotonic() + seconds
    while True:
        outcome = mutate(client, token, "publish", statement_id)
        if outcome.ack is not None or time.monotonic() >= deadline:
            return outcome
        assert not bad_errors([outcome]), outcome
        time.sleep(0.2)


def test_full_disk(small_disk: Path, tmp_path: Path) -> None:
    db = f"sqlite:///{small_disk / 'full.db'}"
    (token,) = prepare(db, None)
    server = LiveServer(db, tmp_path / "server.log")
    acks: list[Ack] = []
    with server.running(), httpx.Client(base_url=server.url, timeout=30) as client:
        server.wait_caught_up()
        ids = statement_ids(server.url)
        first = mutate(client, token, "publish", ids[0])
        assert first.ack is not None, first
        acks.append(first.ack)

        # The WAL may still have room: keep writing until the disk refuses.
        written, failures = write_until_full(client, token, ids, small_disk, 400)
        acks.extend(written)
        assert failures, "the disk never filled up"
        for outcome in failures:
            error = unavailable_error(outcome)
            assert "full" in error["message"], error
        read = query(client)
        assert read.status == 200 and not bad_errors([read]), read

        for path in small_disk.glob("filler*"):
            path.unlink()
        # Space is back: writes succeed again without a restart (within a few seconds).
        recovered = write_once_space_returns(client, token, ids[0])
        assert recovered.ack is not None, recovered
        acks.append(recovered.ack)
        view = mutate(client, token, "view", ids[1])
        assert view.ack is not None, view
        acks.append(view.ack)
        caught_up = server.wait_caught_up()
        print(
            json.dumps(
                {
                    "acknowledged": len(acks),
                    "refused": [o.codes for o in failures],
                    "message": failures[0].errors[0]["message"],
                    "head": caught_up["head"],
                }
            )
        )

    check_acks_in_log(db, None, acks)
    assert "head" in cli("verify", "--db", db).stdout
    integrity_ok(sqlite_path(db))
    assert "unexpected error" not in server.log_path.read_text(errors="replace")
