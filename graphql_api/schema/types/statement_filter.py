"""The filter of a statement list."""

from __future__ import annotations

from datetime import date

import strawberry

from graphql_api.schema.ids import minister_id_of, topic_slug_of
from projections.rows import StatementFilter as Filter


@strawberry.input(
    name="StatementFilter",
    description="Conditions on a list of statements; every one given must hold.",
)
class StatementFilterInput:
    minister_id: strawberry.ID | None = strawberry.field(
        default=None, description="The minister's id (or global id)."
    )
    topic: str | None = strawberry.field(
        default=None, description="A topic slug (or the topic's global id)."
    )
    from_: date | None = strawberry.field(
        default=None, name="from", description="Published on or after this (local) day."
    )
    to: date | None = strawberry.field(
        default=None, description="Published on or before this (local) day."
    )
    kind: str | None = strawberry.field(default=None, description="speech, comment, ...")
    search: str | None = strawberry.field(
        default=None,
        description=(
            "Words that must all occur in the title or body, in any form (talk: talks, "
            "talked); a * right after the last word makes it a prefix (nucl*). "
            "Sets the edges' snippet and relevance."
        ),
    )

    def to_filter(self) -> Filter:
        return Filter(
            minister_id=(
                minister_id_of(self.minister_id, "filter.ministerId") if self.minister_id else None
            ),
            topic=topic_slug_of(self.topic, "filter.topic") if self.topic else None,
            from_date=self.from_,
            to_date=self.to,
            kind=self.kind,
            search=self.search,
        )
