"""Support of the query tests (``test_query_*.py``): a log written through the command handlers,
read models caught up with it, the schema, and SQL statement counts.

The log is a MemoryEventStore (its clock can be set, for time travel); the read models live in
SQLite, or in PostgreSQL when STATEMENTS_TEST_DATABASE_URL is set (the ``backend`` parameter).
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any

import pytest
from graphql import FieldNode, OperationDefinitionNode, SelectionSetNode, parse
from graphql.language import FragmentDefinitionNode, FragmentSpreadNode, InlineFragmentNode
from sqlalchemy.ext.asyncio import AsyncEngine

import eventstore.memory
from domain import commands as C
from domain.demo import demo_commands
from domain.events import MinisterRef
from domain.handlers import StatementHandlers
from eventstore import EventRegistry
from eventstore.memory import MemoryEventStore
from eventstore.reader import on_statement
from eventstore.records import datetime_to_us
from eventstore.urls import create_engine
from graphql_api.context import Context
from graphql_api.schema.api_schema import ApiSchema, build_schema
from graphql_api.schema.query import QUERY_TYPES, Query
from graphql_api.security.auth import Principal
from graphql_api.service_layer.eventlog import StoreEventLog
from projections.read_models import ReadModels
from projections.registry import event_registry
from tests.projections.conftest import catch_up

READ_MODEL_BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
MSK = timezone(timedelta(hours=3))
LAVROV = MinisterRef("sergey-lavrov", "Sergey Lavrov", "Minister of Foreign Affairs")
ZAKHAROVA = MinisterRef("maria-zakharova", "Maria Zakharova", "Spokeswoman")
AUDITOR = Principal(token_id="t-audit", name="audit-desk", role="auditor")
EDITOR = Principal(token_id="t-edit", name="desk-editor", role="editor")

_SCHEMA: ApiSchema | None = None


def schema() -> ApiSchema:
    """The API's schema with the query layer (built once: building takes a while)."""
    global _SCHEMA
    if _SCHEMA is None:
        _SCHEMA = build_schema(Query, types=QUERY_TYPES)
    return _SCHEMA


class Clock:
    """The memory store's clock: events are recorded at ``now``, which tests move."""

    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> int:
        return datetime_to_us(self.now)


def install_clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    """Make the memory store record events at a clock the test sets."""
    value = Clock(datetime(2024, 3, 1, 9, 0, tzinfo=UTC))
    monkeypatch.setattr(eventstore.memory, "now_us", value)
    return value


