"""Two `statements serve` processes on one database: a write answered by one is seen by the next
read on the other; X-Min-Position across processes; X-Forwarded-For only from listed proxies.

On PostgreSQL each projection has one leader, in either process, so a mutation often waits for
projections run by the other one (their checkpoints reach it through NOTIFY); on SQLite both
processes run every projection and the compare-and-set keeps each event applied once.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path

import httpx
import pytest

from domain.commands import CommandMetadata, PublishStatement
from domain.events import MinisterRef
from eventstore.urls import create_engine
from graphql_api.bootstrap import open_services
from graphql_api.security.auth import create_token, setup_tokens
from graphql_api.settings import Settings
from tests.graphql_api.consistency_support import (
    RECORD_VIEW,
    gql,
    http,
    publish,
    read_your_writes,
    wait_ready,
)
from tests.reliability.live import LiveServer

BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
COUNT = "{ statements(first: 1) { totalCount } }"
#: Anonymous views: a burst of 3, then nearly nothing, so that a fourth is refused.
LIMITS = {"STATEMENTS_VIEW_RATE": "0.01", "STATEMENTS_VIEW_BURST": "3"}


@pytest.fixture(params=BACKENDS)
def db(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, str | None]:
    if request.param == "postgresql":
        url, schema = request.getfixturevalue("pg_schema")
        return url, schema
    return f"sqlite:///{tmp_path / 'live.db'}", None


@contextlib.contextmanager
def two_servers(
    db: tuple[str, str | None], tmp_path: Path
) -> Iterator[tuple[LiveServer, LiveServer]]:
    url, schema = db
    a = LiveServer(url, tmp_path / "a.log", schema=schema, env=LIMITS)
    b = LiveServer(
        url,
        tmp_path / "b.log",
        schema=schema,
        env={
            **LIMITS,
            "STATEMENTS_TRUSTED_PROXIES": "127.0.0.1",
            "STATEMENTS_POSITION_WAIT_SECONDS": "1",
        },
    )
    with a.running(), b.running():
        yield a, b


async def _tokens(db: tuple[str, str | None]) -> tuple[str, str]:
    url, schema = db
    engine = create_engine(url, schema=schema)
    try:
        await setup_tokens(engine)
        editor, _ = await create_token(engine, "editor", f"desk-{uuid.uuid4().hex[:6]}")
        ingest, _ = await create_token(engine, "ingest", f"site-{uuid.uuid4().hex[:6]}")
    finally:
        await engine.dispose()
    return editor, ingest


def test_two_processes_read_each_others_writes(db: tuple[str, str | None], tmp_path: Path) -> None:
    with two_servers(db, tmp_path) as (a, b):

        async def scenario() -> None:
            editor, ingest = await _tokens(db)
            async with http(a.url) as on_a, http(b.url) as on_b:
                await wait_ready(on_a)
                await wait_ready(on_b)
                missed = await read_your_writes(on_a, on_b, editor=editor, ingest=ingest)
                assert missed == []
                await _min_position_across_processes(db, on_b)
                await _forwarded_for(on_a, on_b, editor)

        asyncio.run(scenario())


async def _min_position_across_processes(
    db: tuple[str, str | None], on_b: httpx.AsyncClient
) -> None:
    # Statements written by a third process that waits for nothing (like an import): a read
    # on B at their position sees each of them.
    url, schema = db
    services = await open_services(Settings(database_url=url, database_schema=schema))
    try:
        before = (await gql(on_b, COUNT))["data"]["statements"]["totalCount"]
        for i in range(5):
            result = await services.handlers.handle(_publish(f"Imported {i}", i))
            body = await gql(on_b, COUNT, headers={"x-min-position": str(result.position)})
            assert body == {"data": {"statements": {"totalCount": before + 1 + i}}}
        head = await services.store.head_position()
    finally:
        await services.close()
    started = time.monotonic()
    body = await gql(on_b, COUNT, headers={"x-min-position": str(head + 1_000_000)})
    assert 0.9 <= time.monotonic() - started < 5
    assert [e["extensions"]["code"] for e in body["errors"]] == ["POSITION_NOT_REACHED"]
    assert body["errors"][0]["extensions"]["position"] == head + 1_000_000
    assert body["errors"][0]["extensions"]["reached"] >= head


async def _forwarded_for(on_a: httpx.AsyncClient, on_b: httpx.AsyncClient, editor: str) -> None:
    statement = await publish(on_a, editor, "Viewed through proxies", 28)

    async def codes(client: httpx.AsyncClient, forwarded: list[str]) -> list[str | None]:
        out: list[str | None] = []
        for address in forwarded:
            body = await gql(
                client, RECORD_VIEW, {"id": statement}, headers={"x-forwarded-for": address}
            )
            out.append(body["errors"][0]["extensions"]["code"] if "errors" in body else None)
        return out

    clients = [f"203.0.113.{i}" for i in range(1, 7)]
    # A does not list 127.0.0.1 as a proxy: the header is ignored, every view is the peer's.
    assert await codes(on_a, clients) == [None] * 3 + ["RATE_LIMITED"] * 3
    # B does: each address named by the header has its own bucket, and the header's
    # right-most address is the one the proxy vouches for.
    assert await codes(on_b, clients) == [None] * 6
    assert await codes(on_b, ["198.51.100.1, 203.0.113.9"] * 4) == [None] * 3 + ["RATE_LIMITED"]
    assert await codes(on_b, ["203.0.113.9"]) == ["RATE_LIMITED"]


def _publish(title: str, i: int) -> PublishStatement:
    return PublishStatement(
        statement_id=str(uuid.uuid4()),
        title=title,
        kind="comment",
        minister=MinisterRef("sergey-lavrov", "Sergey Lavrov", "Minister of Foreign Affairs"),
        occurred_on=date(2018, 1, 1 + i),
        published_at=datetime(2018, 1, 1 + i, 9, tzinfo=UTC),
        paragraphs=("Imported.",),
        meta=CommandMetadata(actor="importer", correlation_id=f"import-{i}"),
    )
