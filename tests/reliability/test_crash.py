"""SIGKILL the server under write load, again and again: nothing acknowledged is lost.

After the kills: every acknowledged event is in the log exactly once, at the position the
server returned; the read models equal a rebuild from the same events in a fresh database;
and ``statements verify`` passes.
"""

from __future__ import annotations

import json
import os
import random
import threading
import time
import uuid
from collections import Counter
from pathlib import Path

import pytest

from domain.streams import statement_stream, views_stream
from tests.conftest import run_pg
from tests.reliability.live import LiveServer, cli, dump_read_models, event_rows
from tests.reliability.load import Tally, run_load, statement_ids

KILLS = int(os.environ.get("STATEMENTS_CRASH_KILLS", "5"))


def _database(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path, name: str
) -> tuple[str, str | None]:
    if backend == "sqlite":
        return f"sqlite:///{tmp_path / name}.db", None
    url, schema = request.getfixturevalue("pg_schema")
    if name == "main":
        return url, schema
    other = f"{schema}_{name}"
    run_pg(url, f'CREATE SCHEMA "{other}"')
    return url, other


@pytest.mark.parametrize(
    "backend", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
)
def test_sigkill_under_load_loses_nothing_acknowledged(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    db, schema = _database(backend, request, tmp_path, "main")
    cli("demo", "--db", db, "--statements", "30", "--views", "300", schema=schema)
    token = cli(
        "token", "create", "--db", db, "--role", "editor", "--name", "loadgen", schema=schema
    ).stdout.strip()
    server = LiveServer(db, tmp_path / "server.log", schema=schema)
    seed = int(os.environ.get("STATEMENTS_CRASH_SEED", str(uuid.uuid4().int % 10_000)))
    rng = random.Random(seed)
    tally = Tally()
    with server.running():
        server.wait_caught_up()
        ids = statement_ids(server.url)
    assert ids

    for kill in range(KILLS):
        server.start()
        # Mutations answer once the read models show them: load a server whose projections
        # run, so that the random moment falls among answered writes, not before the first.
        server.wait_caught_up()
        stop = threading.Event()
        threads = run_load(server.url, token, ids, tally, stop, seed=seed + kill)
        # A random moment under load, late enough for answers: a mutation answers once the
        # read models show it, later than its append alone.
        time.sleep(rng.uniform(1.0, 2.5))
        server.kill()
        stop.set()
        for thread in threads:
            thread.join(15)
            assert not thread.is_alive()

    with server.running():
        server.wait_caught_up()
    summary = {
        "seed": seed,
        "kills": KILLS,
        "acknowledged": Counter(a.kind for a in tally.acks),
        "refused": tally.refused,
        "transport_errors": tally.transport_errors,
    }
    print(json.dumps(summary))
    assert tally.server_errors == 0, summary
    assert sum(1 for a in tally.acks if a.kind == "publish") >= KILLS, summary
    assert sum(1 for a in tally.acks if a.kind == "view") >= KILLS, summary

    # Every acknowledged event is in the log, once, at the position the server returned.
    log = {
        position: (stream, type_, data) for position, stream, type_, data in event_rows(db, schema)
    }
    positions = [a.position for a in tally.acks]
    assert len(positions) == len(set(positions))
    published_titles = Counter(
        json.loads(data).get("title")
        for _, type_, data in log.values()
        if type_ == "StatementPublished"
    )
    for ack in tally.acks:
        assert ack.position in log, ack
        stream, type_, data = log[ack.position]
        if ack.kind == "publish":
            assert (stream, type_) == (statement_stream(ack.statement_id), "StatementPublished")
            assert json.loads(data)["title"] == ack.title
            assert published_titles[ack.title] == 1, ack
        else:
            assert (stream, type_) == (views_stream(ack.statement_id), "Viewed")

    # The hash chain holds.
    assert "head" in cli("verify", "--db", db, schema=schema).stdout

    # The read models equal a rebuild from the same events in a fresh database.
    export = tmp_path / "log.jsonl"
    cli("events", "export", "--db", db, "--out", str(export), schema=schema)
    copy_db, copy_schema = _database(backend, request, tmp_path, "copy")
    cli("events", "import", "--db", copy_db, str(export), schema=copy_schema)
    cli("projections", "rebuild", "--db", copy_db, schema=copy_schema)
    live = dump_read_models(db, schema)
    rebuilt = dump_read_models(copy_db, copy_schema)
    assert live.keys() == rebuilt.keys()
    for table in live:
        assert live[table] == rebuilt[table], table
