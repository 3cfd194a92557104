"""Importing many parsed archive pages at once: decided in memory, written in a few bulk appends.

``import_page`` (``domain.importing``) imports one page through the command handlers: about
fifteen stream loads and ten appends, each its own transaction. A batch does the same work
with the same rules in three rounds of ``EventLog.append_many``, each one bulk write:

1. the slug reservations of the pages whose statement is new;
2. each new statement's ``StatementPublished`` and every page's new ``Tagged`` events;
3. the related links, the link requests for statements not in the log yet, the links that
   earlier requests asked for, and the imported view counts.

Everything a page needs to know is read before the first round, in a few reads
(``EventLog.load_many``): the states of its statement and of the statements it lists, and
the requests waiting for it. A related title resolves to its statement id by the title's
slug, computed once per title. A page that breaks a rule is rejected before anything of it
is written. An append that finds the log other than it was read (a conflict, a slug taken by
another statement) writes nothing, and its pages are then imported again, one by one, through
``import_page``, which decides from what the log holds by then. Every append is idempotent as
``import_page``'s are, so a batch cut short is completed by importing it again.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Final

from domain.archive_page import ArchivePage
from domain.commands import (
    CommandMetadata,
    ImportViews,
    LinkRelated,
    PublishStatement,
    TagStatement,
)
from domain.errors import DomainError, PageRejected
from domain.events import RelatedLinkRequested, SlugReserved
from domain.handlers import StatementHandlers, metadata_of
from domain.ids import link_request_event_id, views_import_event_id
from domain.importing import (
    ARCHIVE_VIEWS_SOURCE,
    IMPORT_ACTOR,
    ImportSummary,
    import_page,
    publish_command,
    statement_id_for_title,
)
from domain.link_requests import requesters
from domain.ports import Appended, EventLog, StreamAppend
from domain.statement import (
    INITIAL_STATE,
    StatementState,
    decide,
    replay,
    statement_slug,
)
from domain.streams import (
    related_requests_stream,
    slug_stream,
    statement_stream,
    views_stream,
)

#: Pages decided and written together. A round's appends stay far below the store's queue
#: limit, and a batch's reads stay a handful of queries.
PAGES_PER_BATCH: Final = 500


@dataclass
class BatchResult:
    """What importing a batch did, and the pages it rejected (nothing of them was written)."""

    summary: ImportSummary = field(default_factory=ImportSummary)
    rejected: list[DomainError] = field(default_factory=list)
    #: The sources of the pages imported whole (the rejected ones are not among them).
    imported: list[str] = field(default_factory=list)


@dataclass
class _Plan:
    """One page on its way through the rounds."""

    page: ArchivePage
    publish: PublishStatement
    meta: CommandMetadata
    #: The events and state of the statement when it is new: published, then tagged.
    new_events: list[object]
    new_state: StatementState
    published_now: bool = False
    #: Set when an append of this page failed: it is imported again on its own.
    retry: bool = False

    @property
    def statement_id(self) -> str:
        return self.publish.statement_id


@dataclass
class _Stream:
    """A statement stream as this batch knows it: its version and state after our appends."""

    version: int
    state: StatementState


class _Append:
    """Events bound for one stream in a round, and the pages whose work they carry."""

    def __init__(self, stream_id: str, expected: int | None, meta: CommandMetadata) -> None:
        self.stream_id = stream_id
        self.expected = expected
        self.meta = meta
        self.events: list[object] = []
        self.event_ids: list[str] | None = None
        self.plans: list[_Plan] = []

    def request(self) -> StreamAppend:
        return StreamAppend(
            self.stream_id, self.events, self.expected, metadata_of(self.meta), self.event_ids
        )


async def import_batch(
    handlers: StatementHandlers,
    pages: Sequence[ArchivePage],
    *,
    actor: str = IMPORT_ACTOR,
) -> BatchResult:
    """Import ``pages`` (parsed) in bulk, with the rules and the outcome of ``import_page``."""
    log = handlers.log
    result = BatchResult()
    plans: list[_Plan] = []
    later: list[ArchivePage] = []
    planned: set[str] = set()
    for page in pages:
        try:
            plan = _plan(page, actor)
        except PageRejected as rejected:
            result.rejected.append(rejected)
            continue
        if plan.statement_id in planned:
            # Two files of one statement: the second is decided once the first is written.
            later.append(page)
            continue
        planned.add(plan.statement_id)
        plans.append(plan)

    streams, waiting = await _read(log, plans)
    summary = ImportSummary(pages=len(plans))
    summary += await _reserve_slugs(log, plans, streams)
    summary += await _publish(log, plans, streams)
    summary += await _link_and_count(log, plans, streams, waiting)

    published_here: set[str] = set()
    for plan in plans:
        if plan.retry:
            # Counted again by import_page, from what the log holds now.
            summary += ImportSummary(pages=-1)
            later.append(plan.page)
            if plan.published_now:
                published_here.add(plan.page.source)
        else:
            result.imported.append(plan.page.source)
    for page in later:
        try:
            counted = await import_page(handlers, page, actor=actor)
        except DomainError as error:
            result.rejected.append(error)
            continue
        if page.source in published_here:
            # Published by the rounds above (and counted there), not found present.
            counted = replace(counted, skipped=0)
        summary += counted
        result.imported.append(page.source)
    result.summary = summary
    return result


def _plan(page: ArchivePage, actor: str) -> _Plan:
    publish = publish_command(page, actor=actor)
    try:
        events = decide(publish, INITIAL_STATE)
        state = replay(events)
        tagged = decide(_tag(publish, page), state) if page.tags else []
    except DomainError as error:
        raise PageRejected(page.source, error) from error
    # What a new statement's stream gets, decided once: the publish round writes it as is.
    return _Plan(page, publish, publish.meta, [*events, *tagged], replay(tagged, state))


def _tag(publish: PublishStatement, page: ArchivePage) -> TagStatement:
    return TagStatement(statement_id=publish.statement_id, topics=page.tags, meta=publish.meta)


def _related_ids(plan: _Plan) -> list[str]:
    seen: dict[str, None] = {}
    for title in plan.page.related_titles:
        related_id = statement_id_for_title(title)
        if related_id != plan.statement_id:
            seen.setdefault(related_id, None)
    return list(seen)


async def _read(
    log: EventLog, plans: Sequence[_Plan]
) -> tuple[dict[str, _Stream], dict[str, tuple[str, ...]]]:
    """The statements the batch touches, and who waits to be linked to each page's statement."""
    ids = {plan.statement_id for plan in plans}
    ids.update(r for plan in plans for r in _related_ids(plan))
    wanted = [statement_stream(i) for i in ids] + [related_requests_stream(i) for i in ids]
    loaded = await log.load_many(wanted)
    waiting = {
        statement_id: requesters(events)
        for statement_id in ids
        if (events := loaded.get(related_requests_stream(statement_id), (0, []))[1])
    }
    # The statements that asked to be linked to the pages' statements are needed too.
    more = {q for plan in plans for q in waiting.get(plan.statement_id, ())} - ids
    if more:
        loaded.update(await log.load_many([statement_stream(q) for q in more]))
        ids |= more
    streams: dict[str, _Stream] = {}
    for statement_id in ids:
        version, events = loaded.get(statement_stream(statement_id), (0, []))
        streams[statement_id] = _Stream(version, replay(events))
    return streams, waiting


