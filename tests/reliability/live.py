"""A live `statements serve` process, the `statements` CLI, and read-model dumps for comparing."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import inspect, text

from eventstore.urls import create_engine

BIN = Path(sys.executable).parent
STATEMENTS = str(BIN / "statements")

#: Tables that are not read models, and FTS5 shadow tables whose layout depends on history.
NOT_READ_MODELS = frozenset(
    {
        "events",
        "eventstore_schema",
        "eventstore_checkpoints",
        "merkle_nodes",
        "tokens",
        "projection_checkpoints",
        "search_data",
        "search_idx",
        "search_docsize",
        "search_config",
        "search_content",
    }
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def cli_env(schema: str | None = None, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("STATEMENTS_")}
    if schema:
        env["STATEMENTS_DATABASE_SCHEMA"] = schema
    env.update(extra or {})
    return env


def cli(
    *args: str, schema: str | None = None, check: bool = True, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """Run ``statements ARGS``; with check, fail the test with its output on a non-zero exit."""
    done = subprocess.run(
        [STATEMENTS, *args],
        capture_output=True,
        text=True,
        env=cli_env(schema),
        timeout=timeout,
        check=False,
    )
    if check and done.returncode != 0:
        raise AssertionError(
            f"statements {' '.join(args)} exited {done.returncode}\n{done.stdout}\n{done.stderr}"
        )
    return done


class LiveServer:
    """`statements serve` in a child process, which tests may SIGKILL and start again."""

    def __init__(
        self,
        db: str,
        log_path: Path,
        *,
        schema: str | None = None,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.db = db
        self.schema = schema
        self.env = dict(env or {})
        self.log_path = log_path
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 30.0) -> None:
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [STATEMENTS, "serve", "--db", self.db, "--port", str(self.port)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=cli_env(self.schema, self.env),
        )
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"server exited {self.process.returncode}: {self.log()}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return
            time.sleep(0.05)
        raise AssertionError(f"server did not start in {timeout} s: {self.log()}")

    def kill(self) -> None:
        """SIGKILL: no shutdown handler runs, whatever was in flight is cut."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)
        self.process = None

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        self.process = None

    def rss_kib(self) -> int:
        assert self.process is not None
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise AssertionError("no VmRSS")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]

    def wait_caught_up(self, timeout: float = 60.0) -> dict[str, Any]:
        """Wait until every projection is at the head (lag 0) and none failed."""
        deadline = time.monotonic() + timeout
        body: dict[str, Any] = {}
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.HTTPError, ValueError):
                body = httpx.get(f"{self.url}/readyz", timeout=5).json()
                projections = body.get("projections", {})
                if projections and all(
                    p["lag_events"] == 0 and p["status"] == "active" for p in projections.values()
                ):
                    return body
            time.sleep(0.1)
        raise AssertionError(f"projections did not catch up: {body}")

    @contextlib.contextmanager
    def running(self) -> Iterator[LiveServer]:
        self.start()
        try:
            yield self
        finally:
            self.stop()


def gql(
    client: httpx.Client,
    query: str,
    variables: Mapping[str, Any] | None = None,
    token: str | None = None,
) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return client.post("/graphql", json={"query": query, "variables": variables}, headers=headers)


def dump_read_models(db: str, schema: str | None = None) -> dict[str, list[tuple[Any, ...]]]:
    """Every read-model table's rows, sorted; checkpoints as (name, position, status)."""

    async def dump() -> dict[str, list[tuple[Any, ...]]]:
        engine = create_engine(db, schema=schema)
        try:
            async with engine.connect() as conn:
                names: list[str] = await conn.run_sync(
                    lambda sync: inspect(sync).get_table_names(schema=schema)
                )
                out: dict[str, list[tuple[Any, ...]]] = {}
                for name in sorted(names):
                    if name in NOT_READ_MODELS or name.startswith("_") or "rebuild" in name:
                        continue
                    rows = (await conn.execute(text(f'SELECT * FROM "{name}"'))).all()
                    out[name] = sorted((tuple(r) for r in rows), key=repr)
                rows = (
                    await conn.execute(
                        text("SELECT name, position, status FROM projection_checkpoints")
                    )
                ).all()
                out["projection_checkpoints"] = sorted(tuple(r) for r in rows)
                return out
        finally:
            await engine.dispose()

    return asyncio.run(dump())


def event_rows(db: str, schema: str | None = None) -> list[tuple[int, str, str, str]]:
    """(position, stream_id, type, data) of every event in the log."""

    async def read() -> list[tuple[int, str, str, str]]:
        engine = create_engine(db, schema=schema)
        try:
            async with engine.connect() as conn:
                rows = (
                    await conn.execute(
                        text("SELECT position, stream_id, type, data FROM events ORDER BY position")
                    )
                ).all()
                return [(int(r[0]), str(r[1]), str(r[2]), str(r[3])) for r in rows]
        finally:
            await engine.dispose()

    return asyncio.run(read())
