"""The verifier printed in docs/AUDIT.md, taken from the doc as a reader would copy it: against
transparency-dev/merkle's published proof probes; against a live server (uvicorn, signing with
a key file), where it accepts honest proofs and, holding a checkpoint saved before an operator
rewrote the log (chain and tree recomputed), rejects the log and the rewritten event; and
against the app after each kind of tampering, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.exceptions import InvalidSignature

from graphql_api.app import create_app
from graphql_api.cli import main
from graphql_api.settings import Settings
from tests.graphql_api.live_support import PUBLISH, ROOT, free_port, make_tokens, publish
from tests.graphql_api.tampering_support import forge, read_rows, run_sql, swap

DOC = ROOT / "docs" / "AUDIT.md"
#: transparency-dev/merkle's proof probes (tests/eventstore/test_merkle.py names the source).
PROBES: dict[str, Any] = json.loads(
    (ROOT / "tests" / "eventstore" / "fixtures" / "transparency_dev_proofs.json").read_text()
)


def doc_verifier() -> dict[str, Any]:
    """The code blocks after the ``<!-- verifier -->`` and ``<!-- verifier-api -->`` markers,
    executed in one namespace as a reader who copied them would."""
    text = DOC.read_text()
    namespace: dict[str, Any] = {}
    for marker in ("verifier", "verifier-api"):
        match = re.search(rf"<!-- {marker} -->\n```python\n(.*?)```", text, re.DOTALL)
        assert match is not None, f"docs/AUDIT.md has no {marker} block"
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
    run_sql(
        db,
        None,
        *forge(read_rows(db, None), position, lambda d: d.replace("Second", "Another")),
    )
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


def _b64(value: str | None) -> bytes:
    return base64.b64decode(value or "")


def test_the_documented_verifier_answers_every_published_probe() -> None:
    v = doc_verifier()
    wrong = []
    for case in PROBES["inclusion"]:
        path = [_b64(h) for h in case["proof"] or []]
        args = (case["leafIdx"], case["treeSize"], _b64(case["leafHash"]), path)
        if v["included"](*args, _b64(case["root"])) == case["wantErr"]:
            wrong.append(case["file"])
    for case in PROBES["consistency"]:
        path = [_b64(h) for h in case["proof"] or []]
        args = (case["size1"], case["size2"], _b64(case["root1"]), _b64(case["root2"]))
        if v["consistent"](*args, path) == case["wantErr"]:
            wrong.append(case["file"])
    assert not wrong
    assert len(PROBES["inclusion"]) + len(PROBES["consistency"]) > 150


# -- after each kind of tampering ----------------------------------------------------------

BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
TAMPERINGS = ["altered", "deleted", "swapped", "truncated", "rewritten"]
REVISE = """mutation($input: ReviseStatementInput!) {
  reviseStatement(input: $input) { statementId } }"""
PROOF = """query($id: ID!) { statement(id: $id) { proof { events { record } } } }"""


class Desk:
    """The app in process, on an event loop of its own in a thread, and the documented verifier
    sending its requests through it (the doc's code is synchronous)."""

    def __init__(self, settings: Settings, v: dict[str, Any]) -> None:
        self.settings = settings
        self.loop: asyncio.AbstractEventLoop | None = None
        self.client: httpx.AsyncClient | None = None
        v["ask"] = self.ask

    async def _serve(self, ready: asyncio.Future[httpx.AsyncClient], stop: asyncio.Event) -> None:
        app = create_app(self.settings)
        transport = httpx.ASGITransport(app=app)
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(transport=transport, base_url="http://test") as client,
        ):
            for _ in range(200):
                if (await client.get("/readyz")).status_code == 200:
                    break
                await asyncio.sleep(0.05)
            ready.set_result(client)
            await stop.wait()

    @contextlib.contextmanager
    def open(self) -> Iterator[None]:
        loop = asyncio.new_event_loop()
        thread = threading.Thread(target=loop.run_forever, daemon=True)
        thread.start()
        stop = asyncio.Event()
        ready: asyncio.Future[httpx.AsyncClient] = loop.create_future()
        served = asyncio.run_coroutine_threadsafe(self._serve(ready, stop), loop)
        try:
            self.client = asyncio.run_coroutine_threadsafe(_wait(ready), loop).result(60)
            self.loop = loop
            yield
        finally:
            self.loop = self.client = None
            loop.call_soon_threadsafe(stop.set)
            served.result(60)
            loop.call_soon_threadsafe(loop.stop)
            thread.join(10)
            loop.close()

    def ask(self, url: str, token: str, query: str, **variables: Any) -> Any:
        """The doc's ``ask``, in process: the same request, the same errors."""
        assert self.client is not None and self.loop is not None
        sent = self.client.post(
            url,
            json={"query": query, "variables": variables},
            headers={"authorization": f"Bearer {token}"},
        )
        answer = asyncio.run_coroutine_threadsafe(sent, self.loop).result(60).json()
        if "errors" in answer:
            raise ValueError(answer["errors"])
        return answer["data"]