class SqlCounter:
    """Counts the statements an engine and its fast reader send (:func:`on_statement`)."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.statements: list[str] = []
        on_statement(engine, self._seen)

    def _seen(self, statement: str, _params: Any) -> None:
        self.statements.append(statement)

    def reset(self) -> None:
        self.statements.clear()

    @property
    def count(self) -> int:
        return len(self.statements)


@dataclass
class Result:
    data: Any
    errors: list[dict[str, Any]]
    sql: int  # statements the read models ran for this query

    @property
    def codes(self) -> list[str | None]:
        return [(e.get("extensions") or {}).get("code") for e in self.errors]

    def ok(self) -> Any:
        assert not self.errors, self.errors
        return self.data


@dataclass
class World:
    """A log, its handlers, read models over it, and a way to query them."""

    store: MemoryEventStore
    engine: AsyncEngine
    registry: EventRegistry = field(default_factory=event_registry)
    actor: str = "desk-editor"
    correlation_id: str = "req-1"

    def __post_init__(self) -> None:
        self.handlers = StatementHandlers(StoreEventLog(self.store, self.registry))
        self.models = ReadModels(self.engine)
        self.sql = SqlCounter(self.engine)

    # -- writing -------------------------------------------------------------------------

    def meta(self) -> C.CommandMetadata:
        return C.CommandMetadata(actor=self.actor, correlation_id=self.correlation_id)

    async def run(self, command: C.Command) -> int | None:
        return (await self.handlers.handle(command)).position

    async def publish(
        self,
        title: str = "Comment on the talks",
        *,
        minister: MinisterRef = LAVROV,
        published_at: datetime = datetime(2024, 3, 1, 12, 0, tzinfo=MSK),
        occurred_on: date | None = None,
        kind: str = "comment",
        location: str | None = "Moscow",
        paragraphs: tuple[str, ...] = ("First paragraph.", "Second paragraph."),
        topics: Iterable[str] = (),
        slug: str | None = None,
        statement_id: str | None = None,
    ) -> str:
        sid = statement_id or str(uuid.uuid4())
        await self.run(
            C.PublishStatement(
                statement_id=sid,
                title=title,
                kind=kind,
                minister=minister,
                occurred_on=occurred_on or published_at.date(),
                published_at=published_at,
                paragraphs=paragraphs,
                location=location,
                source_url="https://example.org/s",
                slug=slug,
                meta=self.meta(),
            )
        )
        if topics:
            await self.tag(sid, *topics)
        return sid

    async def tag(self, sid: str, *topics: str) -> int | None:
        return await self.run(C.TagStatement(statement_id=sid, topics=topics, meta=self.meta()))

    async def untag(self, sid: str, topic: str) -> int | None:
        return await self.run(C.UntagStatement(statement_id=sid, topic=topic, meta=self.meta()))

    async def revise(self, sid: str, **changes: Any) -> int | None:
        return await self.run(
            C.ReviseStatement(statement_id=sid, reason="correction", meta=self.meta(), **changes)
        )

    async def withdraw(self, sid: str) -> int | None:
        return await self.run(
            C.WithdrawStatement(statement_id=sid, reason="duplicate", meta=self.meta())
        )

    async def link(self, sid: str, related: str) -> int | None:
        return await self.run(C.LinkRelated(statement_id=sid, related_id=related, meta=self.meta()))

    async def unlink(self, sid: str, related: str) -> int | None:
        return await self.run(
            C.UnlinkRelated(statement_id=sid, related_id=related, meta=self.meta())
        )

    async def view(self, sid: str, times: int = 1) -> int | None:
        position = None
        for _ in range(times):
            position = await self.run(C.RecordView(statement_id=sid, meta=self.meta()))
        return position

    async def demo(self, statements: int, views: int, seed: int = 5) -> None:
        for command in demo_commands(statements, views, seed):
            await self.handlers.handle(command)

    async def project(self) -> None:
        await catch_up(self.store, self.engine)

    # -- reading -------------------------------------------------------------------------

    def context(self, principal: Principal | None = None) -> Context:
        return Context(
            handlers=self.handlers,
            principal=principal,
            request_id="req-q",
            read_models=self.models,
            store=self.store,
            registry=self.registry,
        )

    async def query(
        self,
        document: str,
        variables: Mapping[str, Any] | None = None,
        principal: Principal | None = None,
    ) -> Result:
        self.sql.reset()
        result = await schema().execute(
            document,
            variable_values=dict(variables) if variables is not None else None,
            context_value=self.context(principal),
        )
        errors = [dict(e.formatted) for e in result.errors or ()]
        return Result(result.data, errors, self.sql.count)


@contextlib.asynccontextmanager
async def open_world(database: tuple[str, str]) -> AsyncIterator[World]:
    url, schema_name = database
    engine = create_engine(url, schema=schema_name or None)
    try:
        yield World(MemoryEventStore(), engine)
    finally:
        await engine.dispose()


def depth(document: str) -> int:
    """The depth of a document's deepest operation, counted as graphql_api.security.query_limits
    counts it: fields along the deepest path, leaves included, fragments expanded, ``__`` fields
    not."""
    parsed = parse(document)
    fragments = {
        d.name.value: d for d in parsed.definitions if isinstance(d, FragmentDefinitionNode)
    }

    def of(selection_set: SelectionSetNode) -> int:
        deepest = 0
        for selection in selection_set.selections:
            if isinstance(selection, FieldNode):
                if selection.name.value.startswith("__"):
                    continue
                below = of(selection.selection_set) if selection.selection_set else 0
                deepest = max(deepest, 1 + below)
            elif isinstance(selection, InlineFragmentNode):
                deepest = max(deepest, of(selection.selection_set))
            elif isinstance(selection, FragmentSpreadNode):
                deepest = max(deepest, of(fragments[selection.name.value].selection_set))
        return deepest

    return max(
        of(d.selection_set) for d in parsed.definitions if isinstance(d, OperationDefinitionNode)
    )
