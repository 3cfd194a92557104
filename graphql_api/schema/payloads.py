"""The mutations' payload types: what a command wrote, for read-your-writes.

Every payload has ``statementId`` and ``position`` (the log position of its last event; null
when the command was a no-op). A mutation answers once the read models show its write, so a
query sent afterwards sees it; a client whose next read may reach another host sends
``X-Min-Position: <position>`` with it (:mod:`graphql_api.service_layer.consistency`). The statement
payloads also have ``version``, the version of the statement's stream (what ``expectedVersion``
takes); ``recordView``'s has the statement's new ``viewCount`` instead.

The ``statement`` field (the statement as the read models show it once they have reached
``position``) is added by the query layer: give :class:`StatementPayload` a resolver field
``statement`` and every payload below inherits it.
"""

from __future__ import annotations

from typing import Self

import strawberry

from domain.handlers import BatchResult, CommandResult, TopicResult
from graphql_api.context import Context
from graphql_api.schema.loaders import Info, loaders_of
from graphql_api.schema.types.statement import Statement, payload_statement
from graphql_api.schema.types.topic import Topic


@strawberry.type(description="What a mutation of a statement wrote.")
class StatementPayload:
    statement_id: strawberry.ID
    version: int = strawberry.field(
        description="The version of the statement's stream after the command: what "
        "`expectedVersion` takes."
    )
    position: int | None = strawberry.field(
        description="The log position of the last event written; null if nothing was written."
    )

    @classmethod
    def from_result(cls, result: CommandResult) -> Self:
        return cls(
            statement_id=strawberry.ID(result.statement_id),
            version=result.version,
            position=result.position,
        )

    statement: Statement | None = strawberry.field(
        resolver=payload_statement,
        description="The statement as the read models show it once they reach `position`.",
    )


@strawberry.type
class PublishStatementPayload(StatementPayload):
    pass


@strawberry.type
class ReviseStatementPayload(StatementPayload):
    pass


@strawberry.type
class WithdrawStatementPayload(StatementPayload):
    pass


@strawberry.type
class TagStatementPayload(StatementPayload):
    pass


@strawberry.type
class UntagStatementPayload(StatementPayload):
    pass


@strawberry.type
class LinkRelatedPayload(StatementPayload):
    pass


@strawberry.type
class UnlinkRelatedPayload(StatementPayload):
    pass


async def _view_count(root: RecordViewPayload, info: strawberry.Info[Context, None]) -> int | None:
    models = info.context.read_models
    if not root.reached or models is None:
        return None  # the read models may not count this view yet
    statement_id = str(root.statement_id)
    counts: dict[str, int] = await models.view_counts([statement_id])
    return counts.get(statement_id, 0)


@strawberry.type(description="What recordView wrote.")
class RecordViewPayload:
    statement_id: strawberry.ID
    position: int | None = strawberry.field(
        description="The log position of the view: send it as `X-Min-Position` to read at or "
        "after it elsewhere."
    )
    #: Whether the read models showed the view in time (None: nothing waited).
    reached: strawberry.Private[bool | None] = None

    @classmethod
    def from_result(cls, result: CommandResult, *, reached: bool | None = None) -> Self:
        return cls(
            statement_id=strawberry.ID(result.statement_id),
            position=result.position,
            reached=reached,
        )

    view_count: int | None = strawberry.field(
        resolver=_view_count,
        description="The statement's view count once the read models show this view (so it "
        "counts it); null, with a POSITION_NOT_REACHED error, if they did not in time (and "
        "when the server is set not to wait).",
    )
    statement: Statement | None = strawberry.field(
        resolver=payload_statement,
        description="The statement as the read models show it once they reach `position`.",
    )


@strawberry.type(description="A statement's view count.")
class StatementViewCount:
    statement_id: strawberry.ID
    view_count: int


async def _batch_view_counts(
    root: RecordViewsPayload, info: strawberry.Info[Context, None]
) -> list[StatementViewCount] | None:
    models = info.context.read_models
    if not root.reached or models is None:
        return None  # the read models may not count this batch yet
    counts: dict[str, int] = await models.view_counts(root.statement_ids)
    return [
        StatementViewCount(statement_id=strawberry.ID(s), view_count=counts.get(s, 0))
        for s in root.statement_ids
    ]


@strawberry.type(description="What recordViews wrote; a retry gets the same answer.")
class RecordViewsPayload:
    batch_id: str
    position: int = strawberry.field(
        description="The log position of the batch: send it as `X-Min-Position` to read at or "
        "after it elsewhere."
    )
    views_recorded: int = strawberry.field(description="How many views the batch holds.")
    statement_ids: strawberry.Private[tuple[str, ...]]
    #: Whether the read models showed the batch in time (None: nothing waited).
    reached: strawberry.Private[bool | None] = None

    @classmethod
    def from_result(cls, result: BatchResult, *, reached: bool | None = None) -> Self:
        return cls(
            batch_id=result.batch_id,
            position=result.position,
            views_recorded=result.views,
            statement_ids=result.statement_ids,
            reached=reached,
        )

    view_counts: list[StatementViewCount] | None = strawberry.field(
        resolver=_batch_view_counts,
        description="Each statement of the batch with its view count once the read models "
        "show the batch (so it counts the batch's views, and any recorded since); null, with a "
        "POSITION_NOT_REACHED error, if they did not in time.",
    )


async def _payload_topic(root: RenameTopicPayload, info: Info) -> Topic | None:
    row = await loaders_of(info).topic_by_slug.load(root.topic_slug)
    return Topic.from_row(row) if row is not None else None


@strawberry.type(description="What renameTopic wrote.")
class RenameTopicPayload:
    topic_slug: strawberry.Private[str]
    position: int | None = strawberry.field(
        description="The log position of the rename; null if the topic already had the name."
    )

    @classmethod
    def from_result(cls, result: TopicResult) -> Self:
        return cls(topic_slug=result.topic_slug, position=result.position)

    topic: Topic | None = strawberry.field(
        resolver=_payload_topic,
        description="The topic as the read models show it once they reach `position`.",
    )
