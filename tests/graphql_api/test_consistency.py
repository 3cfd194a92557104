"""Read-your-writes, X-Min-Position and the bounded wait, through create_app on both backends."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette

from domain.commands import CommandMetadata, PublishStatement
from domain.events import MinisterRef
from eventstore import NewEvent
from eventstore.urls import create_engine
from graphql_api.app import AppState, create_app
from graphql_api.security.auth import create_token
from graphql_api.settings import Settings
from tests.graphql_api.consistency_support import (
    PUBLISH,
    RECORD_VIEW,
    gql,
    ok,
    publish,
    read_your_writes,
    statement_input,
    wait_ready,
)

BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
HELLO = "{ statements(first: 1) { totalCount } }"


async def wait_until_reached(client: httpx.AsyncClient, position: int) -> None:
    """Ask with X-Min-Position until the read models show ``position``."""
    deadline = time.monotonic() + 30
    while True:
        response = await client.post(
            "/graphql", json={"query": HELLO}, headers={"x-min-position": str(position)}
        )
        if "errors" not in response.json():
            return
        assert time.monotonic() < deadline, response.text


@pytest.fixture(params=BACKENDS)
def db(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, str | None]:
    if request.param == "postgresql":
        url, schema = request.getfixturevalue("pg_schema")
        return url, schema
    return f"sqlite:///{tmp_path / 'app.db'}", None


@dataclass
class Running:
    app: Starlette
    client: httpx.AsyncClient
    editor: str
    ingest: str

    @property
    def state(self) -> AppState:
        state: AppState = self.app.state.statements
        return state


@contextlib.asynccontextmanager
async def running(db: tuple[str, str | None], **settings: Any) -> AsyncIterator[Running]:
    url, schema = db
    app = create_app(Settings(database_url=url, database_schema=schema, **settings))
    transport = httpx.ASGITransport(app=app)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://test", timeout=30) as client,
    ):
        await wait_ready(client)
        engine = create_engine(url, schema=schema)
        try:
            editor, _ = await create_token(engine, "editor", "desk")
            ingest, _ = await create_token(engine, "ingest", "site")
        finally:
            await engine.dispose()
        yield Running(app, client, editor, ingest)


async def test_every_write_shows_in_the_next_read(db: tuple[str, str | None]) -> None:
    async with running(db) as it:
        missed = await read_your_writes(it.client, it.client, editor=it.editor, ingest=it.ingest)
        assert missed == []


async def test_a_stopped_projection_ends_the_wait_with_a_coded_error_in_time(
    db: tuple[str, str | None],
) -> None:
    async with running(db, position_wait_seconds=0.5) as it:
        body = await gql(
            it.client,
            PUBLISH,
            {"input": statement_input("Viewed while stopped", 3)},
            token=it.editor,
        )
        statement = str(body["data"]["publishStatement"]["statementId"])
        # On a loaded machine the half-second bound may pass before the projections catch up:
        # the setup then waits for them, since the stop must find them at the publish.
        await wait_until_reached(it.client, body["data"]["publishStatement"]["position"])
        assert it.state.runner is not None
        await it.state.runner.stop()
        started = time.monotonic()
        body = await gql(it.client, RECORD_VIEW, {"id": statement}, token=it.ingest)
        took = time.monotonic() - started
        assert 0.45 <= took < 3
        # The view is durable: its payload comes with the error.
        payload = body["data"]["recordView"]
        assert payload["position"] > 0 and payload["viewCount"] is None
        (error,) = body["errors"]
        assert error["path"] == ["recordView"]
        assert error["extensions"]["code"] == "POSITION_NOT_REACHED"
        assert error["extensions"]["retryable"] is True
        assert error["extensions"]["position"] == payload["position"]
        assert error["extensions"]["reached"] < payload["position"]

        # A read at or after that position is refused the same way, and nothing runs.
        for accept, status in (
            ("application/json", 200),
            ("application/graphql-response+json", 503),
        ):
            response = await it.client.post(
                "/graphql",
                json={"query": HELLO},
                headers={"x-min-position": str(payload["position"]), "accept": accept},
            )
            assert response.status_code == status
            assert response.headers["retry-after"] == "1"
            refused = response.json()
            assert "data" not in refused
            assert [e["extensions"]["code"] for e in refused["errors"]] == ["POSITION_NOT_REACHED"]
            assert refused["errors"][0]["extensions"]["position"] == payload["position"]

        # Once the projections run again, the same read goes through.
        await it.state.runner.start()
        for _ in range(20):
            response = await it.client.get(
                "/graphql",
                params={"query": HELLO},
                headers={"x-min-position": str(payload["position"])},
            )
            if "data" in response.json():
                break
        assert response.json() == {"data": {"statements": {"totalCount": 1}}}


async def test_a_failed_projection_ends_the_wait_at_once(db: tuple[str, str | None]) -> None:
    async with running(db, position_wait_seconds=30) as it:
        statement = await publish(it.client, it.editor, "Viewed after a poisoned view", 4)
        services = it.state.ready()
        # A view the views projection cannot apply stops it on that event.
        await services.store.append(
            f"statement-views-{statement}", [NewEvent("Viewed", {"not": "a view"})]
        )
        started = time.monotonic()
        body = await gql(it.client, RECORD_VIEW, {"id": statement}, token=it.ingest)
        assert time.monotonic() - started < 10
        assert body["data"]["recordView"]["position"] > 0
        assert [e["extensions"]["code"] for e in body["errors"]] == ["POSITION_NOT_REACHED"]
        assert "retry" in body["errors"][0]["message"]
        # Edits do not wait for the views projection, so they go through at once.
        tagged = await gql(
            it.client,
            'mutation($id: ID!) { tagStatement(input: {statementId: $id, topics: ["Ok"]}) '
            "{ position statement { topics { slug } } } }",
            {"id": statement},
            token=it.editor,
        )
        assert ok(tagged)["tagStatement"]["statement"]["topics"] == [{"slug": "ok"}]


async def test_reads_at_or_after_a_position(db: tuple[str, str | None]) -> None:
    async with running(db, position_wait_seconds=0.5) as it:
        head = await it.state.ready().store.head_position()
        for method in ("GET", "POST"):
            request: dict[str, Any] = (
                {"params": {"query": HELLO}} if method == "GET" else {"json": {"query": HELLO}}
            )
            response = await it.client.request(
                method, "/graphql", headers={"x-min-position": str(head)}, **request
            )
            assert response.json() == {"data": {"statements": {"totalCount": 0}}}

            started = time.monotonic()
            response = await it.client.request(
                method, "/graphql", headers={"x-min-position": str(head + 1000)}, **request
            )
            assert 0.45 <= time.monotonic() - started < 3
            (error,) = response.json()["errors"]
            assert error["extensions"] == {
                "code": "POSITION_NOT_REACHED",
                "retryable": True,
                "position": head + 1000,
                "reached": head,
            }
        for bad in ("-1", "abc", "1.5", "9" * 30):
            response = await it.client.post(
                "/graphql", json={"query": HELLO}, headers={"x-min-position": bad}
            )
            assert response.status_code == 400
            (error,) = response.json()["errors"]
            assert error["extensions"]["code"] == "BAD_REQUEST"
            assert "X-Min-Position" in error["message"]


async def test_a_write_appended_by_another_writer_is_read_with_its_position(
    db: tuple[str, str | None],
) -> None:
    # A statement appended outside the API (an import, say) has not been waited for; asking
    # for its position makes the read wait until every read model shows it.
    async with running(db) as it:
        services = it.state.ready()
        results = []
        for i in range(5):
            writes = await services.handlers.handle(_publish_command(f"Imported {i}", i))
            assert writes.position is not None
            response = await it.client.post(
                "/graphql",
                json={"query": HELLO},
                headers={"x-min-position": str(writes.position)},
            )
            results.append(response.json()["data"]["statements"]["totalCount"])
        assert results == [1, 2, 3, 4, 5]


def _publish_command(title: str, i: int) -> PublishStatement:
    return PublishStatement(
        statement_id=str(uuid.uuid4()),
        title=title,
        kind="comment",
        minister=MinisterRef("sergey-lavrov", "Sergey Lavrov", "Minister of Foreign Affairs"),
        occurred_on=date(2018, 1, 1 + i),
        published_at=datetime(2018, 1, 1 + i, 9, tzinfo=UTC),
        paragraphs=("Imported.",),
        location=None,
        source_url=None,
        slug=None,
        meta=CommandMetadata(actor="importer", correlation_id=f"import-{i}"),
    )


async def test_waiting_writers_share_one_watcher(db: tuple[str, str | None]) -> None:
    # Fifty concurrent views: each answers with a count that includes it, and the watcher
    # did not scan the log for them (their own events say which projection to wait for).
    async with running(db) as it:
        statement = await publish(it.client, it.editor, "Viewed by many", 5)
        watcher = it.state.watcher
        assert watcher is not None
        scans = watcher.scans
        bodies = await asyncio.gather(
            *(gql(it.client, RECORD_VIEW, {"id": statement}, token=it.ingest) for _ in range(50))
        )
        counts = sorted(ok(body)["recordView"]["viewCount"] for body in bodies)
        positions = sorted(ok(body)["recordView"]["position"] for body in bodies)
        # Each count includes its own view: a view's count is at least its rank.
        assert all(count >= rank for rank, count in enumerate(counts, start=1))
        assert counts[-1] == 50 and len(set(positions)) == 50
        assert watcher.scans == scans


async def test_a_wait_of_zero_turns_the_mutations_wait_off(db: tuple[str, str | None]) -> None:
    async with running(db, position_wait_seconds=0) as it:
        statement = await publish(it.client, it.editor, "Viewed without waiting", 6)
        body = await gql(it.client, RECORD_VIEW, {"id": statement}, token=it.ingest)
        assert "errors" not in body
        assert body["data"]["recordView"]["position"] > 0
        assert body["data"]["recordView"]["viewCount"] is None
