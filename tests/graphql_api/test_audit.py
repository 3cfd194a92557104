"""graphql-http's auditServer against the live endpoint under uvicorn: every audit must be ok.

Needs Node (skipped, with the reason, when ``node`` is missing); the npm package is installed
into tests/graphql_api/audit/node_modules from its lock file on first use.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn

from eventstore.memory import MemoryEventStore
from tests.graphql_api.support import make_app, make_handlers

AUDIT_DIR = Path(__file__).parent / "audit"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def node() -> str:
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed: the graphql-http audit needs Node.js")
    if not (AUDIT_DIR / "node_modules" / "graphql-http").is_dir():
        npm = shutil.which("npm")
        assert npm is not None, "node is installed but npm is not: cannot install graphql-http"
        subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"],
            cwd=AUDIT_DIR,
            check=True,
            timeout=300,
        )
    return node


@pytest.fixture(scope="module")
def server_url() -> Iterator[str]:
    app = make_app(make_handlers(MemoryEventStore()))
    port = _free_port()
    config = uvicorn.Config(
        app.app, host="127.0.0.1", port=port, log_level="warning", lifespan="off", ws="none"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}/graphql"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def test_every_graphql_http_audit_is_ok(node: str, server_url: str) -> None:
    completed = subprocess.run(
        [node, str(AUDIT_DIR / "audit.mjs"), server_url],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    results = json.loads(completed.stdout)
    not_ok = [r for r in results if r["status"] != "ok"]
    assert len(results) >= 61
    assert not_ok == [], json.dumps(not_ok, indent=2)
