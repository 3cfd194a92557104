"""The orders of a statement list."""

from __future__ import annotations

import enum

import strawberry

from projections.rows import StatementOrder as Order


@strawberry.enum(name="StatementOrder", description="How a list of statements is sorted.")
class StatementOrderBy(enum.Enum):
    PUBLISHED_DESC = strawberry.enum_value(Order.PUBLISHED_DESC, description="Newest first.")
    PUBLISHED_ASC = strawberry.enum_value(Order.PUBLISHED_ASC, description="Oldest first.")
    MOST_VIEWED = strawberry.enum_value(Order.MOST_VIEWED, description="Most views first.")
    RELEVANCE = strawberry.enum_value(
        Order.RELEVANCE, description="Best match first; needs filter.search."
    )

    @property
    def order(self) -> Order:
        value = self.value
        assert isinstance(value, Order)
        return value
