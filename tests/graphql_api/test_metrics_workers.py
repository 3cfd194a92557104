"""``statements serve --workers 2``: a scrape of /metrics adds up the requests of both workers."""

from __future__ import annotations

import http.client
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from graphql_api.cli import main
from graphql_api.cli.commands import _remove_stale_metrics_dirs
from tests.graphql_api.live_support import statements_serve

_REQUESTS = re.compile(r'^graphql_requests_total\{operation="Hello",status="200"\} (\S+)$', re.M)


_HELLO = json.dumps({"query": "query Hello { __typename }"}).encode()


def _workers(supervisor: int) -> list[int]:
    """The worker processes uvicorn spawned (not multiprocessing's resource tracker)."""
    found: list[int] = []
    for task in Path(f"/proc/{supervisor}/task").iterdir():
        for child in (task / "children").read_text().split():
            if b"spawn_main" in Path(f"/proc/{child}/cmdline").read_bytes():
                found.append(int(child))
    return found


def _post_on_a_new_connection(url: str, body: bytes) -> tuple[int, bytes]:
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=10)
    try:
        connection.request("POST", "/graphql", body, {"content-type": "application/json"})
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def _metrics_dir(pid: int) -> Path:
    environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    for entry in environ:
        name, _, value = entry.partition(b"=")
        if name == b"PROMETHEUS_MULTIPROC_DIR":
            return Path(value.decode())
    raise AssertionError(f"process {pid} has no PROMETHEUS_MULTIPROC_DIR")


def test_every_scrape_counts_the_requests_of_every_worker(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'metrics.db'}"
    assert main(["init", "--db", url]) == 0
    with statements_serve(url, tmp_path, workers=2) as server:
        workers = _workers(server.process.pid)
        assert len(workers) == 2, workers
        directory = _metrics_dir(workers[0])
        assert _metrics_dir(workers[1]) == directory
        assert directory.is_dir() and directory.name.startswith("statements-metrics-")
        sent = 0
        deadline = time.monotonic() + 60
        # A new connection per request: the kernel hands each to whichever worker accepts
        # first, so both get some once both are up.
        while sent < 60 or not all((directory / f"counter_{pid}.db").exists() for pid in workers):
            status, body = _post_on_a_new_connection(server.url, _HELLO)
            assert status == 200, body
            sent += 1
            assert time.monotonic() < deadline, f"one worker got no request in {sent}"
        for _ in range(6):
            with httpx.Client(base_url=server.url, timeout=10) as client:
                text = client.get("/metrics").text
            counted = _REQUESTS.findall(text)
            assert counted and float(counted[0]) == sent, (sent, counted)
        # Stopped here, with time for both workers to finish on a busy machine: the context
        # manager's own stop kills a server that takes more than 10 s.
        server.process.terminate()
        server.process.wait(timeout=60)
    assert not directory.exists(), "the metrics directory outlived the server"


def test_serve_removes_the_metrics_directories_of_killed_servers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    finished = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        check=True,
        capture_output=True,
        text=True,
    )
    dead = tmp_path / f"statements-metrics-{finished.stdout.strip()}-abc"
    alive = tmp_path / f"statements-metrics-{os.getpid()}-def"
    other = tmp_path / "statements-metrics-notapid-ghi"
    for directory in (dead, alive, other):
        directory.mkdir()
    _remove_stale_metrics_dirs()
    assert (dead.exists(), alive.exists(), other.exists()) == (False, True, True)
