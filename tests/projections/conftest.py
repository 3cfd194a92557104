"""Fixtures for the read-model tests: an event log, a read-model engine, and a log builder."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

import eventstore.memory
from domain import events as E
from domain.streams import statement_stream, views_stream
from eventstore import EventStore
from eventstore.memory import MemoryEventStore
from eventstore.projection_runner import ProjectionRunner
from eventstore.rebuild import rebuild
from eventstore.records import datetime_to_us
from eventstore.urls import create_engine
from projections import all_projections
from projections.read_models import ReadModels
from projections.registry import event_registry

MSK = timezone(timedelta(hours=3))
LAVROV = E.MinisterRef("sergey-lavrov", "Sergey Lavrov", "Minister of Foreign Affairs")
RYABKOV = E.MinisterRef("sergey-ryabkov", "Sergey Ryabkov", "Deputy Minister of Foreign Affairs")
ZAKHAROVA = E.MinisterRef("maria-zakharova", "Maria Zakharova", "Spokeswoman")
META = {"actor": "test", "correlation_id": "c-1", "causation_id": None}
REGISTRY = event_registry()

# Read models live in SQLite or PostgreSQL only; the log itself may be in memory.
READ_MODEL_BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]


@pytest.fixture(params=READ_MODEL_BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    """Overrides the root fixture: the read-model tests run on SQLite and PostgreSQL."""
    return str(request.param)


@pytest.fixture
async def engine(database: tuple[str, str]) -> AsyncIterator[AsyncEngine]:
    url, schema = database
    engine = create_engine(url, schema=schema or None)
    yield engine
    await engine.dispose()


@pytest.fixture
def models(engine: AsyncEngine) -> ReadModels:
    return ReadModels(engine)


class Clock:
    """Sets the memory store's recorded_at, so that views land on chosen days."""

    def __init__(self) -> None:
        self.now = datetime(2020, 7, 20, 12, 0, tzinfo=UTC)

    def __call__(self) -> int:
        return datetime_to_us(self.now)


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Iterator[Clock]:
    value = Clock()
    monkeypatch.setattr(eventstore.memory, "now_us", value)
    yield value


@pytest.fixture
def store(clock: Clock) -> MemoryEventStore:
    """Overrides the root fixture: the log is in memory, with a settable clock."""
    return MemoryEventStore()


def new_id() -> str:
    return str(uuid.uuid4())


@dataclass
class Log:
    """Appends domain events to the streams the domain would use."""

    store: EventStore
    published: dict[str, E.StatementPublished] = field(default_factory=dict)

    async def append(self, stream: str, *events: object) -> int:
        result = await self.store.append(stream, [REGISTRY.new_event(e, META) for e in events])
        return result.position

    async def publish(
        self,
        statement_id: str | None = None,
        *,
        title: str = "Comment on the talks",
        kind: str = "comment",
        minister: E.MinisterRef = LAVROV,
        published_at: datetime = datetime(2020, 7, 10, 12, 0, tzinfo=MSK),
        occurred_on: date | None = None,
        paragraphs: tuple[str, ...] = ("First paragraph.", "Second paragraph."),
        location: str | None = "Moscow",
        slug: str | None = None,
        language: str = "en",
        source_url: str | None = "https://example.org/s",
    ) -> str:
        statement_id = statement_id or new_id()
        event = E.StatementPublished(
            statement_id=statement_id,
            slug=slug or f"s-{statement_id[:8]}",
            title=title,
            kind=kind,
            minister=minister,
            location=location,
            occurred_on=occurred_on or published_at.date(),
            published_at=published_at,
            paragraphs=paragraphs,
            language=language,
            source_url=source_url,
        )
        self.published[statement_id] = event
        await self.append(statement_stream(statement_id), event)
        return statement_id

    async def revise(self, statement_id: str, **changes: Any) -> int:
        return await self.append(
            statement_stream(statement_id),
            E.StatementRevised(statement_id=statement_id, reason="correction", **changes),
        )

    async def withdraw(self, statement_id: str) -> int:
        return await self.append(
            statement_stream(statement_id),
            E.StatementWithdrawn(statement_id=statement_id, reason="duplicate"),
        )

    async def tag(self, statement_id: str, *names: str) -> int:
        return await self.append(
            statement_stream(statement_id),
            *(
                E.Tagged(statement_id=statement_id, topic_slug=slugify(n), topic_name=n)
                for n in names
            ),
        )

    async def untag(self, statement_id: str, slug: str) -> int:
        return await self.append(
            statement_stream(statement_id), E.Untagged(statement_id=statement_id, topic_slug=slug)
        )

    async def link(self, statement_id: str, related_id: str) -> int:
        return await self.append(
            statement_stream(statement_id),
            E.LinkedRelated(statement_id=statement_id, related_id=related_id),
        )

    async def unlink(self, statement_id: str, related_id: str) -> int:
        return await self.append(
            statement_stream(statement_id),
            E.UnlinkedRelated(statement_id=statement_id, related_id=related_id),
        )

    async def view(self, statement_id: str, times: int = 1) -> int:
        return await self.append(
            views_stream(statement_id), *(E.Viewed(statement_id=statement_id) for _ in range(times))
        )

    async def import_views(self, statement_id: str, count: int, source: str = "old-site") -> int:
        return await self.append(
            views_stream(statement_id),
            E.ViewsImported(statement_id=statement_id, count=count, source=source),
        )


def slugify(name: str) -> str:
    return "-".join(name.lower().split())


@pytest.fixture
def log(store: MemoryEventStore) -> Log:
    return Log(store)


async def catch_up(store: EventStore, engine: AsyncEngine, batch_size: int = 500) -> None:
    """Run every projection live until it has processed the whole log."""
    runner = ProjectionRunner(store, engine, all_projections(), batch_size=batch_size)
    async with runner:
        head = await store.head_position()
        assert await runner.wait_for(head, timeout=30), await runner.status()


async def rebuild_all(store: EventStore, engine: AsyncEngine, batch_size: int = 5000) -> None:
    for projection in all_projections():
        await rebuild(store, engine, projection, batch_size=batch_size)


Project = Callable[..., Awaitable[None]]


@pytest.fixture
async def project(store: MemoryEventStore, engine: AsyncEngine) -> Project:
    """Bring the read models up to the head of the log (a fresh runner each call)."""

    async def run(batch_size: int = 500) -> None:
        await catch_up(store, engine, batch_size)

    return run


async def table_contents(engine: AsyncEngine) -> dict[str, list[tuple[Any, ...]]]:
    """Every read-model table's rows, sorted, for comparing two builds of the models."""
    contents: dict[str, list[tuple[Any, ...]]] = {}
    async with engine.connect() as conn:
        for projection in all_projections():
            for table in projection.tables:
                if conn.dialect.name == "sqlite" and table == "search":
                    query = f'SELECT rowid, statement_id, title, body FROM "{table}"'
                elif table == "search":
                    query = f'SELECT statement_id, document::text, length FROM "{table}"'
                else:
                    query = f'SELECT * FROM "{table}"'
                rows = (await conn.execute(sa.text(query))).all()
                contents[table] = sorted((tuple(r) for r in rows), key=repr)
    return contents
