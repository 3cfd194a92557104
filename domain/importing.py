"""Importing parsed archive pages through the command handlers, idempotently.

A page's statement id is derived from its title, so the related titles listed at the bottom of
one page name the ids those pages get when imported, whatever the order. A related statement
that is not in the store yet gets a durable request on ``related-requests-{its id}``; importing
it later reads those requests and makes the links. Every step checks state or uses derived
event ids, so importing a page again writes nothing, and an import cut short is completed by
running it again.
"""

from __future__ import annotations

import functools
import uuid
from dataclasses import dataclass, fields, replace
from typing import Final

from domain.archive_page import ArchivePage, parse_archive_page
from domain.commands import (
    CommandMetadata,
    ImportViews,
    LinkRelated,
    PublishStatement,
    RequestRelatedLink,
    TagStatement,
)
from domain.errors import (
    DomainError,
    PageRejected,
    RelatedNotFound,
    RelatedWithdrawn,
    SlugTaken,
    StatementAlreadyExists,
    ViewsAlreadyImported,
)
from domain.handlers import StatementHandlers
from domain.ids import derived_id
from domain.slugs import MAX_SLUG_LENGTH, slugify, title_slug, truncate_slug
from domain.statement import INITIAL_STATE, decide, replay

#: Namespace of the statement ids derived from titles. Never change it: it names stored data.
IMPORT_NAMESPACE: Final = uuid.UUID("82f565f7-b01f-463d-babd-53f73d17bbcb")
#: The source of imported view counts: the archive site, whichever file a page came from.
ARCHIVE_VIEWS_SOURCE: Final = "archive"
IMPORT_ACTOR: Final = "importer"


@dataclass(frozen=True, slots=True)
class ImportSummary:
    """What importing pages did; summaries of several pages add up with ``+``.

    ``events_written`` counts every event appended. A view import whose statement already
    existed is idempotent by event id and cannot tell a first write from a replay, so it is
    counted in ``view_imports`` only.
    """

    pages: int = 0
    published: int = 0
    skipped: int = 0
    events_written: int = 0
    view_imports: int = 0
    links_made: int = 0
    links_pending: int = 0

    def __add__(self, other: ImportSummary) -> ImportSummary:
        return ImportSummary(
            *(getattr(self, f.name) + getattr(other, f.name) for f in fields(ImportSummary))
        )


@functools.lru_cache(maxsize=65_536)
def statement_id_for_title(title: str) -> str:
    """The id an imported statement gets: a UUIDv5 of its title, ignoring case and punctuation."""
    key = slugify(title) or " ".join(title.split()).casefold()
    return derived_id(IMPORT_NAMESPACE, "statement", key)


def publish_command(page: ArchivePage, *, actor: str = IMPORT_ACTOR) -> PublishStatement:
    """The command that publishes ``page``'s statement (with its title's slug)."""
    statement_id = statement_id_for_title(page.title)
    return PublishStatement(
        statement_id=statement_id,
        title=page.title,
        kind=page.kind,
        minister=page.minister,
        # A title without a date says nothing better than the day it was published.
        occurred_on=page.occurred_on or page.published_at.date(),
        published_at=page.published_at,
        paragraphs=page.paragraphs,
        location=page.location,
        language=page.language,
        source_url=None,
        slug=title_slug(page.title) or f"statement-{statement_id[:8]}",
        meta=_metadata(statement_id, actor),
    )


async def import_text(
    handlers: StatementHandlers, text: str, *, source: str, actor: str = IMPORT_ACTOR
) -> ImportSummary:
    """Parse one page and import it; raises only DomainErrors for bad pages."""
    return await import_page(handlers, parse_archive_page(text, source=source), actor=actor)


