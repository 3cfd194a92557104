"""The statements command line: --db defaults, and the commands run end to end on SQLite."""

from __future__ import annotations

from pathlib import Path

import pytest

from graphql_api.cli.commands import build_parser, main
from graphql_api.settings import (
    DEFAULT_DATABASE_URL,
    DEFAULT_MAX_REQUEST_BYTES,
    DEFAULT_READ_CACHE_ROWS,
    Settings,
)

SEED = Path(__file__).resolve().parents[2].parent / "shared" / "seeds"


def test_db_defaults_to_the_environment_then_sqlite() -> None:
    assert Settings.from_env({}).database_url == DEFAULT_DATABASE_URL == "sqlite:///./statements.db"
    settings = Settings.from_env({"STATEMENTS_DATABASE_URL": "postgresql://u@h/db"})
    for argv in (["serve"], ["demo"], ["verify"], ["import", "x"], ["projections", "status"]):
        assert build_parser(settings).parse_args(argv).db == "postgresql://u@h/db"
    args = build_parser(settings).parse_args(["token", "list", "--db", "sqlite:///x.db"])
    assert args.db == "sqlite:///x.db"


def test_the_read_cache_size_comes_from_the_environment() -> None:
    assert Settings.from_env({}).read_cache_rows == DEFAULT_READ_CACHE_ROWS > 0
    assert Settings.from_env({"STATEMENTS_READ_CACHE_ROWS": "0"}).read_cache_rows == 0
    assert Settings.from_env({"STATEMENTS_READ_CACHE_ROWS": " 500 "}).read_cache_rows == 500
    for bad in ("-1", "lots", "1.5"):
        with pytest.raises(ValueError, match="STATEMENTS_READ_CACHE_ROWS"):
            Settings.from_env({"STATEMENTS_READ_CACHE_ROWS": bad})


def test_a_bad_setting_is_a_clear_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("STATEMENTS_CORS_ORIGINS", "https://app.example.com/app")
    assert main(["serve"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(
        "statements: error: STATEMENTS_CORS_ORIGINS: 'https://app.example.com/app'"
    )


def test_an_unsupported_url_is_a_clear_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["init", "--db", "mysql://h/db"]) == 2
    assert "unsupported database" in capsys.readouterr().err


def test_import_verify_export_restore(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = f"sqlite:///{tmp_path / 'one.db'}"
    assert main(["import", "--db", db, str(SEED)]) == 0
    assert "1 published" in capsys.readouterr().out
    assert main(["import", "--db", db, str(SEED)]) == 0
    assert "0 events written" in capsys.readouterr().out
    assert main(["verify", "--db", db]) == 0
    head = capsys.readouterr().out.split("head ")[-1].strip()
    export = tmp_path / "log.jsonl.gz"
    assert main(["events", "export", "--db", db, "--out", str(export)]) == 0
    restored = f"sqlite:///{tmp_path / 'two.db'}"
    assert main(["events", "import", "--db", restored, str(export)]) == 0
    capsys.readouterr()
    # The restore rebuilt the read models: nothing lags behind the restored head.
    assert main(["projections", "status", "--db", restored]) == 0
    status = capsys.readouterr().out
    assert "active" in status and "new" not in status
    assert main(["verify", "--db", restored, "--expect-head", head]) == 0
    assert "chain sound" in capsys.readouterr().out
    assert main(["events", "import", "--db", restored, str(export)]) == 1
    assert "nothing was written" in capsys.readouterr().err


def test_a_broken_page_fails_alone(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"\x00\xff not a page")
    db = f"sqlite:///{tmp_path / 'one.db'}"
    assert main(["import", "--db", db, str(bad), str(SEED)]) == 1
    captured = capsys.readouterr()
    assert str(bad) in captured.err
    assert "1 published" in captured.out


def test_serve_runs_uvicorn_on_asyncios_loop_unless_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    import uvicorn

    calls: list[dict[str, object]] = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **options: calls.append(options))
    monkeypatch.setenv("STATEMENTS_DATABASE_URL", "sqlite:///x.db")
    monkeypatch.setenv("STATEMENTS_PRODUCTION", "")
    assert main(["serve", "--port", "8123"]) == 0
    assert main(["serve", "--loop", "uvloop"]) == 0
    assert [(c["loop"], c["port"]) for c in calls] == [("asyncio", 8123), ("uvloop", 8000)]


def test_one_size_cap_for_http_bodies_and_websocket_messages(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert Settings.from_env({}).max_request_bytes == DEFAULT_MAX_REQUEST_BYTES == 1_000_000
    env = {"STATEMENTS_MAX_REQUEST_BYTES": "65536"}
    assert Settings.from_env(env).max_request_bytes == 65_536
    for bad in ("0", "-5", "1MB"):
        with pytest.raises(ValueError, match="MAX_REQUEST_BYTES must be a whole number >= 1"):
            Settings.from_env({"STATEMENTS_MAX_REQUEST_BYTES": bad})

    import uvicorn

    calls: list[dict[str, object]] = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **options: calls.append(options))
    # serve sets these for its workers: monkeypatched, so that they are restored.
    monkeypatch.setenv("STATEMENTS_DATABASE_URL", "sqlite:///x.db")
    monkeypatch.setenv("STATEMENTS_PRODUCTION", "")
    monkeypatch.setenv("STATEMENTS_MAX_REQUEST_BYTES", "65536")
    assert main(["serve"]) == 0
    # uvicorn refuses a larger frame from its header; compressed frames would hide their size.
    assert calls[0]["ws_max_size"] == 65_536
    assert calls[0]["ws_per_message_deflate"] is False
