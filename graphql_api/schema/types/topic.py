"""The Topic type: a topic statements are tagged with, and its statements."""

from __future__ import annotations

from collections.abc import Awaitable, Mapping, Sequence
from typing import TYPE_CHECKING, Annotated

import strawberry

from graphql_api.execution import batched, by_key
from graphql_api.schema.loaders import Info, loaders_of, read, read_models_of
from graphql_api.schema.types.connection import selects_total
from graphql_api.schema.types.node import TOPIC, Node, global_id
from projections.paging import DEFAULT_PAGE_SIZE
from projections.rows import EMPTY_PAGE, Page, StatementRow, TopicRow

if TYPE_CHECKING:
    from graphql_api.schema.types.statement import StatementConnection


async def _statements(
    root: Topic, info: Info, first: int = DEFAULT_PAGE_SIZE, after: str | None = None
) -> Annotated[StatementConnection, strawberry.lazy("graphql_api.schema.types.statement")]:
    from graphql_api.schema.types.statement import statement_connection

    key = (root.slug, first, after, selects_total(info))
    page = await loaders_of(info).topic_statements.load(key)
    return statement_connection(page)


def _slug(root: Topic) -> str:
    return root.slug


async def _statements_batch(
    roots: Sequence[Topic], info: Info, first: int = DEFAULT_PAGE_SIZE, after: str | None = None
) -> Sequence[object]:
    from graphql_api.schema.types.statement import statement_connection

    models = read_models_of(info)
    with_total = selects_total(info)

    def fetch(slugs: list[str]) -> Awaitable[Mapping[str, Page[StatementRow]]]:
        return read(models.statements_for_topics(slugs, first, after, with_total=with_total))

    return await by_key(roots, _slug, fetch, EMPTY_PAGE, statement_connection)


@strawberry.type(description="A topic statements are tagged with.")
class Topic(Node):
    slug: str = strawberry.field(description="The topic's own id, e.g. `arms-control`.")
    name: str
    statement_count: int = strawberry.field(
        description="How many statements (not withdrawn) carry it."
    )
    statements: Annotated[
        StatementConnection, strawberry.lazy("graphql_api.schema.types.statement")
    ] = strawberry.field(
        resolver=_statements,
        description="Its statements (not withdrawn), newest first.",
        metadata=batched(_statements_batch),
    )

    @classmethod
    def from_row(cls, row: TopicRow) -> Topic:
        return cls(
            id=global_id(TOPIC, row.slug),
            slug=row.slug,
            name=row.name,
            statement_count=row.statement_count,
        )
