"""Views: the count of one day, and an entry of the most viewed list."""

from __future__ import annotations

from datetime import date
from typing import TYPE_CHECKING, Annotated

import strawberry

from projections.rows import DayCount as DayCountRow

if TYPE_CHECKING:
    from graphql_api.schema.types.statement import Statement


@strawberry.type(description="Views of a statement on one UTC day.")
class DayCount:
    day: date
    count: int

    @classmethod
    def of(cls, row: DayCountRow) -> DayCount:
        return cls(day=row.day, count=row.count)


@strawberry.type(description="A statement and its views within the period asked for.")
class ViewedStatement:
    statement: Annotated[Statement, strawberry.lazy("graphql_api.schema.types.statement")]
    views: int = strawberry.field(description="Views within the period (viewCount is the total).")
