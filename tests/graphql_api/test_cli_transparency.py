"""``statements keys create``, ``checkpoint`` and ``prove consistency`` on SQLite: settings,
unsigned logs, refusals; tampering is in test_tampering.py."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from eventstore import NewEvent, open_store
from eventstore.checkpoints import NoteSigner, NoteVerifier, parse_checkpoint
from eventstore.tree import tree_root
from graphql_api.cli import main
from graphql_api.settings import DEFAULT_CHECKPOINT_INTERVAL, DEFAULT_LOG_ORIGIN, Settings


def test_the_signing_settings_come_from_the_environment() -> None:
    default = Settings.from_env({})
    assert (default.signing_key_path, default.log_origin, default.checkpoint_interval) == (
        None,
        DEFAULT_LOG_ORIGIN,
        DEFAULT_CHECKPOINT_INTERVAL,
    )
    settings = Settings.from_env(
        {
            "STATEMENTS_SIGNING_KEY": "/etc/statements/log.key",
            "STATEMENTS_LOG_ORIGIN": "example.org/log",
            "STATEMENTS_CHECKPOINT_INTERVAL": "5",
        }
    )
    assert (settings.signing_key_path, settings.log_origin, settings.checkpoint_interval) == (
        "/etc/statements/log.key",
        "example.org/log",
        5,
    )
    with pytest.raises(ValueError, match="STATEMENTS_CHECKPOINT_INTERVAL"):
        Settings.from_env({"STATEMENTS_CHECKPOINT_INTERVAL": "soon"})


def test_keys_create_writes_a_private_key_once_and_prints_its_verifier(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    key = tmp_path / "log.key"
    assert main(["keys", "create", "--key", str(key), "--origin", "example.org/log"]) == 0
    printed = capsys.readouterr().out.strip()
    signer = NoteSigner.from_text(key.read_text())
    assert printed == signer.verifier_key()
    assert printed.startswith(f"example.org/log+{signer.key_id.hex()}+")
    assert os.stat(key).st_mode & 0o777 == 0o600
    note = signer.sign("example.org/log\n1\n" + "A" * 43 + "=\n")
    assert NoteVerifier.from_text(printed).verify(note).tree_size == 1
    assert main(["keys", "create", "--key", str(key)]) == 1
    assert "never overwritten" in capsys.readouterr().err
    assert NoteSigner.from_text(key.read_text()).verifier_key() == printed
    assert main(["keys", "create", "--key", str(tmp_path / "bad.key"), "--origin", "a b"]) == 2
    assert "without spaces" in capsys.readouterr().err


def test_keys_create_needs_a_file(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("STATEMENTS_SIGNING_KEY", raising=False)
    assert main(["keys", "create"]) == 2
    assert "STATEMENTS_SIGNING_KEY" in capsys.readouterr().err


def test_an_unsigned_log_checkpoints_and_proves_without_a_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("STATEMENTS_SIGNING_KEY", raising=False)
    db = f"sqlite:///{tmp_path / 'log.db'}"

    async def append(count: int) -> bytes:
        async with open_store(db) as store:
            for n in range(count):
                await store.append("s", [NewEvent("E", {"n": n})])
            return await tree_root(store, await store.head_position())

    root = asyncio.run(append(5))
    saved = tmp_path / "checkpoint.txt"
    assert main(["checkpoint", "--db", db, "--out", str(saved)]) == 0
    assert "unsigned" in capsys.readouterr().err
    parsed = parse_checkpoint(saved.read_text())
    assert (parsed.origin, parsed.tree_size, parsed.root_hash, parsed.signatures) == (
        DEFAULT_LOG_ORIGIN,
        5,
        root,
        [],
    )
    asyncio.run(append(2))
    assert main(["prove", "consistency", "--db", db, "--from", str(saved)]) == 0
    out = capsys.readouterr().out
    assert "ok  signature: not checked (no --pubkey)" in out
    assert "ok  consistency: the log of 7 events" in out
    # A key given, but the note is unsigned: the signature check fails first.
    vkey = NoteSigner.generate(DEFAULT_LOG_ORIGIN).verifier_key()
    assert main(["prove", "consistency", "--db", db, "--from", str(saved), "--pubkey", vkey]) == 1
    assert "FAILED signature: the note has no signature" in capsys.readouterr().err
    # Another log's checkpoint.
    other = tmp_path / "other.txt"
    other.write_text(saved.read_text().replace(DEFAULT_LOG_ORIGIN, "elsewhere.example/log"))
    assert main(["prove", "consistency", "--db", db, "--from", str(other)]) == 1
    assert "FAILED origin" in capsys.readouterr().err
    other.write_text("not a checkpoint\n")
    assert main(["prove", "consistency", "--db", db, "--from", str(other)]) == 1
    assert "FAILED checkpoint file" in capsys.readouterr().err
