"""Helpers of the live tests: a uvicorn subprocess running tests.graphql_api.live_app, or a
real ``statements serve``; tokens, and GraphQL calls over HTTP and graphql-transport-ws."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from eventstore.urls import create_engine
from graphql_api.security.auth import create_token, setup_tokens

ROOT = Path(__file__).resolve().parents[2]
TRANSPORT_WS = "graphql-transport-ws"

PUBLISH = """mutation($input: PublishStatementInput!) {
  publishStatement(input: $input) { statementId position } }"""
RECORD_VIEW = """mutation($id: ID!) { recordView(input: {statementId: $id}) { position } }"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Server:
    url: str
    process: subprocess.Popen[bytes]
    log: Path

    @property
    def ws_url(self) -> str:
        return self.url.replace("http://", "ws://") + "/graphql"


@dataclass
class Tokens:
    editor: str
    auditor: str


def make_tokens(database_url: str, schema: str | None = None) -> Tokens:
    async def make() -> Tokens:
        engine = create_engine(database_url, schema=schema)
        try:
            await setup_tokens(engine)
            editor, _ = await create_token(engine, "editor", f"ed-{os.getpid()}-{time.time_ns()}")
            auditor, _ = await create_token(engine, "auditor", f"au-{os.getpid()}-{time.time_ns()}")
            return Tokens(editor, auditor)
        finally:
            await engine.dispose()

    return asyncio.run(make())


@contextlib.contextmanager
def live_server(
    database_url: str,
    log_dir: Path,
    *,
    schema: str | None = None,
    env: Mapping[str, str] | None = None,
    factory: str = "tests.graphql_api.live_app:app_from_env",
    ready_path: str = "/debug/live",
) -> Iterator[Server]:
    """A uvicorn subprocess serving ``factory``, once ``ready_path`` answers 200.

    The real app is ``factory="graphql_api.app:app_from_env", ready_path="/readyz"``.
    """
    port = free_port()
    log = log_dir / f"uvicorn-{port}.log"
    environ = {
        **os.environ,
        "STATEMENTS_DATABASE_URL": database_url,
        "PYTHONPATH": str(ROOT),
        **({"STATEMENTS_DATABASE_SCHEMA": schema} if schema else {}),
        **(env or {}),
    }
    with log.open("wb") as out:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "--factory",
                factory,
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--log-level",
                "warning",
            ],
            cwd=ROOT,
            env=environ,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    server = Server(f"http://127.0.0.1:{port}", process, log)
    try:
        # Generous: start-up is slow on a busy machine; the bound only catches "never".
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"uvicorn exited: {log.read_text()}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(server.url + ready_path, timeout=1).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError(f"uvicorn did not start: {log.read_text()}")
            time.sleep(0.1)
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextlib.contextmanager
def statements_serve(
    database_url: str,
    log_dir: Path,
    *,
    env: Mapping[str, str] | None = None,
    workers: int = 1,
) -> Iterator[Server]:
    """``statements serve`` in a process of its own (one worker: the server is that process;
    more: it is their supervisor)."""
    port = free_port()
    log = log_dir / f"serve-{port}.log"
    environ = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    command = [sys.executable, "-m", "graphql_api.cli", "serve", "--db", database_url]
    if workers != 1:
        command += ["--workers", str(workers)]
    with log.open("wb") as out:
        process = subprocess.Popen(
            [*command, "--host", "127.0.0.1", "--port", str(port)],
            cwd=ROOT,
            env=environ,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    server = Server(f"http://127.0.0.1:{port}", process, log)
    try:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"statements serve exited: {log.read_text()}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(server.url + "/readyz", timeout=1).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError(f"statements serve did not get ready: {log.read_text()}")
            time.sleep(0.1)
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def memory_kib(pid: int) -> dict[str, int]:
    """The process's resident memory now (VmRSS) and at its peak (VmHWM), in KiB."""
    fields: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            fields[name] = int(value.split()[0])
    return fields


async def gql(
    client: httpx.AsyncClient,
    url: str,
    query: str,
    variables: dict[str, Any] | None = None,
    token: str | None = None,
) -> dict[str, Any]:
    headers = {"authorization": f"Bearer {token}"} if token else {}
    response = await client.post(
        url + "/graphql", json={"query": query, "variables": variables or {}}, headers=headers
    )
    body: dict[str, Any] = response.json()
    assert "errors" not in body, body
    return body


async def publish(client: httpx.AsyncClient, url: str, token: str, title: str) -> str:
    body = await gql(
        client,
        url,
        PUBLISH,
        {
            "input": {
                "title": title,
                "body": "First paragraph.\n\nSecond paragraph.",
                "kind": "speech",
                "occurredOn": "2024-05-01",
                "publishedAt": "2024-05-01T10:00:00+03:00",
                "ministerName": "Test Minister",
            }
        },
        token,
    )
    return str(body["data"]["publishStatement"]["statementId"])


async def record_view(client: httpx.AsyncClient, url: str, statement_id: str) -> int:
    body = await gql(client, url, RECORD_VIEW, {"id": statement_id})
    return int(body["data"]["recordView"]["position"])


@dataclass
class WsClient:
    """A bare graphql-transport-ws client over ``websockets``."""

    ws: Any
    received: list[dict[str, Any]] = field(default_factory=list)

    async def send(self, message: Mapping[str, Any]) -> None:
        await self.ws.send(json.dumps(message))

    async def recv(self, timeout: float = 5.0) -> dict[str, Any]:
        while True:
            message: dict[str, Any] = json.loads(await asyncio.wait_for(self.ws.recv(), timeout))
            if message.get("type") == "ping":
                await self.send({"type": "pong"})
                continue
            return message

    async def init(self, payload: Mapping[str, Any] | None = None) -> dict[str, Any]:
        await self.send({"type": "connection_init", "payload": dict(payload or {})})
        return await self.recv()

    async def subscribe(
        self, id: str, query: str, variables: Mapping[str, Any] | None = None
    ) -> None:
        await self.send(
            {
                "id": id,
                "type": "subscribe",
                "payload": {"query": query, "variables": dict(variables or {})},
            }
        )