async def _write(
    log: EventLog, appends: Iterable[_Append], *, retry_failed: bool = True
) -> list[tuple[_Append, Appended]]:
    """One bulk write; the pages of a failed append are imported again on their own."""
    chosen = [a for a in appends if a.events]
    answers = await log.append_many([a.request() for a in chosen])
    written: list[tuple[_Append, Appended]] = []
    for append, answer in zip(chosen, answers, strict=True):
        if not isinstance(answer, DomainError):
            written.append((append, answer))
        elif retry_failed:
            for plan in append.plans:
                plan.retry = True
    return written


async def _reserve_slugs(
    log: EventLog, plans: Sequence[_Plan], streams: dict[str, _Stream]
) -> ImportSummary:
    appends: list[_Append] = []
    for plan in plans:
        if streams[plan.statement_id].state.exists:
            continue
        slug = statement_slug(plan.publish)
        append = _Append(slug_stream(slug), 0, plan.meta)
        append.events.append(SlugReserved(slug=slug, statement_id=plan.statement_id))
        append.plans.append(plan)
        appends.append(append)
    # A slug already reserved (by another statement, or by ours in an import cut short) is a
    # conflict: import_page sorts out which, and falls back to a slug with the id.
    written = await _write(log, appends)
    return ImportSummary(events_written=sum(len(a.events) for a, _ in written))


