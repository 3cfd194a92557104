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

from domain.handlers import CommandResult
from graphql_api.types.statement import Statement, payload_statement


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