async def _wait(future: asyncio.Future[httpx.AsyncClient]) -> httpx.AsyncClient:
    return await future


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("tampering", TAMPERINGS)
def test_the_documented_verifier_rejects_each_tampering(
    backend: str,
    tampering: str,
    tmp_path: Path,
    request: pytest.FixtureRequest,
    capsys: pytest.CaptureFixture[str],
) -> None:
    v = doc_verifier()
    if backend == "sqlite":
        url, schema = f"sqlite:///{tmp_path / 'log.db'}", None
    else:
        url, schema = request.getfixturevalue("pg_schema")
    key = tmp_path / "signing.key"
    assert main(["keys", "create", "--key", str(key), "--origin", "audit.example/log"]) == 0
    vkey = capsys.readouterr().out.strip()
    settings = Settings(database_url=url, database_schema=schema, signing_key_path=str(key))
    desk = Desk(settings, v)
    gql = "/graphql"

    with desk.open():
        tokens = make_tokens(url, schema)
        editor, auditor = tokens.editor, tokens.auditor
        ids = {}
        for title in ("Gamma", "Alpha", "Beta"):
            variables = {
                "input": {
                    "title": title,
                    "body": "First paragraph.\n\nSecond paragraph.",
                    "kind": "speech",
                    "occurredOn": "2024-05-01",
                    "publishedAt": "2024-05-01T10:00:00+03:00",
                    "ministerName": "Test Minister",
                }
            }
            ids[title] = v["ask"](gql, editor, PUBLISH, input=variables["input"])[
                "publishStatement"
            ]["statementId"]
        for title, revisions in (("Alpha", 2), ("Beta", 1)):
            for n in range(2, revisions + 2):
                change = {"statementId": ids[title], "reason": "typo", "title": f"{title} {n}"}
                v["ask"](gql, editor, REVISE, input=change)
        # The auditor checks every statement and saves a checkpoint and Alpha's events.
        for statement_id in ids.values():
            assert v["check_statement"](gql, auditor, vkey, statement_id)
        note = v["ask"](gql, auditor, "{ logCheckpoint { signedNote } }")["logCheckpoint"][
            "signedNote"
        ]
        size, root = v["open_note"](note, vkey)
        alpha = v["ask"](gql, auditor, PROOF, id=ids["Alpha"])["statement"]["proof"]["events"]
        beta = v["ask"](gql, auditor, PROOF, id=ids["Beta"])["statement"]["proof"]["events"]
        assert [e["record"][2] for e in alpha] == ["1", "2", "3"]
        saved = alpha[1]["record"]  # Alpha's first revision
        position = int(saved[0])
        assert v["check_event"](gql, auditor, position, saved, size, root)
        v["ask"](
            gql, editor, REVISE, input={"statementId": ids["Beta"], "reason": "r", "title": "B"}
        )
        assert v["check_growth"](gql, auditor, vkey, note)

    rows = read_rows(url, schema)
    if tampering == "altered":
        changed = rows[position - 1].data.replace("Alpha 2", "Alpha 9")
        run_sql(url, schema, ("UPDATE events SET data = ? WHERE position = ?", (changed, position)))
    elif tampering == "deleted":
        run_sql(url, schema, ("DELETE FROM events WHERE position = ?", (position,)))
    elif tampering == "swapped":
        run_sql(url, schema, *swap(rows, position, int(beta[1]["record"][0])))
    elif tampering == "truncated":
        run_sql(url, schema, ("DELETE FROM events WHERE position > ?", (size - 2,)))
    else:
        run_sql(url, schema, *forge(rows, position, lambda d: d.replace("Alpha 2", "Alpha 9")))

    with desk.open():
        check_statement, check_event, check_growth = (
            v["check_statement"],
            v["check_event"],
            v["check_growth"],
        )
        if tampering in ("altered", "swapped"):
            with pytest.raises(ValueError, match="is not in the signed tree"):
                check_statement(gql, auditor, vkey, ids["Alpha"])
            assert check_statement(gql, auditor, vkey, ids["Gamma"])
            current = read_rows(url, schema)[position - 1]
            record = [str(value) for value in current[:9]]
            assert not check_event(gql, auditor, position, record, size, root)
        elif tampering == "deleted":
            # The gap in the stream's versions, or the server failing on a tree that lost a node.
            missing = "version 2 of the statement is missing|Internal server error"
            with pytest.raises(ValueError, match=missing):
                check_statement(gql, auditor, vkey, ids["Alpha"])
        elif tampering == "truncated":
            assert not check_growth(gql, auditor, vkey, note)
            with pytest.raises(ValueError, match="treeSize: must be between"):
                check_event(gql, auditor, position, saved, size, root)
        else:
            assert not check_growth(gql, auditor, vkey, note)
            forged = v["ask"](gql, auditor, PROOF, id=ids["Alpha"])["statement"]["proof"]["events"]
            assert "Alpha 9" in forged[1]["record"][6]
            assert not check_event(gql, auditor, position, forged[1]["record"], size, root)
            # What the auditor saved still proves (the forger could not change its siblings):
            # the log now serves another event at that position.
            assert check_event(gql, auditor, position, saved, size, root)
            # The forged log is consistent with itself: only what the auditor saved tells.
            assert check_statement(gql, auditor, vkey, ids["Alpha"])
