"""The ArchiveMonth type: a month of the archive and its statements."""

from __future__ import annotations

import strawberry

from graphql_api.loaders import Info, loaders_of
from graphql_api.types.connection import Connection, selects_total
from graphql_api.types.statement import Statement, statement_connection
from projections.queries import DEFAULT_PAGE_SIZE
from projections.rows import ArchiveMonthRow


async def _statements(
    root: ArchiveMonth, info: Info, first: int = DEFAULT_PAGE_SIZE, after: str | None = None
) -> Connection[Statement]:
    key = ((root.year, root.month), first, after, selects_total(info))
    return statement_connection(await loaders_of(info).month_statements.load(key))


@strawberry.type(description="A month of the archive (local publication month).")
class ArchiveMonth:
    year: int
    month: int
    count: int = strawberry.field(description="How many statements (not withdrawn) it has.")
    statements: Connection[Statement] = strawberry.field(
        resolver=_statements, description="Its statements (not withdrawn), newest first."
    )

    @classmethod
    def from_row(cls, row: ArchiveMonthRow) -> ArchiveMonth:
        return cls(year=row.year, month=row.month, count=row.count)
