"""Schemathesis in GraphQL mode against a live server: no 5xx, no unmasked internal error."""

from __future__ import annotations

import os
import re
import subprocess
from collections import Counter
from pathlib import Path

import pytest

from tests.reliability.live import BIN, LiveServer, cli, cli_env

EXAMPLES = os.environ.get("STATEMENTS_ST_EXAMPLES", "60")  # per operation: ~1,500 cases


@pytest.mark.skipif(not (BIN / "st").exists(), reason="schemathesis is not installed (dev extra)")
def test_schemathesis_finds_no_server_error(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'st.db'}"
    cli("demo", "--db", db, "--statements", "30", "--views", "300")
    token = cli("token", "create", "--db", db, "--role", "editor", "--name", "st").stdout.strip()
    checked = tmp_path / "checked.log"
    server = LiveServer(db, tmp_path / "server.log")
    with server.running():
        server.wait_caught_up()
        done = subprocess.run(
            [
                str(BIN / "st"),
                "run",
                f"{server.url}/graphql",
                "--mode",
                "all",
                "-n",
                EXAMPLES,
                "-c",
                "no_5xx_and_no_unmasked_error",
                "-H",
                f"Authorization: Bearer {token}",
                "--generation-deterministic",
                "--no-color",
            ],
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
            env=cli_env(
                extra={
                    "SCHEMATHESIS_HOOKS": "tests.reliability.st_hooks",
                    "ST_CHECKED_LOG": str(checked),
                    "PYTHONPATH": str(Path(__file__).resolve().parents[2]),
                }
            ),
        )
        server_log = server.log()
    summary = done.stdout[-3000:]
    assert done.returncode == 0, summary + done.stderr[-2000:]
    generated = re.search(r"(\d+) generated, (\d+) passed", done.stdout)
    assert generated is not None, summary
    assert int(generated.group(1)) >= 1000, summary
    statuses = Counter(checked.read_text().split())
    assert sum(statuses.values()) >= 1000, statuses
    assert not any(status.startswith("5") for status in statuses)
    assert "Traceback" not in server_log
    print(f"schemathesis: {generated.group(0)}; HTTP statuses {dict(statuses)}")
