"""The mutations' input types, and their translation into domain commands (no rules here).

Every input but ``recordView``'s has an optional ``expectedVersion``: null lets the command retry
on a concurrent change, a number makes any other version a CONFLICT. Statements are named by
``statementId``, a UUID, or by the Statement's global id (:mod:`graphql_api.schema.ids` parses both
and refuses anything else).
"""

from __future__ import annotations

import re
import uuid
from datetime import date, datetime
from typing import Final

import strawberry

from domain.commands import (
    CommandMetadata,
    LinkRelated,
    PublishStatement,
    RecordView,
    RecordViews,
    RenameTopic,
    ReviseStatement,
    TagStatement,
    UnlinkRelated,
    UntagStatement,
    WithdrawStatement,
)
from domain.events import MinisterRef, ViewAt
from domain.ministers import FOREIGN_MINISTER, KNOWN_MINISTERS
from domain.slugs import slugify
from domain.view_batches import MAX_PROBLEMS_LISTED
from graphql_api.errors import BadUserInput, item_entry, items_message
from graphql_api.schema.ids import (
    minister_id_of,
    statement_id_of,
    topic_name_or_slug,
    topic_slug_of,
)

#: The title a minister gets when the input names none and the minister is not a known one.
DEFAULT_MINISTER_TITLE: Final = FOREIGN_MINISTER

_BLANK_LINES: Final = re.compile(r"\n[ \t\f\v]*\n")

EXPECTED_VERSION_DOC: Final = (
    "The statement's version the client last saw; null retries on a concurrent change, a "
    "number makes any other version a CONFLICT."
)
STATEMENT_ID_DOC: Final = "The statement: its statementId (a UUID) or its id (global id)."


def split_paragraphs(body: str) -> tuple[str, ...]:
    """The paragraphs of a body: text separated by blank lines, each stripped, none empty."""
    text = body.replace("\r\n", "\n").replace("\r", "\n")
    return tuple(part.strip() for part in _BLANK_LINES.split(text) if part.strip())


def minister_ref(
    minister_id: str | None, minister_name: str | None, minister_title: str | None
) -> MinisterRef | None:
    """The minister an input names, by id, by name or both; None if it names none.

    A known minister (``domain.ministers``) is found by id or by name; another one gets the
    slug of the name as id and, unless given, the default title.
    """
    wanted = minister_id.strip() if minister_id else ""
    wanted_id = minister_id_of(wanted, "ministerId") if wanted else None
    name = " ".join(minister_name.split()) if minister_name else None
    if wanted_id is None and not name:
        return None
    known = None
    for candidate in KNOWN_MINISTERS:
        if candidate.id == wanted_id or (
            wanted_id is None and name and candidate.name.casefold() == name.casefold()
        ):
            known = candidate
            break
    if not name:
        if known is None:
            raise BadUserInput(
                f"ministerId: {wanted_id!r} is not a known minister; give ministerName as well"
            )
        name = known.name
    title = " ".join(minister_title.split()) if minister_title else None
    return MinisterRef(
        id=wanted_id or (known.id if known else slugify(name)),
        name=name,
        title=title or (known.title if known else DEFAULT_MINISTER_TITLE),
    )


