"""The mutations' payload types: what a command wrote, for read-your-writes.

Every payload has ``statementId``, ``version`` (the version of the stream the command wrote,
or read when it changed nothing: for ``recordView`` that is the statement's view stream) and
``position`` (the log position of its last event; null when the command was a no-op). A client
that then queries can wait until the read models have reached ``position``.

The ``statement`` field (the statement as the read models show it once they have reached
``position``) is added by the query layer: give :class:`StatementPayload` a resolver field
``statement`` and every payload below inherits it.
"""

from __future__ import annotations

from typing import Self

import strawberry

from domain.handlers import CommandResult, TopicResult
from graphql_api.loaders import Info, loaders_of
from graphql_api.types.statement import Statement, payload_statement
from graphql_api.types.topic import Topic


@strawberry.type(description="What a mutation of a statement wrote.")
class StatementPayload:
    statement_id: strawberry.ID
    version: int = strawberry.field(
        description="The version of the stream written (for recordView: the view stream)."
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


@strawberry.type
class RecordViewPayload(StatementPayload):
    pass


async def _payload_topic(root: RenameTopicPayload, info: Info) -> Topic | None:
    wait = info.context.extra.get("wait_for_position")
    if wait is not None and root.position is not None:
        await wait(root.position)
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