async def _publish(
    log: EventLog, plans: Sequence[_Plan], streams: dict[str, _Stream]
) -> ImportSummary:
    appends: list[_Append] = []
    for plan in plans:
        if plan.retry:
            continue
        known = streams[plan.statement_id]
        append = _Append(statement_stream(plan.statement_id), known.version, plan.meta)
        append.plans.append(plan)
        state = known.state
        try:
            if not state.exists:
                append.events.extend(plan.new_events)
            elif plan.page.tags and not state.withdrawn:
                append.events.extend(decide(_tag(plan.publish, plan.page), state))
        except DomainError:
            # Only a statement changed since its first import gets here (too many tags, say):
            # import_page reports it exactly as it does on its own.
            plan.retry = True
            continue
        appends.append(append)
    summary = ImportSummary()
    for append, appended in await _write(log, appends):
        (plan,) = append.plans
        known = streams[plan.statement_id]
        plan.published_now = not known.state.exists
        state = plan.new_state if plan.published_now else replay(append.events, known.state)
        streams[plan.statement_id] = _Stream(appended.version, state)
        summary += ImportSummary(
            published=int(plan.published_now), events_written=len(append.events)
        )
    skipped = sum(1 for p in plans if not p.retry and not p.published_now)
    return summary + ImportSummary(skipped=skipped)


async def _link_and_count(
    log: EventLog,
    plans: Sequence[_Plan],
    streams: dict[str, _Stream],
    waiting: dict[str, tuple[str, ...]],
) -> ImportSummary:
    statements: dict[str, _Append] = {}
    running: dict[str, StatementState] = {}
    requests: dict[str, _Append] = {}
    views: list[_Append] = []

    def link(plan: _Plan, statement_id: str, related_id: str) -> None:
        known = streams[statement_id]
        state = running.get(statement_id, known.state)
        if not state.exists or state.withdrawn:
            return
        related = streams[related_id].state
        if not related.exists or related.withdrawn:
            return
        command = LinkRelated(statement_id=statement_id, related_id=related_id, meta=plan.meta)
        try:
            events = decide(command, state)
        except DomainError:
            # Too many related statements already: import_page skips or reports it as usual.
            plan.retry = True
            return
        if not events:
            return
        append = statements.get(statement_id)
        if append is None:
            append = statements[statement_id] = _Append(
                statement_stream(statement_id), known.version, plan.meta
            )
        append.events.extend(events)
        append.plans.append(plan)
        running[statement_id] = replay(events, state)

    live = [p for p in plans if not p.retry]
    for plan in live:
        own = streams[plan.statement_id].state
        if not own.exists or own.withdrawn:
            # A withdrawn statement takes no further commands; its page adds nothing.
            continue
        for related_id in _related_ids(plan):
            if streams[related_id].state.exists:
                link(plan, plan.statement_id, related_id)
                continue
            if plan.statement_id in waiting.get(related_id, ()):
                continue  # requested before
            append = requests.get(related_id)
            if append is None:
                append = requests[related_id] = _Append(
                    related_requests_stream(related_id), None, plan.meta
                )
                append.event_ids = []
            append.events.append(
                RelatedLinkRequested(statement_id=related_id, requested_by=plan.statement_id)
            )
            assert append.event_ids is not None
            append.event_ids.append(link_request_event_id(related_id, plan.statement_id))
            append.plans.append(plan)
        for requester in waiting.get(plan.statement_id, ()):
            link(plan, requester, plan.statement_id)
        if plan.page.views:
            command = ImportViews(
                statement_id=plan.statement_id,
                count=plan.page.views,
                source=ARCHIVE_VIEWS_SOURCE,
                meta=plan.meta,
            )
            events = decide(command, own)
            if events:
                append = _Append(views_stream(plan.statement_id), None, plan.meta)
                append.events.extend(events)
                append.event_ids = [views_import_event_id(plan.statement_id, command.source)]
                append.plans.append(plan)
                views.append(append)

    summary = ImportSummary()
    written = await _write(log, [*statements.values(), *requests.values()])
    for append, _ in written:
        count = len(append.events)
        if append.event_ids is None:
            summary += ImportSummary(events_written=count, links_made=count)
        else:
            summary += ImportSummary(events_written=count, links_pending=count)
    # A statement requested here may have been published meanwhile by another import, which
    # read its requests before ours were written: its pages link it on their own then.
    done = {id(append) for append, _ in written}
    requested = {r: a for r, a in requests.items() if id(a) in done}
    if requested:
        appeared = await log.load_many([statement_stream(r) for r in requested])
        for related_id, append in requested.items():
            if statement_stream(related_id) in appeared:
                for plan in append.plans:
                    plan.retry = True
    # The view count of a statement published now is certainly new. For one that existed,
    # an append of the same derived id is a faithful retry that looks like a write, and
    # another count is refused as a duplicate (the first import wins, as import_page has it):
    # neither is counted.
    for append, _ in await _write(log, views, retry_failed=False):
        (plan,) = append.plans
        if plan.published_now:
            summary += ImportSummary(view_imports=1, events_written=len(append.events))
    return summary