@strawberry.input(description="A new statement.")
class PublishStatementInput:
    title: str
    body: str = strawberry.field(description="The text; paragraphs are separated by blank lines.")
    kind: str = strawberry.field(description="speech, comment, interview, remarks, ...")
    occurred_on: date = strawberry.field(description="The day the statement was made.")
    published_at: datetime = strawberry.field(description="When it was published (with offset).")
    minister_name: str | None = strawberry.field(
        default=None, description="The minister's name; the id is derived from it."
    )
    minister_id: str | None = strawberry.field(
        default=None,
        description="The minister's id (a slug, or the Minister's global id), instead of or "
        "with the name.",
    )
    minister_title: str | None = strawberry.field(
        default=None, description=f"The minister's title (default: {DEFAULT_MINISTER_TITLE})."
    )
    location: str | None = None
    slug: str | None = strawberry.field(
        default=None, description="The statement's slug (default: made from the title)."
    )
    topics: list[str] | None = strawberry.field(
        default=None, description="Topic names to tag the new statement with."
    )
    statement_id: strawberry.ID | None = strawberry.field(
        default=None,
        description="A UUID chosen by the client, so that a retry cannot publish twice "
        "(default: a new one).",
    )
    language: str = "en"
    source_url: str | None = None
    expected_version: int | None = strawberry.field(default=None, description=EXPECTED_VERSION_DOC)

    def new_statement_id(self) -> str:
        if self.statement_id is None:
            return str(uuid.uuid4())
        return statement_id_of(self.statement_id)

    def to_command(self, meta: CommandMetadata, statement_id: str) -> PublishStatement:
        return PublishStatement(
            statement_id=statement_id,
            title=self.title,
            kind=self.kind,
            minister=minister_ref(self.minister_id, self.minister_name, self.minister_title),
            occurred_on=self.occurred_on,
            published_at=self.published_at,
            paragraphs=split_paragraphs(self.body),
            location=self.location,
            language=self.language,
            source_url=self.source_url,
            slug=self.slug,
            meta=meta,
            expected_version=self.expected_version,
        )

    def tag_command(self, meta: CommandMetadata, statement_id: str) -> TagStatement | None:
        if not self.topics:
            return None
        return TagStatement(statement_id=statement_id, topics=tuple(self.topics), meta=meta)


@strawberry.input(description="Corrections to a statement: null fields stay as they are.")
class ReviseStatementInput:
    statement_id: strawberry.ID = strawberry.field(description=STATEMENT_ID_DOC)
    reason: str = strawberry.field(description="Why the statement is revised (required).")
    title: str | None = None
    body: str | None = strawberry.field(
        default=None, description="The new text; paragraphs are separated by blank lines."
    )
    kind: str | None = None
    minister_name: str | None = None
    minister_id: str | None = None
    minister_title: str | None = None
    location: str | None = strawberry.field(
        default=None, description='The new location; "" removes it.'
    )
    occurred_on: date | None = None
    expected_version: int | None = strawberry.field(default=None, description=EXPECTED_VERSION_DOC)

    def to_command(self, meta: CommandMetadata) -> ReviseStatement:
        return ReviseStatement(
            statement_id=statement_id_of(self.statement_id),
            reason=self.reason,
            title=self.title,
            kind=self.kind,
            minister=minister_ref(self.minister_id, self.minister_name, self.minister_title),
            location=self.location,
            occurred_on=self.occurred_on,
            paragraphs=split_paragraphs(self.body) if self.body is not None else None,
            meta=meta,
            expected_version=self.expected_version,
        )


@strawberry.input(description="Withdraw a statement; it then takes no further changes.")
class WithdrawStatementInput:
    statement_id: strawberry.ID = strawberry.field(description=STATEMENT_ID_DOC)
    reason: str
    expected_version: int | None = strawberry.field(default=None, description=EXPECTED_VERSION_DOC)

    def to_command(self, meta: CommandMetadata) -> WithdrawStatement:
        return WithdrawStatement(
            statement_id=statement_id_of(self.statement_id),
            reason=self.reason,
            meta=meta,
            expected_version=self.expected_version,
        )


@strawberry.input(description="Topics (by name) to add to a statement; present ones are skipped.")
class TagStatementInput:
    statement_id: strawberry.ID = strawberry.field(description=STATEMENT_ID_DOC)
    topics: list[str]
    expected_version: int | None = strawberry.field(default=None, description=EXPECTED_VERSION_DOC)

    def to_command(self, meta: CommandMetadata) -> TagStatement:
        return TagStatement(
            statement_id=statement_id_of(self.statement_id),
            topics=tuple(self.topics),
            meta=meta,
            expected_version=self.expected_version,
        )


@strawberry.input(description="A topic (by name, slug or global id) to remove from a statement.")
class UntagStatementInput:
    statement_id: strawberry.ID = strawberry.field(description=STATEMENT_ID_DOC)
    topic: str
    expected_version: int | None = strawberry.field(default=None, description=EXPECTED_VERSION_DOC)

    def to_command(self, meta: CommandMetadata) -> UntagStatement:
        return UntagStatement(
            statement_id=statement_id_of(self.statement_id),
            topic=topic_name_or_slug(self.topic),
            meta=meta,
            expected_version=self.expected_version,
        )


