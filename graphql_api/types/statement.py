"""The Statement type, built from a read-model row or from a statement replayed from the log.

Plain fields are attributes copied from the row, so they resolve without a resolver call;
``body``, ``printVersion`` and ``minister`` are derived synchronously from them (the minister's
``name`` and ``title`` are those the statement records: the minister as of that statement).
``topics``, ``related`` and ``viewsByDay`` go through the request's loaders; ``history`` reads
the log (auditor role).

A statement answered by time travel (``statement(asOf:|atPosition:)``, see
:mod:`graphql_api.asof`) carries its snapshot: its fields, ``topics`` and the set of
``related`` statements are those of that moment, as are ``viewCount``, ``viewsByDay`` and
``history``. The topics' ``statementCount`` and the related statements themselves are today's.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime
from typing import Annotated, Any, Protocol

import strawberry

from graphql_api.asof import StatementAsOf, history, views_as_of
from graphql_api.auth import require_role
from graphql_api.batch import batched, by_key, each
from graphql_api.loaders import (
    Info,
    invalid_input,
    loaders_of,
    read,
    read_models_of,
    registry_of,
    store_of,
)
from graphql_api.transparency import StatementProof, resolve_statement_proof
from graphql_api.types.audit import RawEvent
from graphql_api.types.connection import Connection
from graphql_api.types.formatting import body_text, print_version, snippet_html
from graphql_api.types.minister import Minister
from graphql_api.types.node import MINISTER, STATEMENT, Node, global_id
from graphql_api.types.topic import Topic
from graphql_api.types.views import DayCount
from projections.rows import DayCount as ViewDay
from projections.rows import Page, StatementRow, TopicRow

AUDITOR = "auditor"
#: Fields a Statement built from a row reads from it when first asked for.
_FROM_ROW: frozenset[str] = frozenset({"occurred_on", "published_at", "paragraphs"})


# --- resolvers (module functions, attached below with their descriptions) -----------------


def _body(root: Statement) -> str:
    return body_text(root.paragraphs)


def _print_version(root: Statement) -> str:
    return print_version(root.title, root.published_at, root.location, root.paragraphs)


def _minister(root: Statement) -> Minister:
    return Minister(
        id=global_id(MINISTER, root.minister_id),
        minister_id=strawberry.ID(root.minister_id),
        name=root.minister_name,
        title=root.minister_title,
    )


_NO_TOPICS: Sequence[TopicRow] = ()
_NO_STATEMENTS: Sequence[StatementRow] = ()
_NO_DAYS: Sequence[ViewDay] = ()


def _statement_id(root: Statement) -> str:
    return root.statement_id


def _topic_list(rows: Sequence[TopicRow]) -> list[Topic]:
    return [Topic.from_row(row) for row in rows]


def _statement_list(rows: Sequence[StatementRow]) -> list[Statement]:
    return [Statement.from_row(row) for row in rows]


async def _topics(root: Statement, info: Info) -> list[Topic]:
    loaders = loaders_of(info)
    if root.as_of is None:
        return _topic_list(await loaders.topics_of.load(root.statement_id))
    tagged = root.as_of.state.topics
    current = await loaders.topic_by_slug.load_many([t.slug for t in tagged])
    # A topic is one object with today's name and count, whichever statement reaches it.
    return [
        Topic.from_row(row if row is not None else TopicRow(t.slug, t.name, 0))
        for t, row in zip(tagged, current, strict=True)
    ]


async def _topics_batch(roots: Sequence[Statement], info: Info) -> Sequence[object]:
    if any(root.as_of is not None for root in roots):
        return await each(roots, lambda root: _topics(root, info))
    models = read_models_of(info)
    return await by_key(
        roots, _statement_id, lambda ids: read(models.topics_of(ids)), _NO_TOPICS, _topic_list
    )


async def _related(root: Statement, info: Info) -> list[Statement]:
    loaders = loaders_of(info)
    if root.as_of is None:
        return _statement_list(await loaders.related_statements.load(root.statement_id))
    ids = list(root.as_of.state.related)
    rows = await loaders.statement_by_id.load_many(ids)
    return [Statement.from_row(row) for row in rows if row is not None]


async def _related_batch(roots: Sequence[Statement], info: Info) -> Sequence[object]:
    if any(root.as_of is not None for root in roots):
        return await each(roots, lambda root: _related(root, info))
    models = read_models_of(info)
    return await by_key(
        roots,
        _statement_id,
        lambda ids: read(models.related_statements_of(ids)),
        _NO_STATEMENTS,
        _statement_list,
    )


def _day_list(rows: Sequence[ViewDay]) -> list[DayCount]:
    return [DayCount.of(row) for row in rows]


async def _views_by_day(
    root: Statement,
    info: Info,
    from_: Annotated[date | None, strawberry.argument(name="from")] = None,
    to: date | None = None,
) -> list[DayCount]:
    if root.as_of is None:
        rows = await loaders_of(info).views_by_day.load((root.statement_id, from_, to))
        return _day_list(rows)
    views = root.as_of.views
    if views is None:
        views = await views_as_of(
            store_of(info), registry_of(info), root.statement_id, root.as_of.moment
        )
    try:
        days = views.between(from_, to)
    except ValueError as exc:
        raise invalid_input(exc) from exc
    return [DayCount.of(day) for day in days]


async def _views_by_day_batch(
    roots: Sequence[Statement],
    info: Info,
    from_: date | None = None,
    to: date | None = None,
) -> Sequence[object]:
    if any(root.as_of is not None for root in roots):
        return await each(roots, lambda root: _views_by_day(root, info, from_, to))
    models = read_models_of(info)
    return await by_key(
        roots,
        _statement_id,
        lambda ids: read(models.views_by_day(ids, from_, to)),
        _NO_DAYS,
        _day_list,
    )


async def _history(root: Statement, info: Info) -> list[RawEvent] | None:
    require_role(info, AUDITOR)
    moment = root.as_of.moment if root.as_of is not None else None
    records = await history(store_of(info), root.statement_id, moment)
    return [RawEvent.of(record) for record in records]


@strawberry.type(description="An official statement: a speech, comment, interview, ...")
class Statement(Node):
    statement_id: strawberry.ID = strawberry.field(
        description="The statement's UUID: what mutations take as `statementId`."
    )
    slug: str = strawberry.field(description="The statement's slug (its address on the site).")
    title: str
    kind: str = strawberry.field(description="speech, comment, interview, remarks, ...")
    location: str | None = strawberry.field(description="Where it was made.")
    occurred_on: date = strawberry.field(description="The day it was made.")
    published_at: datetime = strawberry.field(
        description="When it was published, in the offset it was published with."
    )
    paragraphs: list[str] = strawberry.field(description="The body, one string per paragraph.")
    language: str = strawberry.field(description="Its language (a BCP 47 tag such as `en`).")
    source_url: str | None = strawberry.field(description="Where it was first published.")
    view_count: int = strawberry.field(description="How many times it was viewed in total.")
    version: int = strawberry.field(
        description="The version of its stream: pass it back as `expectedVersion`."
    )
    withdrawn: bool = strawberry.field(description="Whether it was withdrawn.")
    snippet: str | None = strawberry.field(
        description=(
            "With `filter.search`: the matching excerpt as HTML, the matched words in "
            "<mark>...</mark> and every other character escaped; otherwise null."
        )
    )
    relevance: float | None = strawberry.field(
        description="With `filter.search`: how well it matches (higher is better, "
        "comparable within one list only); otherwise null."
    )
    minister_id: strawberry.Private[str]
    minister_name: strawberry.Private[str]
    minister_title: strawberry.Private[str]
    as_of: strawberry.Private[StatementAsOf | None] = None
    body: str = strawberry.field(
        resolver=_body, description="The body: the paragraphs separated by blank lines."
    )
    print_version: str = strawberry.field(
        resolver=_print_version,
        description="Plain text like the site's print version: the title, the publication "
        "time (dd-mm-yyyy, hh:mm), the location, a blank line, then the body.",
    )
    minister: Minister = strawberry.field(
        resolver=_minister,
        description="The minister, named and titled as this statement records them.",
    )
    topics: list[Topic] = strawberry.field(
        resolver=_topics,
        description="Its topics, in the order it was tagged with them.",
        metadata=batched(_topics_batch),
    )
    related: list[Statement] = strawberry.field(
        resolver=_related,
        metadata=batched(_related_batch),
        description="Statements linked to this one in either direction, oldest link first "
        "(withdrawn ones left out).",
    )
    views_by_day: list[DayCount] = strawberry.field(
        resolver=_views_by_day,
        metadata=batched(_views_by_day_batch),
        description="Views per UTC day within [from, to] (inclusive), oldest first; days "
        "without views are left out.",
    )
    history: list[RawEvent] | None = strawberry.field(
        resolver=_history,
        description="Its events from the log, oldest first, with their metadata (auditor; "
        "null with an error for other requests).",
    )
    proof: StatementProof | None = strawberry.field(
        resolver=resolve_statement_proof,
        description="The events its state was folded from, each with its inclusion proof "
        "against one checkpoint (auditor; null with an error for other requests).",
    )

    @classmethod
    def from_row(cls, row: StatementRow) -> Statement:
        # The dataclass __init__ would read (so decode) every field of the row; instead the
        # fields are set directly, and the three a row decodes on demand are read from it
        # when resolved (``__getattr__``). Most queries ask for a few fields of each.
        statement = cls.__new__(cls)
        statement.__dict__.update(
            id=global_id(STATEMENT, row.id),
            statement_id=row.id,
            slug=row.slug,
            title=row.title,
            kind=row.kind,
            location=row.location,
            language=row.language,
            source_url=row.source_url,
            view_count=row.view_count,
            version=row.version,
            withdrawn=row.withdrawn,
            snippet=snippet_html(row.snippet) if row.snippet is not None else None,
            relevance=row.rank,
            minister_id=row.minister_id,
            minister_name=row.minister_name,
            minister_title=row.minister_title,
            as_of=None,
            _row=row,
        )
        return statement

    def __getattr__(self, name: str) -> Any:
        # Only reached for attributes not set on the instance: the row's decoded-on-demand
        # fields of a statement built by from_row.
        if name in _FROM_ROW:
            row = self.__dict__.get("_row")
            if row is not None:
                return getattr(row, name)
        raise AttributeError(name)

    @classmethod
    def from_snapshot(cls, snapshot: StatementAsOf) -> Statement:
        state = snapshot.state
        return cls(
            id=global_id(STATEMENT, state.statement_id),
            statement_id=strawberry.ID(state.statement_id),
            slug=state.slug,
            title=state.title,
            kind=state.kind,
            location=state.location,
            occurred_on=state.occurred_on,
            published_at=state.published_at,
            paragraphs=list(state.paragraphs),
            language=state.language,
            source_url=state.source_url,
            view_count=snapshot.views.total if snapshot.views is not None else 0,
            version=snapshot.version,
            withdrawn=state.withdrawn,
            snippet=None,
            relevance=None,
            minister_id=state.minister.id,
            minister_name=state.minister.name,
            minister_title=state.minister.title,
            as_of=snapshot,
        )


def statement_connection(page: Page[StatementRow]) -> Connection[Statement]:
    """The connection of a page of statement rows."""
    return Connection.of(page, Statement.from_row)


class StatementPayloadLike(Protocol):
    statement_id: strawberry.ID
    position: int | None


async def payload_statement(root: StatementPayloadLike, info: Info) -> Statement | None:
    """Resolver of a mutation payload's ``statement``: the statement as the read models show it.

    The mutation answered once they reached its position (:mod:`graphql_api.consistency`), so
    they show its write unless a ``POSITION_NOT_REACHED`` error says otherwise.
    """
    row = await loaders_of(info).statement_by_id.load(str(root.statement_id))
    return Statement.from_row(row) if row is not None else None
