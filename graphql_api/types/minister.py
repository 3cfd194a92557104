"""The Minister type: a minister, their statements and their most frequent topics."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import strawberry

from graphql_api.loaders import Info, loaders_of
from graphql_api.types.connection import Connection, selects_total
from graphql_api.types.node import MINISTER, Node, global_id
from graphql_api.types.topic import Topic
from projections.queries import DEFAULT_PAGE_SIZE
from projections.rows import MinisterRow

if TYPE_CHECKING:
    from graphql_api.types.statement import Statement

DEFAULT_TOPICS = 10


async def _statement_count(root: Minister, info: Info) -> int:
    if root.known_count is not None:
        return root.known_count
    row = await loaders_of(info).minister_by_id.load(root.minister_id)
    return row.statement_count if row is not None else 0


async def _statements(
    root: Minister, info: Info, first: int = DEFAULT_PAGE_SIZE, after: str | None = None
) -> Connection[Annotated[Statement, strawberry.lazy("graphql_api.types.statement")]]:
    from graphql_api.types.statement import statement_connection

    key = (root.minister_id, first, after, selects_total(info))
    page = await loaders_of(info).minister_statements.load(key)
    return statement_connection(page)


async def _topics(root: Minister, info: Info, first: int = DEFAULT_TOPICS) -> list[Topic]:
    rows = await loaders_of(info).minister_topics.load((root.minister_id, first))
    return [Topic.from_row(row) for row in rows]


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
        resolver=_statement_count, description="How many statements (not withdrawn) they made."
    )
    statements: Connection[Annotated[Statement, strawberry.lazy("graphql_api.types.statement")]] = (
        strawberry.field(
            resolver=_statements, description="Their statements (not withdrawn), newest first."
        )
    )
    topics: list[Topic] = strawberry.field(
        resolver=_topics,
        description="Their most frequent topics; each topic's statementCount counts this "
        "minister's statements.",
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
