"""The Subscription type: live view counts, rankings, new statements and the raw log for auditors.

Every subscription but ``eventAppended`` is served by the process's
:class:`~graphql_api.service_layer.live_hub.LiveHub` (``info.context.live``), so
subscribers with the same arguments share one computation. ``eventAppended`` is a cursor over the
log (``store.subscribe`` from the given position: no gaps, no duplicates);
``info.context.store`` is the store.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from datetime import datetime
from typing import Any, Final, cast

import strawberry
from graphql import GraphQLError
from graphql.execution import Executor
from strawberry.scalars import JSON
from strawberry.types.execution import ExecutionResult, PreExecutionError

from domain.streams import statement_stream
from eventstore import EventStore
from graphql_api.context import Context
from graphql_api.errors import BadUserInput, NotFound, log_errors
from graphql_api.execution import per_event_executor
from graphql_api.schema.ids import statement_global_id, statement_id_of
from graphql_api.security.auth import require_role
from graphql_api.security.query_limits import RefusedOperation
from graphql_api.service_layer.live_hub import LiveHub, Published, RankedStatement, ViewWindow

MAX_TOP: Final = 100
ViewWindowEnum = strawberry.enum(
    ViewWindow,
    name="ViewWindow",
    description="Which views a ranking counts: all, or the last 1, 7 or 30 UTC days.",
)


@strawberry.type(description="A statement's exact view count.")
class ViewCountUpdate:
    statement_id: strawberry.ID = strawberry.field(description="The statement's UUID.")
    view_count: int
    at: datetime = strawberry.field(
        description="When the last view included in the count was recorded."
    )


@strawberry.type(description="One entry of a live ranking.")
class TopViewedEntry:
    rank: int
    statement_id: strawberry.ID
    slug: str
    title: str
    view_count: int


@strawberry.type(description="A newly published statement, as it was published.")
class PublishedStatement:
    id: strawberry.ID = strawberry.field(
        description="The statement's global id: `node(id:)` and `statement(id:)` take it."
    )
    statement_id: strawberry.ID = strawberry.field(description="The statement's UUID.")
    slug: str
    title: str
    kind: str
    minister_name: str
    published_at: datetime
    position: int


@strawberry.type(description="An event of the log, as stored.")
class AppendedEvent:
    position: int
    event_id: strawberry.ID
    stream_id: str
    version: int
    type: str
    schema_version: int
    data: JSON
    metadata: JSON
    recorded_at: datetime


def _hub(info: strawberry.Info[Context, None]) -> LiveHub:
    hub = info.context.live
    if hub is None:
        raise RuntimeError("no live hub in the context")
    return hub


def _ranked(entries: tuple[RankedStatement, ...]) -> list[TopViewedEntry]:
    return [
        TopViewedEntry(
            rank=i,
            statement_id=strawberry.ID(e.statement_id),
            slug=e.slug,
            title=e.title,
            view_count=e.view_count,
        )
        for i, e in enumerate(entries, 1)
    ]


def _published(p: Published) -> PublishedStatement:
    return PublishedStatement(
        id=statement_global_id(p.statement_id),
        statement_id=strawberry.ID(p.statement_id),
        slug=p.slug,
        title=p.title,
        kind=p.kind,
        minister_name=p.minister_name,
        published_at=p.published_at,
        position=p.position,
    )


def _store(info: strawberry.Info[Context, None]) -> EventStore:
    store = info.context.store
    if store is None:
        raise RuntimeError("no event store in the context")
    return store


async def view_count(
    info: strawberry.Info[Context, None], statement_id: strawberry.ID
) -> AsyncGenerator[ViewCountUpdate, None]:
    sid = statement_id_of(statement_id, "statementId")
    # The log, not a read model, says whether it exists: a statement published a moment ago
    # is known there before any projection has caught up with it.
    if await _store(info).stream_version(statement_stream(sid)) == 0:
        raise NotFound("statementId: no statement has this id")
    async for update in _hub(info).view_counts(sid):
        yield ViewCountUpdate(
            statement_id=strawberry.ID(update.statement_id),
            view_count=update.view_count,
            at=update.at,
        )


async def top_viewed(
    info: strawberry.Info[Context, None],
    first: int = 10,
    window: ViewWindowEnum = ViewWindow.ALL,  # type: ignore[valid-type]
) -> AsyncGenerator[list[TopViewedEntry], None]:
    if not 1 <= first <= MAX_TOP:
        raise BadUserInput(f"first: must be between 1 and {MAX_TOP}")
    async for entries in _hub(info).top_viewed(first, ViewWindow(window)):
        yield _ranked(entries)


async def statement_published(
    info: strawberry.Info[Context, None],
) -> AsyncGenerator[PublishedStatement, None]:
    async for published in _hub(info).published():
        yield _published(published)


async def event_appended(
    info: strawberry.Info[Context, None], after_position: int = 0
) -> AsyncGenerator[AppendedEvent, None]:
    require_role(info, "auditor")
    if after_position < 0:
        raise BadUserInput("afterPosition: must be >= 0")
    async for record in _store(info).subscribe(after_position):
        yield AppendedEvent(
            position=record.position,
            event_id=strawberry.ID(str(record.event_id)),
            stream_id=record.stream_id,
            version=record.version,
            type=record.type,
            schema_version=record.schema_version,
            data=_json(record.data),
            metadata=_json(record.metadata),
            recorded_at=record.recorded_at,
        )


@strawberry.type(description="Live updates; over graphql-transport-ws, graphql-ws or SSE.")
class Subscription:
    view_count = strawberry.subscription(
        resolver=view_count,
        description="The statement's view count now, then at most once per tick when it "
        "changes. statementId takes its UUID or global id; an unknown statement ends the "
        "subscription with NOT_FOUND, a malformed id with BAD_USER_INPUT.",
    )
    top_viewed = strawberry.subscription(
        resolver=top_viewed,
        description="The most viewed statements now, then whenever the ranking changes.",
    )
    statement_published = strawberry.subscription(
        resolver=statement_published, description="Each statement published from now on."
    )
    event_appended = strawberry.subscription(
        resolver=event_appended,
        description="The log after a position, then live: no gaps, no duplicates (auditor).",
    )


def _json(value: Any) -> Any:
    return value


async def _refusals_as_results(
    results: AsyncGenerator[Any, None], request_id: str | None
) -> AsyncGenerator[Any, None]:
    """``results``, with every refusal before execution as a :class:`PreExecutionError`.

    Strawberry's ``stream`` lets an error of an ``on_parse`` hook escape (a syntax error
    found by ParserCache, the token and field limits of :mod:`graphql_api.security.query_limits`),
    where ``execute`` turns it into a result; the transports would end the operation without a
    word. And it reports the limits' refusals raised before a subscription starts
    (:class:`~graphql_api.security.query_limits.RefusedOperation`) as a first result, as if the
    subscription had run. Both become the pre-execution error the transports answer as such
    (graphql-transport-ws: an ``error`` message).
    """
    try:
        try:
            first = await anext(results)
        except StopAsyncIteration:
            return
        except Exception as exc:
            error = (
                exc if isinstance(exc, GraphQLError) else GraphQLError(str(exc), original_error=exc)
            )
            log_errors([error], request_id)  # only a bug is logged, with its traceback
            yield PreExecutionError(data=None, errors=[error])
            return
        errors = getattr(first, "errors", None)
        if (
            isinstance(first, ExecutionResult)
            and not isinstance(first, PreExecutionError)
            and errors
            and all(isinstance(e, RefusedOperation) for e in errors)
        ):
            first = PreExecutionError(data=None, errors=errors, extensions=first.extensions)
        yield first
        async for result in results:
            yield result
    finally:
        await results.aclose()


class StreamingSchema:
    """The schema, as the streaming transports (WebSocket, SSE) should run it.

    Everything is the wrapped schema's, except that subscriptions run on
    :func:`~graphql_api.execution.fence.per_event_executor` of its executor class, and that
    an error raised while parsing comes as a result (:func:`_refusals_as_results`). ``stream``
    is Strawberry's own, run with this object as ``self`` so that it picks that class up: the
    schema is shared with the HTTP endpoint and is not changed.
    """

    def __init__(self, schema: strawberry.Schema) -> None:
        self._schema = schema
        base = cast(type[Executor[Any]], schema.execution_context_class)
        self.execution_context_class = per_event_executor(base)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._schema, name)

    async def stream(self, *args: Any, **kwargs: Any) -> Any:
        results = await strawberry.Schema.stream(self, *args, **kwargs)  # type: ignore[arg-type]
        context = kwargs.get("context_value", args[2] if len(args) > 2 else None)
        return _refusals_as_results(results, getattr(context, "request_id", None))

    async def subscribe(self, *args: Any, **kwargs: Any) -> Any:
        return await strawberry.Schema.subscribe(self, *args, **kwargs)  # type: ignore[arg-type]
