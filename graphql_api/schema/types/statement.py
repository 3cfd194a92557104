"""The Statement type, built from a read-model row or from a statement replayed from the log.

Plain fields are attributes copied from the row, so they resolve without a resolver call;
``body`` and ``printVersion`` are derived synchronously from them. ``ministerName`` and
``ministerTitle`` are what the statement records (the minister as named when speaking);
``minister`` is the minister as the ministers read model shows them now, so that a Minister has
the same fields wherever it appears. ``minister``, ``topics``, ``related`` and ``viewsByDay``
go through the read models, batched; ``history`` reads the log (auditor role).

A statement answered by time travel (``statement(asOf:|atPosition:)``, see
:mod:`graphql_api.service_layer.asof`) carries its snapshot and has an id of its own (see
:mod:`graphql_api.schema.ids`): its fields, the set of its ``topics`` and ``related`` statements are
those of that moment, as are ``viewCount``, ``viewsByDay`` and ``history``. The objects it
links to (its minister, topics, related statements) are today's, with their own ids.

Search results' ``snippet`` and ``relevance`` belong to the list, not to the statement: they are
fields of :class:`StatementEdge`.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime
from typing import Annotated, Any, Protocol

import strawberry

from graphql_api.execution import batched, by_key, each
from graphql_api.schema.loaders import (
    Info,
    invalid_input,
    loaders_of,
    read,
    read_models_of,
    registry_of,
    store_of,
)
from graphql_api.schema.transparency import StatementProof, resolve_statement_proof
from graphql_api.schema.types.audit import RawEvent
from graphql_api.schema.types.connection import PageInfo
from graphql_api.schema.types.formatting import body_text, print_version, snippet_html
from graphql_api.schema.types.minister import Minister
from graphql_api.schema.types.node import STATEMENT, Node, global_id, statement_global_id
from graphql_api.schema.types.topic import Topic
from graphql_api.schema.types.views import DayCount
from graphql_api.security.auth import require_role
from graphql_api.service_layer.asof import StatementAsOf, history, views_as_of
from projections.rows import DayCount as ViewDay
from projections.rows import MinisterRow, Page, StatementPage, StatementRow, TopicRow

AUDITOR = "auditor"
#: Fields a Statement built from a row reads from it when first asked for.
_FROM_ROW: frozenset[str] = frozenset({"occurred_on", "published_at", "paragraphs"})
#: What a Statement read with its page (``Statement.from_page``) holds besides its row: the
#: batch resolvers of ``minister``, ``topics`` and ``related`` answer from them.
_PAGE_MINISTER = "_page_minister"
_PAGE_TOPICS = "_page_topics"
_PAGE_RELATED = "_page_related"


# --- resolvers (module functions, attached below with their descriptions) -----------------


def _body(root: Statement) -> str:
    return body_text(root.paragraphs)


def _print_version(root: Statement) -> str:
    return print_version(root.title, root.published_at, root.location, root.paragraphs)


def _minister_of(root: Statement, row: MinisterRow | None) -> Minister:
    if row is not None:
        return Minister.from_row(row)
    # The ministers projection has not reached the statement yet: the minister as the
    # statement names them, their count read when asked for.
    return Minister.of(root.minister_id, root.minister_name, root.minister_title)


async def _minister(root: Statement, info: Info) -> Minister:
    if _PAGE_MINISTER in root.__dict__:
        return _minister_of(root, root.__dict__[_PAGE_MINISTER])
    return _minister_of(root, await loaders_of(info).minister_by_id.load(root.minister_id))


async def _minister_batch(roots: Sequence[Statement], info: Info) -> Sequence[object]:
    if all(_PAGE_MINISTER in root.__dict__ for root in roots):
        # Read with the page (Statement.from_page): no statement to send.
        rows = {r.minister_id: r.__dict__[_PAGE_MINISTER] for r in roots}
    else:
        models = read_models_of(info)
        rows = await read(
            models.ministers_by_ids(list(dict.fromkeys(_minister_id(r) for r in roots)))
        )
    # One Minister object per minister: the executor completes a shared value once.
    made: dict[str, Minister] = {}
    values: list[Minister] = []
    for root in roots:
        minister = made.get(root.minister_id)
        if minister is None:
            minister = made[root.minister_id] = _minister_of(root, rows.get(root.minister_id))
        values.append(minister)
    return values


def _minister_id(root: Statement) -> str:
    return root.minister_id


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
    if _PAGE_TOPICS in root.__dict__:
        return _topic_list(root.__dict__[_PAGE_TOPICS])
    loaders = loaders_of(info)
    if root.as_of is None:
        return _topic_list(await loaders.topics_of.load(root.statement_id))
    # The topics it carried then, each as it is now (a Topic is the same object everywhere).
    tagged = root.as_of.state.topics
    current = await loaders.topic_by_slug.load_many([t.slug for t in tagged])
    # A topic is one object with today's name and count, whichever statement reaches it.
    return [
        Topic.from_row(row if row is not None else TopicRow(t.slug, t.name, 0))
        for t, row in zip(tagged, current, strict=True)
    ]


async def _topics_batch(roots: Sequence[Statement], info: Info) -> Sequence[object]:
    if all(_PAGE_TOPICS in root.__dict__ for root in roots):
        return [_topic_list(root.__dict__[_PAGE_TOPICS]) for root in roots]
    if any(root.as_of is not None for root in roots):
        return await each(roots, lambda root: _topics(root, info))
    models = read_models_of(info)
    return await by_key(
        roots, _statement_id, lambda ids: read(models.topics_of(ids)), _NO_TOPICS, _topic_list
    )


async def _related(root: Statement, info: Info) -> list[Statement]:
    if _PAGE_RELATED in root.__dict__:
        return list(root.__dict__[_PAGE_RELATED])
    loaders = loaders_of(info)
    if root.as_of is None:
        return _statement_list(await loaders.related_statements.load(root.statement_id))
    ids = list(root.as_of.state.related)
    rows = await loaders.statement_by_id.load_many(ids)
    return [Statement.from_row(row) for row in rows if row is not None]


async def _related_batch(roots: Sequence[Statement], info: Info) -> Sequence[object]:
    if all(_PAGE_RELATED in root.__dict__ for root in roots):
        return [list(root.__dict__[_PAGE_RELATED]) for root in roots]
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
    minister_name: str = strawberry.field(
        description="The minister's name as this statement records it (`minister` is the "
        "minister as they are now)."
    )
    minister_title: str = strawberry.field(
        description="The title the minister held when speaking, as this statement records it."
    )
    minister_id: strawberry.Private[str]
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
        metadata=batched(_minister_batch),
        description="The minister who made it, as they are now (their current name and title; "
        "`ministerName` and `ministerTitle` are those of the statement).",
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
            minister_id=row.minister_id,
            minister_name=row.minister_name,
            minister_title=row.minister_title,
            as_of=None,
            _row=row,
        )
        return statement

    @classmethod
    def from_page(cls, page: StatementPage) -> Statement:
        """A statement read with what its page shows (``ReadModels.statement_page``): its
        ``minister``, ``topics`` and ``related`` (with their ministers) resolve without SQL."""
        statement = cls.from_row(page.statement)
        related = []
        for row, minister in page.related:
            other = cls.from_row(row)
            other.__dict__[_PAGE_MINISTER] = minister
            related.append(other)
        statement.__dict__.update(
            {
                _PAGE_MINISTER: page.minister,
                _PAGE_TOPICS: page.topics,
                _PAGE_RELATED: tuple(related),
            }
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
        state, moment = snapshot.state, snapshot.moment
        return cls(
            id=statement_global_id(state.statement_id, moment.position, moment.time),
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
            minister_id=state.minister.id,
            minister_name=state.minister.name,
            minister_title=state.minister.title,
            as_of=snapshot,
        )


@strawberry.type(
    description="A statement in a list, its cursor, and what a search says of it there."
)
class StatementEdge:
    node: Statement
    cursors: strawberry.Private[Sequence[str]]
    index: strawberry.Private[int]
    snippet: str | None = strawberry.field(
        description="With `filter.search`: the matching excerpt as HTML, the matched words in "
        "<mark>...</mark> and every other character escaped; otherwise null."
    )
    relevance: float | None = strawberry.field(
        description="With `filter.search`: how well it matches (higher is better, comparable "
        "within one list only); otherwise null."
    )

    @strawberry.field
    def cursor(self) -> str:
        return self.cursors[self.index]


@strawberry.type(description="A page of a list of statements (Relay connection).")
class StatementConnection:
    edges: list[StatementEdge]
    nodes: list[Statement]
    page_info: PageInfo
    total_count: int = strawberry.field(description="The number of items in the whole list.")


def statement_connection(page: Page[StatementRow]) -> StatementConnection:
    """The connection of a page of statement rows."""
    nodes = [Statement.from_row(row) for row in page.items]
    cursors = page.cursors
    if len(cursors) != len(nodes):
        raise ValueError(f"{len(nodes)} nodes but {len(cursors)} cursors")
    edges = [
        StatementEdge(
            node=node,
            cursors=cursors,
            index=i,
            snippet=snippet_html(row.snippet) if row.snippet is not None else None,
            relevance=row.rank,
        )
        for i, (row, node) in enumerate(zip(page.items, nodes, strict=True))
    ]
    return StatementConnection(
        edges=edges,
        nodes=nodes,
        page_info=PageInfo.of(cursors, page.has_next, page.has_previous),
        total_count=page.total_count,
    )


class StatementPayloadLike(Protocol):
    statement_id: strawberry.ID
    position: int | None


async def payload_statement(root: StatementPayloadLike, info: Info) -> Statement | None:
    """Resolver of a mutation payload's ``statement``: the statement as the read models show it.

    The mutation answered once they reached its position
    (:mod:`graphql_api.service_layer.consistency`), so they show its write unless a
    ``POSITION_NOT_REACHED`` error says otherwise.
    """
    row = await loaders_of(info).statement_by_id.load(str(root.statement_id))
    return Statement.from_row(row) if row is not None else None
