"""The ArchiveMonth type: a month of the archive and its statements."""

from __future__ import annotations

from collections.abc import Awaitable, Mapping, Sequence

import strawberry

from graphql_api.execution import batched, by_key
from graphql_api.schema.loaders import Info, loaders_of, read, read_models_of
from graphql_api.schema.types.connection import selects_total
from graphql_api.schema.types.statement import StatementConnection, statement_connection
from projections.paging import DEFAULT_PAGE_SIZE
from projections.rows import EMPTY_PAGE, ArchiveMonthRow, Page, StatementRow


async def _statements(
    root: ArchiveMonth, info: Info, first: int = DEFAULT_PAGE_SIZE, after: str | None = None
) -> StatementConnection:
    key = ((root.year, root.month), first, after, selects_total(info))
    return statement_connection(await loaders_of(info).month_statements.load(key))


def _month(root: ArchiveMonth) -> tuple[int, int]:
    return root.year, root.month


async def _statements_batch(
    roots: Sequence[ArchiveMonth],
    info: Info,
    first: int = DEFAULT_PAGE_SIZE,
    after: str | None = None,
) -> Sequence[object]:
    models = read_models_of(info)
    with_total = selects_total(info)

    def fetch(
        months: list[tuple[int, int]],
    ) -> Awaitable[Mapping[tuple[int, int], Page[StatementRow]]]:
        return read(models.statements_for_months(months, first, after, with_total=with_total))

    return await by_key(roots, _month, fetch, EMPTY_PAGE, statement_connection)


@strawberry.type(description="A month of the archive (local publication month).")
class ArchiveMonth:
    year: int
    month: int
    count: int = strawberry.field(description="How many statements (not withdrawn) it has.")
    statements: StatementConnection = strawberry.field(
        resolver=_statements,
        description="Its statements (not withdrawn), newest first.",
        metadata=batched(_statements_batch),
    )

    @classmethod
    def from_row(cls, row: ArchiveMonthRow) -> ArchiveMonth:
        return cls(year=row.year, month=row.month, count=row.count)
