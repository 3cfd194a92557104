"""Tampering with a copy of the log, as an operator would (dropping the triggers that refuse
UPDATE and DELETE), and what ``statements verify``, ``statements prove consistency`` and an
auditor holding an old checkpoint see: on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from eventstore import EventStore, NewEvent, open_store
from eventstore.checkpoints import NoteVerifier, parse_checkpoint
from eventstore.merkle import ProofError, verify_inclusion
from eventstore.planning import Row
from eventstore.tree import inclusion_proof, row_leaf
from graphql_api.cli import main
from tests.graphql_api.tampering_support import Statement, forge, read_rows, run_sql, swap

BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
SAVED_SIZE = 24  # events when the auditor saved a checkpoint
HEAD = 30


class Log:
    """A log of HEAD events in a database of its own, and SQL run behind the store's back."""

    def __init__(self, backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
        self.backend = backend
        if backend == "sqlite":
            self.path = tmp_path / "log.db"
            self.url = f"sqlite:///{self.path}"
            self.schema: str | None = None
        else:
            self.url, self.schema = request.getfixturevalue("pg_schema")

    def open(self) -> EventStore:
        options = {"schema": self.schema} if self.schema else {}
        return open_store(self.url, **options)

    def run(self, work: Callable[[EventStore], Any]) -> Any:
        async def go() -> Any:
            store = self.open()
            await store.setup()
            try:
                return await work(store)
            finally:
                await store.close()

        return asyncio.run(go())

    def rows(self) -> list[Row]:
        return read_rows(self.url, self.schema)

    def sql(self, *statements: Statement) -> None:
        """Run statements with the append-only triggers dropped ('?' placeholders)."""
        run_sql(self.url, self.schema, *statements)


@pytest.fixture(params=BACKENDS)
def log(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> Log:
    """The log, a signing key, and a checkpoint saved at SAVED_SIZE events (checkpoint.txt)."""
    log = Log(str(request.param), tmp_path, request)
    if log.schema:
        monkeypatch.setenv("STATEMENTS_DATABASE_SCHEMA", log.schema)
    key = tmp_path / "log.key"
    monkeypatch.setenv("STATEMENTS_SIGNING_KEY", str(key))
    assert main(["keys", "create", "--origin", "test.example/statements"]) == 0
    (tmp_path / "log.pub").write_text(capsys.readouterr().out)

    async def append(store: EventStore, first: int, last: int) -> None:
        for n in range(first, last + 1):
            data = {"n": n, "text": f"statement {n}: «déclaration»"}
            await store.append(f"statement-{n % 4}", [NewEvent("Said", data, {"actor": "a"})])

    log.run(lambda store: append(store, 1, SAVED_SIZE))
    assert main(["checkpoint", "--db", log.url, "--out", str(tmp_path / "checkpoint.txt")]) == 0
    log.run(lambda store: append(store, SAVED_SIZE + 1, HEAD))
    capsys.readouterr()
    return log


def verify(log: Log, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = main(["verify", "--db", log.url])
    return code, capsys.readouterr().out


def prove(log: Log, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = main(
        [
            "prove",
            "consistency",
            "--db",
            log.url,
            "--from",
            str(tmp_path / "checkpoint.txt"),
            "--pubkey",
            str(tmp_path / "log.pub"),
        ]
    )
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def auditor_check(log: Log, tmp_path: Path, position: int) -> None:
    """What an auditor does with a saved checkpoint: fetch the event and its inclusion proof
    at the checkpoint's size, recompute the leaf from the event, check the path to the root."""
    note = (tmp_path / "checkpoint.txt").read_text()
    saved = NoteVerifier.from_text((tmp_path / "log.pub").read_text()).verify(note)
    row = log.rows()[position - 1]
    proof = log.run(lambda store: inclusion_proof(store, position, saved.tree_size))
    verify_inclusion(position - 1, saved.tree_size, row_leaf(row), proof.hashes, saved.root_hash)


def test_an_untouched_log_verifies_and_extends_its_checkpoint(
    log: Log, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out = verify(log, capsys)
    assert code == 0, out
    assert f"chain sound: {HEAD} events checked" in out
    assert "Merkle tree sound" in out
    code, out = prove(log, tmp_path, capsys)
    assert code == 0, out
    assert "ok  signature: by test.example/statements" in out
    assert f"ok  consistency: the log of {HEAD} events" in out
    for position in (1, 7, SAVED_SIZE):
        auditor_check(log, tmp_path, position)
    saved = parse_checkpoint((tmp_path / "checkpoint.txt").read_text())
    assert saved.tree_size == SAVED_SIZE


def test_a_flipped_byte_in_an_old_event(
    log: Log, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    old = log.rows()[4]
    log.sql(("UPDATE events SET data = ? WHERE position = 5", (old.data.replace("5", "6", 1),)))
    code, out = verify(log, capsys)
    assert code == 1
    assert "chain broken at position 5: altered" in out
    with pytest.raises(ProofError):
        auditor_check(log, tmp_path, 5)
    auditor_check(log, tmp_path, 4)  # the others still prove


def test_a_deleted_event(log: Log, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    log.sql(("DELETE FROM events WHERE position = 7", ()))
    code, out = verify(log, capsys)
    assert code == 1
    assert "chain broken at position 7: missing" in out


def test_two_swapped_events(log: Log, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    log.sql(*swap(log.rows(), 9, 11))
    code, out = verify(log, capsys)
    assert code == 1
    assert "chain broken at position 9: reordered" in out


def test_a_truncated_log(log: Log, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    log.sql(("DELETE FROM events WHERE position > 20", ()))
    code, out = prove(log, tmp_path, capsys)
    assert code == 1
    assert "FAILED size: the log has 20 events, fewer than the 24 of the checkpoint" in out
    assert "truncated" in out


def test_a_log_rewritten_consistently(
    log: Log, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    log.sql(*forge(log.rows(), 5, lambda data: data.replace("statement", "STATEMENT")))
    code, out = verify(log, capsys)
    assert code == 0, out  # the forgery is self-consistent: only a saved checkpoint tells
    code, out = prove(log, tmp_path, capsys)
    assert code == 1
    assert "FAILED consistency:" in out
    assert "rewritten" in out
    with pytest.raises(ProofError):
        auditor_check(log, tmp_path, 5)


def test_a_tree_that_no_longer_matches_its_events(
    log: Log, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    blob = log.run(lambda store: store.read_tree_nodes([12]))[12]
    log.sql(("UPDATE events SET tree = ? WHERE position = 12", (bytes(32) + blob[32:],)))
    code, out = verify(log, capsys)
    assert code == 1
    assert "tree broken at position 12: tree" in out


def test_a_checkpoint_signed_by_another_key_or_edited(
    log: Log, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    note = tmp_path / "checkpoint.txt"
    text = note.read_text()
    lines = text.split("\n")
    lines[1] = str(SAVED_SIZE - 1)
    note.write_text("\n".join(lines))
    code, out = prove(log, tmp_path, capsys)
    assert code == 1
    assert "FAILED signature: the signature by test.example/statements does not verify" in out
    note.write_text(text)
    other = tmp_path / "other.key"
    assert main(["keys", "create", "--key", str(other), "--origin", "test.example/statements"]) == 0
    (tmp_path / "log.pub").write_text(capsys.readouterr().out)
    code, out = prove(log, tmp_path, capsys)
    assert code == 1
    assert "FAILED signature: the note has no signature by test.example/statements" in out