@strawberry.input(description="Link a statement to a related, published statement.")
class LinkRelatedInput:
    statement_id: strawberry.ID = strawberry.field(description=STATEMENT_ID_DOC)
    related_id: strawberry.ID = strawberry.field(description="The related statement, named alike.")
    expected_version: int | None = strawberry.field(default=None, description=EXPECTED_VERSION_DOC)

    def to_command(self, meta: CommandMetadata) -> LinkRelated:
        return LinkRelated(
            statement_id=statement_id_of(self.statement_id),
            related_id=statement_id_of(self.related_id, "relatedId"),
            meta=meta,
            expected_version=self.expected_version,
        )


@strawberry.input(description="Remove the link from a statement to a related statement.")
class UnlinkRelatedInput:
    statement_id: strawberry.ID = strawberry.field(description=STATEMENT_ID_DOC)
    related_id: strawberry.ID = strawberry.field(description="The related statement, named alike.")
    expected_version: int | None = strawberry.field(default=None, description=EXPECTED_VERSION_DOC)

    def to_command(self, meta: CommandMetadata) -> UnlinkRelated:
        return UnlinkRelated(
            statement_id=statement_id_of(self.statement_id),
            related_id=statement_id_of(self.related_id, "relatedId"),
            meta=meta,
            expected_version=self.expected_version,
        )


@strawberry.input(description="One view of a statement.")
class RecordViewInput:
    statement_id: strawberry.ID = strawberry.field(description=STATEMENT_ID_DOC)

    def to_command(self, meta: CommandMetadata) -> RecordView:
        # Views never conflict with edits: they take no expected version.
        return RecordView(statement_id=statement_id_of(self.statement_id), meta=meta)


@strawberry.input(description="One view in a batch: which statement, and when.")
class ViewInput:
    statement_id: strawberry.ID = strawberry.field(description=STATEMENT_ID_DOC)
    at: datetime = strawberry.field(
        description="When the reader viewed it, with a UTC offset; it counts on that UTC day. "
        "At most 5 minutes ahead of the server's clock."
    )


@strawberry.input(description="A batch of views, recorded whole or not at all.")
class RecordViewsInput:
    batch_id: str = strawberry.field(
        description="The sender's name for this batch, unique per token. Retrying with the "
        "same batchId and views records nothing twice and gets the same answer; the same "
        "batchId with other views is a CONFLICT."
    )
    views: list[ViewInput] = strawberry.field(
        description="The views, up to 1,000 by default (`STATEMENTS_INGEST_MAX_BATCH`)."
    )

    def to_command(self, meta: CommandMetadata, received_at: datetime) -> RecordViews:
        views: list[ViewAt] = []
        problems: list[str] = []
        for index, view in enumerate(self.views):
            try:
                statement_id = statement_id_of(view.statement_id, f"views[{index}].statementId")
            except BadUserInput as error:
                problems.append(error.message)
                continue
            views.append(ViewAt(statement_id, view.at))
        if problems:
            # Every wrong id is named, as the domain names every wrong view.
            raise BadUserInput(
                items_message(problems, len(problems)),
                problems=[item_entry(p) for p in problems[:MAX_PROBLEMS_LISTED]],
            )
        return RecordViews(
            batch_id=self.batch_id, views=tuple(views), received_at=received_at, meta=meta
        )


@strawberry.input(description="A new display name for a topic; its slug stays.")
class RenameTopicInput:
    topic: strawberry.ID = strawberry.field(description="The topic's slug (or its global id).")
    name: str = strawberry.field(
        description="The new display name. It must make the topic's slug: case, spacing and "
        "punctuation may change, the words may not (tagging finds topics by slug)."
    )

    def to_command(self, meta: CommandMetadata) -> RenameTopic:
        return RenameTopic(topic=topic_slug_of(self.topic, "topic"), name=self.name, meta=meta)
