"""Schemathesis in GraphQL mode against a live production server, from the exported SDL:
positive and negative cases; no 5xx, no unmasked internal error, every negative case refused.

The server runs with ``STATEMENTS_PRODUCTION=1``, so introspection is off and schemathesis
reads the schema from the SDL file the test exports, as it would against a deployment.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections import Counter
from pathlib import Path

import pytest

from graphql_api.schema.api_schema import build_schema
from graphql_api.schema.query import QUERY_TYPES, Query
from graphql_api.schema.subscriptions import Subscription
from tests.reliability.live import BIN, LiveServer, cli, cli_env

EXAMPLES = os.environ.get("STATEMENTS_ST_EXAMPLES", "60")  # per operation: ~1,500 cases


def export_sdl(path: Path) -> None:
    """The schema the server serves, as SDL (what a client would get from the schema file)."""
    schema = build_schema(Query, types=QUERY_TYPES, subscription=Subscription, production=True)
    path.write_text(schema.as_str())


@pytest.mark.skipif(not (BIN / "st").exists(), reason="schemathesis is not installed (dev extra)")
def test_schemathesis_finds_no_server_error(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'st.db'}"
    cli("demo", "--db", db, "--statements", "30", "--views", "300")
    token = cli("token", "create", "--db", db, "--role", "editor", "--name", "st").stdout.strip()
    sdl = tmp_path / "schema.graphql"
    export_sdl(sdl)
    checked = tmp_path / "checked.log"
    server = LiveServer(db, tmp_path / "server.log", env={"STATEMENTS_PRODUCTION": "1"})
    with server.running():
        server.wait_caught_up()
        done = subprocess.run(
            [
                str(BIN / "st"),
                "run",
                str(sdl),
                "--url",
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
    lines = [line.split() for line in checked.read_text().splitlines()]
    statuses = Counter(status for status, _, _ in lines)
    modes = Counter(mode for _, mode, _ in lines)
    negative_answers = Counter(codes for _, mode, codes in lines if mode == "negative")
    assert sum(statuses.values()) >= 1000, statuses
    assert not any(status.startswith("5") for status in statuses)
    # Both kinds ran, negatives in earnest; each of them was refused (the hook checks it).
    assert modes["positive"] >= 500 and modes["negative"] >= 300, modes
    assert "data" not in negative_answers, negative_answers
    assert "Traceback" not in server_log
    print(
        f"schemathesis: {generated.group(0)}; HTTP statuses {dict(statuses)}; "
        f"modes {dict(modes)}; negative cases answered {dict(negative_answers)}"
    )
