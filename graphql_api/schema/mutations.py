"""The Mutation type: each field turns its input into a command and runs the handler.

No rule lives here: the inputs translate (:mod:`graphql_api.schema.inputs`), the domain decides, and
the role checks come from :mod:`graphql_api.security.auth`. Errors are reported by
:mod:`graphql_api.errors` (DomainError -> its code, StoreUnavailableError -> retryable
SERVICE_UNAVAILABLE).

Every mutation runs its commands inside
:func:`graphql_api.service_layer.consistency.read_your_writes`: it answers once the read models show
what it wrote, so any query sent after the answer sees it.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Final, TypeAlias

import strawberry

from domain.commands import Command, PublishStatement, TagStatement
from domain.handlers import CommandResult
from domain.statement import INITIAL_STATE, decide, replay
from graphql_api.context import Context
from graphql_api.schema.inputs import (
    LinkRelatedInput,
    PublishStatementInput,
    RecordViewInput,
    RecordViewsInput,
    RenameTopicInput,
    ReviseStatementInput,
    TagStatementInput,
    UnlinkRelatedInput,
    UntagStatementInput,
    WithdrawStatementInput,
)
from graphql_api.schema.payloads import (
    LinkRelatedPayload,
    PublishStatementPayload,
    RecordViewPayload,
    RecordViewsPayload,
    RenameTopicPayload,
    ReviseStatementPayload,
    TagStatementPayload,
    UnlinkRelatedPayload,
    UntagStatementPayload,
    WithdrawStatementPayload,
)
from graphql_api.security.auth import require_role
from graphql_api.security.ratelimit import INGEST, check_view_rate
from graphql_api.service_layer.consistency import read_your_writes

Info: TypeAlias = strawberry.Info[Context, None]

EDITOR: Final = "editor"


def _check_publish_with_topics(publish: PublishStatement, tag: TagStatement) -> None:
    """Run the domain's rules on both commands before writing, so bad topics publish nothing."""
    tag_state = replay(decide(publish, INITIAL_STATE))
    decide(tag, tag_state)


async def _publish(context: Context, input: PublishStatementInput) -> CommandResult:
    meta = context.command_metadata()
    statement_id = input.new_statement_id()
    publish = input.to_command(meta, statement_id)
    tag = input.tag_command(meta, statement_id)
    if tag is None:
        return await context.handlers.handle(publish)
    _check_publish_with_topics(publish, tag)
    published = await context.handlers.handle(publish)
    tagged = await context.handlers.handle(tag)
    return tagged if tagged.position is not None else published


async def _handle(info: Info, command: Command) -> CommandResult:
    """Run one command; answer once the read models show what it wrote."""
    async with read_your_writes(info):
        return await info.context.handlers.handle(command)


async def publish_statement(info: Info, input: PublishStatementInput) -> PublishStatementPayload:
    require_role(info, EDITOR)
    async with read_your_writes(info):
        result = await _publish(info.context, input)
    return PublishStatementPayload.from_result(result)


async def revise_statement(info: Info, input: ReviseStatementInput) -> ReviseStatementPayload:
    require_role(info, EDITOR)
    command = input.to_command(info.context.command_metadata())
    return ReviseStatementPayload.from_result(await _handle(info, command))


async def withdraw_statement(info: Info, input: WithdrawStatementInput) -> WithdrawStatementPayload:
    require_role(info, EDITOR)
    command = input.to_command(info.context.command_metadata())
    return WithdrawStatementPayload.from_result(await _handle(info, command))


async def tag_statement(info: Info, input: TagStatementInput) -> TagStatementPayload:
    require_role(info, EDITOR)
    command = input.to_command(info.context.command_metadata())
    return TagStatementPayload.from_result(await _handle(info, command))


async def untag_statement(info: Info, input: UntagStatementInput) -> UntagStatementPayload:
    require_role(info, EDITOR)
    command = input.to_command(info.context.command_metadata())
    return UntagStatementPayload.from_result(await _handle(info, command))


async def link_related(info: Info, input: LinkRelatedInput) -> LinkRelatedPayload:
    require_role(info, EDITOR)
    command = input.to_command(info.context.command_metadata())
    return LinkRelatedPayload.from_result(await _handle(info, command))


async def unlink_related(info: Info, input: UnlinkRelatedInput) -> UnlinkRelatedPayload:
    require_role(info, EDITOR)
    command = input.to_command(info.context.command_metadata())
    return UnlinkRelatedPayload.from_result(await _handle(info, command))


async def record_view(info: Info, input: RecordViewInput) -> RecordViewPayload:
    check_view_rate(info.context)
    command = input.to_command(info.context.command_metadata())
    async with read_your_writes(info) as written:
        result = await info.context.handlers.handle(command)
    return RecordViewPayload.from_result(result, reached=written.reached)


async def record_views(info: Info, input: RecordViewsInput) -> RecordViewsPayload:
    require_role(info, INGEST)
    command = input.to_command(info.context.command_metadata(), datetime.now(UTC))
    # A batch refused for its shape costs the sender no views of its rate.
    info.context.handlers.check_views(command)
    check_view_rate(info.context, len(command.views), "recordViews")
    async with read_your_writes(info) as written:
        result = await info.context.handlers.record_views(command)
    return RecordViewsPayload.from_result(result, reached=written.reached)


async def rename_topic(info: Info, input: RenameTopicInput) -> RenameTopicPayload:
    require_role(info, EDITOR)
    command = input.to_command(info.context.command_metadata())
    async with read_your_writes(info):
        result = await info.context.handlers.rename_topic(command)
    return RenameTopicPayload.from_result(result)


@strawberry.type(description="Changes to statements; each takes one `input` argument.")
class Mutation:
    publish_statement: PublishStatementPayload = strawberry.mutation(
        resolver=publish_statement, description="Publish a new statement (editor)."
    )
    revise_statement: ReviseStatementPayload = strawberry.mutation(
        resolver=revise_statement, description="Correct fields of a statement (editor)."
    )
    withdraw_statement: WithdrawStatementPayload = strawberry.mutation(
        resolver=withdraw_statement, description="Withdraw a statement (editor)."
    )
    tag_statement: TagStatementPayload = strawberry.mutation(
        resolver=tag_statement, description="Tag a statement with topics (editor)."
    )
    untag_statement: UntagStatementPayload = strawberry.mutation(
        resolver=untag_statement, description="Remove a topic from a statement (editor)."
    )
    link_related: LinkRelatedPayload = strawberry.mutation(
        resolver=link_related, description="Link a statement to a related one (editor)."
    )
    unlink_related: UnlinkRelatedPayload = strawberry.mutation(
        resolver=unlink_related, description="Remove a related link (editor)."
    )
    record_view: RecordViewPayload = strawberry.mutation(
        resolver=record_view,
        description="Record one view of a statement (anyone; rate-limited per client, see "
        "the API manual).",
    )
    record_views: RecordViewsPayload = strawberry.mutation(
        resolver=record_views,
        description="Record a batch of views in one atomic append (ingest); idempotent per "
        "batchId, rate-limited per token by views, see the API manual.",
    )
    rename_topic: RenameTopicPayload = strawberry.mutation(
        resolver=rename_topic,
        description="Give a topic a new display name (editor); tagging never renames one.",
    )
