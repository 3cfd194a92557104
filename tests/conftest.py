"""Shared fixtures: event stores for every backend, and throwaway PostgreSQL databases."""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest
from sqlalchemy.engine import make_url

from eventstore import EventStore
from eventstore.memory import MemoryEventStore
from eventstore.postgres import PostgresEventStore
from eventstore.sqlite import SQLiteEventStore

PG_ENV = "STATEMENTS_TEST_DATABASE_URL"
SEEDS = Path(__file__).resolve().parents[1].parent / "shared" / "seeds"


def _plain_dsn(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def run_pg(url: str, statement: str) -> None:
    """Run one statement on its own connection, from sync code, even under a running loop."""

    async def execute() -> None:
        conn = await asyncpg.connect(_plain_dsn(url))
        try:
            await conn.execute(statement)
        finally:
            await conn.close()

    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, execute()).result()


@pytest.fixture(scope="session")
def pg_database() -> Iterator[str]:
    """A database of its own for this test run, dropped at the end; its URL."""
    url = os.environ.get(PG_ENV)
    if not url:
        pytest.skip(f"{PG_ENV} is not set: PostgreSQL tests skipped")
    name = f"statements_test_{uuid.uuid4().hex[:12]}"
    run_pg(url, f'CREATE DATABASE "{name}"')
    try:
        yield make_url(url).set(database=name).render_as_string(hide_password=False)
    finally:
        run_pg(url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def pg_schema(pg_database: str) -> tuple[str, str]:
    """A fresh schema in the run's database: (url, schema); the database is dropped at the end."""
    schema = f"t_{uuid.uuid4().hex[:12]}"
    run_pg(pg_database, f'CREATE SCHEMA "{schema}"')
    return pg_database, schema


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'events.db'}"


BACKENDS = ["memory", "sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def database(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, str]:
    """(url, schema) of a fresh database of the parametrized backend."""
    if backend == "postgresql":
        url, schema = request.getfixturevalue("pg_schema")
        return url, schema
    if backend == "sqlite":
        return f"sqlite:///{tmp_path / 'events.db'}", ""
    return "memory://", ""


@pytest.fixture
async def store_factory(backend: str, database: tuple[str, str]) -> AsyncIterator[object]:
    """Makes stores of the parametrized backend that share one database (like two processes)."""
    made: list[EventStore] = []
    shared: dict[str, object] = {}
    url, schema = database

    async def make(**options: object) -> EventStore:
        store: EventStore
        if backend == "memory":
            if "memory" not in shared:
                shared["memory"] = MemoryEventStore(**options)  # type: ignore[arg-type]
                store = shared["memory"]  # type: ignore[assignment]
            else:
                store = shared["memory"]  # type: ignore[assignment]
                return store
        elif backend == "sqlite":
            store = SQLiteEventStore(url, **options)  # type: ignore[arg-type]
        else:
            store = PostgresEventStore(url, schema=schema, **options)  # type: ignore[arg-type]
        await store.setup()
        made.append(store)
        return store

    yield make
    for store in made:
        await store.close()


@pytest.fixture
async def store(store_factory: object) -> EventStore:
    return await store_factory()  # type: ignore[operator, no-any-return]


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Under CI a skipped PostgreSQL or multi-host test is a failure: the skips exist only for
    bare machines (no server, no root for network namespaces)."""
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is None:
        return
    if os.environ.get("STATEMENTS_REQUIRE_NETNS"):
        # Only skips for want of namespaces count: a multi-host test may also skip for want of
        # node, like the other graphql-ws tests.
        skipped_hosts = [
            r
            for r in reporter.stats.get("skipped", [])
            if "multihost" in getattr(r, "keywords", {})
            and "network namespaces" in str(getattr(r, "longrepr", ""))
        ]
        if skipped_hosts:
            reporter.write_line(
                f"ERROR: {len(skipped_hosts)} multi-host test(s) skipped but "
                "STATEMENTS_REQUIRE_NETNS is set",
                red=True,
            )
            session.exitstatus = 1
    if not os.environ.get("STATEMENTS_REQUIRE_POSTGRES"):
        return
    skipped = [
        r
        for r in reporter.stats.get("skipped", [])
        if "postgres" in getattr(r, "keywords", {}) or PG_ENV in str(getattr(r, "longrepr", ""))
    ]
    if skipped:
        reporter.write_line(
            f"ERROR: {len(skipped)} PostgreSQL test(s) skipped but STATEMENTS_REQUIRE_POSTGRES "
            "is set",
            red=True,
        )
        session.exitstatus = 1