async def import_page(
    handlers: StatementHandlers, page: ArchivePage, *, actor: str = IMPORT_ACTOR
) -> ImportSummary:
    """Import one parsed page: publish, tag, import views, link related statements.

    Everything that can be checked without the store is checked before the first write, so a
    page that breaks a rule (PageRejected) leaves nothing behind.
    """
    publish = publish_command(page, actor=actor)
    statement_id = publish.statement_id
    meta = publish.meta
    # The page's category names the minister (publish_command has it); only tags are topics.
    tag = (
        TagStatement(statement_id=statement_id, topics=page.tags, meta=meta) if page.tags else None
    )
    try:
        published_state = replay(decide(publish, INITIAL_STATE))
        if tag is not None:
            decide(tag, published_state)
    except DomainError as error:
        raise PageRejected(page.source, error) from error

    summary = ImportSummary(pages=1)
    _, state = await handlers.load_statement(statement_id)
    published_now = False
    if state.exists:
        summary += ImportSummary(skipped=1)
    else:
        written = await _publish(handlers, publish)
        published_now = written > 0
        summary += ImportSummary(published=int(published_now), skipped=int(not published_now))
        summary += ImportSummary(events_written=written)
        _, state = await handlers.load_statement(statement_id)
    if state.withdrawn:
        # A withdrawn statement takes no further commands; its page adds nothing.
        return summary

    if tag is not None:
        result = await handlers.tag_statement(tag)
        summary += ImportSummary(events_written=result.events_written)
    if page.views:
        summary += await _import_views(handlers, statement_id, page.views, meta, published_now)
    for title in page.related_titles:
        related_id = statement_id_for_title(title)
        if related_id != statement_id:
            summary += await _link_or_request(handlers, statement_id, related_id, meta)
    for requester in await handlers.pending_link_requests(statement_id):
        summary += await _link_if_live(handlers, requester, statement_id, meta)
    return summary


def _metadata(statement_id: str, actor: str) -> CommandMetadata:
    # Deterministic, so that appends made idempotent by derived event ids stay identical
    # when a page is imported again.
    return CommandMetadata(
        actor=actor,
        correlation_id=derived_id(IMPORT_NAMESPACE, "import", statement_id),
        causation_id=None,
    )


async def _publish(handlers: StatementHandlers, command: PublishStatement) -> int:
    """Publish, falling back to a slug made unique with the id; returns the events written."""
    try:
        return (await handlers.publish_statement(command)).events_written
    except StatementAlreadyExists:
        # Another import of the same page won the race.
        return 0
    except SlugTaken:
        pass
    base = command.slug or ""
    suffix = command.statement_id[:8]
    slug = f"{truncate_slug(base, MAX_SLUG_LENGTH - len(suffix) - 1)}-{suffix}"
    fallback = replace(command, slug=slug)
    try:
        return (await handlers.publish_statement(fallback)).events_written
    except StatementAlreadyExists:
        return 0


async def _import_views(
    handlers: StatementHandlers,
    statement_id: str,
    count: int,
    meta: CommandMetadata,
    published_now: bool,
) -> ImportSummary:
    command = ImportViews(
        statement_id=statement_id, count=count, source=ARCHIVE_VIEWS_SOURCE, meta=meta
    )
    try:
        result = await handlers.import_views(command)
    except ViewsAlreadyImported:
        # The first import from the archive wins; a later count is not added on top.
        return ImportSummary()
    # Right after publishing the views cannot have been imported before; otherwise the
    # append may have been a replay, which looks the same.
    written = result.events_written if published_now else 0
    return ImportSummary(view_imports=1, events_written=written)


async def _link_or_request(
    handlers: StatementHandlers, statement_id: str, related_id: str, meta: CommandMetadata
) -> ImportSummary:
    _, related = await handlers.load_statement(related_id)
    if related.exists:
        return await _link_if_live(handlers, statement_id, related_id, meta)
    request = RequestRelatedLink(statement_id=related_id, requested_by=statement_id, meta=meta)
    result = await handlers.request_related_link(request)
    # The related page may have been imported meanwhile, after it read its requests: look
    # again, so that one of the two imports always makes the link.
    _, related = await handlers.load_statement(related_id)
    if related.exists:
        linked = await _link_if_live(handlers, statement_id, related_id, meta)
        return linked + ImportSummary(events_written=result.events_written)
    return ImportSummary(events_written=result.events_written, links_pending=1)


async def _link_if_live(
    handlers: StatementHandlers, statement_id: str, related_id: str, meta: CommandMetadata
) -> ImportSummary:
    _, state = await handlers.load_statement(statement_id)
    if not state.exists or state.withdrawn:
        return ImportSummary()
    command = LinkRelated(statement_id=statement_id, related_id=related_id, meta=meta)
    try:
        result = await handlers.link_related(command)
    except (RelatedNotFound, RelatedWithdrawn):
        return ImportSummary()
    return ImportSummary(events_written=result.events_written, links_made=result.events_written)
