"""The Minister type: a minister, their statements and their most frequent topics.

A minister's topic is an entry of its own, :class:`MinisterTopic`: the Topic (the same object as
everywhere else) with the count of this minister's statements on it, and those statements.
"""

from __future__ import annotations

from collections.abc import Awaitable, Mapping, Sequence
from typing import TYPE_CHECKING, Annotated

import strawberry

from graphql_api.execution import batched, by_key
from graphql_api.schema.loaders import Info, loaders_of, read, read_models_of
from graphql_api.schema.types.connection import selects_total
from graphql_api.schema.types.node import MINISTER, Node, global_id
from graphql_api.schema.types.topic import Topic
from projections.paging import DEFAULT_PAGE_SIZE
from projections.rows import EMPTY_PAGE, MinisterRow, MinisterTopicRow, Page, StatementRow

if TYPE_CHECKING:
    from graphql_api.schema.types.statement import StatementConnection

DEFAULT_TOPICS = 10


_NO_TOPICS: Sequence[MinisterTopicRow] = ()


def _minister_id(root: Minister) -> str:
    return root.minister_id


def _count_of(row: MinisterRow | None) -> int:
    return row.statement_count if row is not None else 0


async def _statement_count(root: Minister, info: Info) -> int:
    if root.known_count is not None:
        return root.known_count
    return _count_of(await loaders_of(info).minister_by_id.load(root.minister_id))


async def _statement_count_batch(roots: Sequence[Minister], info: Info) -> Sequence[int]:
    unknown = [root for root in roots if root.known_count is None]
    counts: dict[str, int] = {}
    if unknown:
        models = read_models_of(info)
        values = await by_key(
            unknown, _minister_id, lambda ids: read(models.ministers_by_ids(ids)), None, _count_of
        )
        counts = {root.minister_id: value for root, value in zip(unknown, values, strict=True)}
    return [
        root.known_count if root.known_count is not None else counts[root.minister_id]
        for root in roots
    ]


async def _statements(
    root: Minister, info: Info, first: int = DEFAULT_PAGE_SIZE, after: str | None = None
) -> Annotated[StatementConnection, strawberry.lazy("graphql_api.schema.types.statement")]:
    from graphql_api.schema.types.statement import statement_connection

    key = (root.minister_id, first, after, selects_total(info))
    page = await loaders_of(info).minister_statements.load(key)
    return statement_connection(page)


async def _statements_batch(
    roots: Sequence[Minister], info: Info, first: int = DEFAULT_PAGE_SIZE, after: str | None = None
) -> Sequence[object]:
    from graphql_api.schema.types.statement import statement_connection

    models = read_models_of(info)
    with_total = selects_total(info)

    def fetch(ids: list[str]) -> Awaitable[Mapping[str, Page[StatementRow]]]:
        return read(models.statements_for_ministers(ids, first, after, with_total=with_total))

    return await by_key(roots, _minister_id, fetch, EMPTY_PAGE, statement_connection)


def _pair(root: MinisterTopic) -> tuple[str, str]:
    return root.minister_id, root.topic.slug


async def _topic_statements(
    root: MinisterTopic, info: Info, first: int = DEFAULT_PAGE_SIZE, after: str | None = None
) -> Annotated[StatementConnection, strawberry.lazy("graphql_api.schema.types.statement")]:
    from graphql_api.schema.types.statement import statement_connection

    key = (_pair(root), first, after, selects_total(info))
    return statement_connection(await loaders_of(info).minister_topic_statements.load(key))


async def _topic_statements_batch(
    roots: Sequence[MinisterTopic],
    info: Info,
    first: int = DEFAULT_PAGE_SIZE,
    after: str | None = None,
) -> Sequence[object]:
    from graphql_api.schema.types.statement import statement_connection

    models = read_models_of(info)
    with_total = selects_total(info)

    def fetch(
        pairs: list[tuple[str, str]],
    ) -> Awaitable[Mapping[tuple[str, str], Page[StatementRow]]]:
        return read(
            models.statements_for_minister_topics(pairs, first, after, with_total=with_total)
        )

    return await by_key(roots, _pair, fetch, EMPTY_PAGE, statement_connection)


@strawberry.type(
    description="A topic of a minister's statements: the topic, how many of the "
    "minister's statements carry it, and those statements."
)
class MinisterTopic:
    topic: Topic = strawberry.field(description="The topic (its statementCount counts all).")
    statement_count: int = strawberry.field(
        description="How many of the minister's statements (not withdrawn) carry the topic."
    )
    minister_id: strawberry.Private[str]
    statements: Annotated[
        StatementConnection, strawberry.lazy("graphql_api.schema.types.statement")
    ] = strawberry.field(
        resolver=_topic_statements,
        description="The minister's statements (not withdrawn) on the topic, newest first.",
        metadata=batched(_topic_statements_batch),
    )

    @classmethod
    def from_row(cls, row: MinisterTopicRow) -> MinisterTopic:
        return cls(
            topic=Topic.from_row(row.topic),
            statement_count=row.statement_count,
            minister_id=row.minister_id,
        )


def _topic_list(rows: Sequence[MinisterTopicRow]) -> list[MinisterTopic]:
    return [MinisterTopic.from_row(row) for row in rows]


async def _topics(root: Minister, info: Info, first: int = DEFAULT_TOPICS) -> list[MinisterTopic]:
    return _topic_list(await loaders_of(info).minister_topics.load((root.minister_id, first)))


async def _topics_batch(
    roots: Sequence[Minister], info: Info, first: int = DEFAULT_TOPICS
) -> Sequence[object]:
    models = read_models_of(info)
    return await by_key(
        roots,
        _minister_id,
        lambda ids: read(models.minister_topics(ids, first)),
        _NO_TOPICS,
        _topic_list,
    )


@strawberry.type(description="A minister (or spokesperson) who makes statements.")
class Minister(Node):
    minister_id: strawberry.ID = strawberry.field(
        description="The minister's own id, a slug such as `sergey-lavrov`."
    )
    name: str
    title: str = strawberry.field(description="The official title.")
    #: The count, when the minister was read from the ministers read model.
    known_count: strawberry.Private[int | None] = None
    statement_count: int = strawberry.field(
        resolver=_statement_count,
        description="How many statements (not withdrawn) they made.",
        metadata=batched(_statement_count_batch),
    )
    statements: Annotated[
        StatementConnection, strawberry.lazy("graphql_api.schema.types.statement")
    ] = strawberry.field(
        resolver=_statements,
        description="Their statements (not withdrawn), newest first.",
        metadata=batched(_statements_batch),
    )
    topics: list[MinisterTopic] = strawberry.field(
        resolver=_topics,
        metadata=batched(_topics_batch),
        description="Their most frequent topics, most of their statements first: each with "
        "the count of their statements on it and those statements.",
    )

    @classmethod
    def from_row(cls, row: MinisterRow) -> Minister:
        return cls(
            id=global_id(MINISTER, row.id),
            minister_id=strawberry.ID(row.id),
            name=row.name,
            title=row.title,
            known_count=row.statement_count,
        )

    @classmethod
    def of(cls, minister_id: str, name: str, title: str) -> Minister:
        """A minister the read model does not show (yet); their count is read when asked for."""
        return cls(
            id=global_id(MINISTER, minister_id),
            minister_id=strawberry.ID(minister_id),
            name=name,
            title=title,
        )
