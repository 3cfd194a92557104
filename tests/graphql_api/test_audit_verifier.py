"""The verifier printed in docs/AUDIT.md, taken from the doc and run against a live server (the
real app, signing with a key file): it accepts honest proofs and, holding a checkpoint saved
before an operator rewrote the log (chain and tree recomputed), rejects the log and the
rewritten event."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.exceptions import InvalidSignature

from eventstore.audit import row_hash
from eventstore.merkle import TreeBuilder
from eventstore.planning import Row
from eventstore.tree import row_leaf
from graphql_api.cli import main
from tests.graphql_api.live_support import ROOT, free_port, make_tokens, publish

DOC = ROOT / "docs" / "AUDIT.md"


def doc_verifier() -> dict[str, Any]:
    """The code block after the ``<!-- verifier -->`` marker, executed as a reader would."""
    text = DOC.read_text()
    match = re.search(r"<!-- verifier -->\n```python\n(.*?)```", text, re.DOTALL)
    assert match is not None, "docs/AUDIT.md has no verifier block"
    namespace: dict[str, Any] = {}
    exec(compile(match.group(1), str(DOC), "exec"), namespace)
    return namespace


@contextlib.contextmanager
def serve(db_url: str, log_dir: Path, key: Path) -> Iterator[str]:
    """``statements serve``'s app under uvicorn, signing checkpoints with ``key``."""
    port = free_port()
    log = log_dir / "server.log"
    environ = {
        **os.environ,
        "STATEMENTS_DATABASE_URL": db_url,
        "STATEMENTS_SIGNING_KEY": str(key),
        "PYTHONPATH": str(ROOT),
    }
    with log.open("wb") as out:
        process = subprocess.Popen(
            [
                *(sys.executable, "-m", "uvicorn", "--factory", "graphql_api.app:app_from_env"),
                *("--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"),
            ],
            cwd=ROOT,
            env=environ,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"the server exited: {log.read_text()}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError(f"the server did not start: {log.read_text()}")
            time.sleep(0.1)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def rewrite(path: Path, position: int) -> None:
    """Change one event's data and recompute the chain and the tree, triggers dropped."""
    conn = sqlite3.connect(path)
    conn.execute("DROP TRIGGER IF EXISTS events_refuse_update")
    columns = "position, stream_id, version, event_id, type, schema_version, data, metadata, "
    columns += "recorded_at, hash"
    rows = [Row._make(r) for r in conn.execute(f"SELECT {columns} FROM events ORDER BY position")]
    rows[position - 1] = rows[position - 1]._replace(
        data=rows[position - 1].data.replace("Second paragraph", "Another paragraph")
    )
    builder = TreeBuilder()
    previous = rows[position - 2].hash
    conn.execute("DELETE FROM merkle_nodes")
    for row in rows:
        if row.position >= position:
            row = row._replace(hash=row_hash(previous, row))
            previous = row.hash
        conn.execute(
            "UPDATE events SET data = ?, hash = ?, tree = ? WHERE position = ?",
            (row.data, row.hash, builder.add(row_leaf(row)), row.position),
        )
    conn.commit()
    conn.close()


def test_the_documented_verifier_against_a_live_server(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    v = doc_verifier()
    db_path = tmp_path / "live.db"
    db = f"sqlite:///{db_path}"
    key = tmp_path / "signing.key"
    assert main(["keys", "create", "--key", str(key), "--origin", "audit.example/log"]) == 0
    vkey = capsys.readouterr().out.strip()
    assert main(["init", "--db", db]) == 0
    tokens = make_tokens(db)

    async def publish_all(url: str, *titles: str) -> list[str]:
        async with httpx.AsyncClient(timeout=10) as client:
            return [await publish(client, url, tokens.editor, title) for title in titles]

    with serve(db, tmp_path, key) as url:
        endpoint = url + "/graphql"

        first, second = asyncio.run(publish_all(url, "First", "Second"))
        positions = v["check_statement"](endpoint, tokens.auditor, vkey, first)
        assert len(positions) >= 1
        assert v["check_statement"](endpoint, tokens.auditor, vkey, second)
        # The auditor saves today's checkpoint, and the first statement's published event.
        saved = v["ask"](endpoint, tokens.auditor, "{ logCheckpoint { signedNote } }")
        note = saved["logCheckpoint"]["signedNote"]
        size, root = v["open_note"](note, vkey)
        proof = v["ask"](
            endpoint,
            tokens.auditor,
            "query($id: ID!) { statement(id: $id) { proof { events { event { position } "
            "record } } } }",
            id=first,
        )["statement"]["proof"]["events"]
        event = next(e for e in proof if "Second paragraph" in e["record"][6])
        position = event["event"]["position"]
        assert v["check_event"](endpoint, tokens.auditor, position, event["record"], size, root)
        asyncio.run(publish_all(url, "Third"))
        assert v["check_growth"](endpoint, tokens.auditor, vkey, note)
        # A checkpoint whose size was edited no longer matches its signature.
        edited = note.replace(f"\n{size}\n", f"\n{size + 1}\n", 1)
        assert edited != note
        with pytest.raises(InvalidSignature):
            v["open_note"](edited, vkey)

    # The operator stops the server, rewrites the event (chain and tree recomputed) and serves
    # the forged log, which grows as before.
    rewrite(db_path, position)
    with serve(db, tmp_path, key) as url:
        endpoint = url + "/graphql"
        asyncio.run(publish_all(url, "Fourth"))
        assert not v["check_growth"](endpoint, tokens.auditor, vkey, note)
        proof = v["ask"](
            endpoint,
            tokens.auditor,
            "query($id: ID!) { statement(id: $id) { proof { events { event { position } "
            "record } } } }",
            id=first,
        )["statement"]["proof"]["events"]
        rewritten = next(e for e in proof if e["event"]["position"] == position)
        assert "Another paragraph" in rewritten["record"][6]
        assert not v["check_event"](
            endpoint, tokens.auditor, position, rewritten["record"], size, root
        )
        # The forged log is self-consistent: only a checkpoint saved before tells.
        assert v["check_statement"](endpoint, tokens.auditor, vkey, first)
