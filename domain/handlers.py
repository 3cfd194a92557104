"""Command handlers: load the stream, decide, append with the version that was loaded.

Streams: ``statement-{id}`` holds a statement's own events; its views go to
``statement-views-{id}``, appended without a version check, so views never conflict and the
statement never replays them; ``slug-{slug}`` reserves a slug (first append wins);
``related-requests-{id}`` holds requests to link other statements to ``id`` once it exists;
``topic-{slug}`` holds a topic's renames.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from domain.commands import (
    Command,
    CommandMetadata,
    ImportViews,
    LinkRelated,
    PublishStatement,
    RecordView,
    RecordViews,
    RenameTopic,
    RequestRelatedLink,
    ReviseStatement,
    StatementCommand,
    TagStatement,
    UnlinkRelated,
    UntagStatement,
    WithdrawStatement,
)
from domain.errors import (
    BatchIdReused,
    ConcurrencyConflict,
    DuplicateEventId,
    ItemsRejected,
    SlugTaken,
    ViewsAlreadyImported,
)
from domain.events import SlugReserved
from domain.ids import link_request_event_id, view_batch_id, views_import_event_id
from domain.limits import MAX_VIEWS_PER_BATCH
from domain.link_requests import decide_link_request, requesters
from domain.ports import EventLog, StatementDirectory, TopicDirectory
from domain.statement import (
    StatementState,
    check_related,
    decide,
    replay,
    statement_slug,
)
from domain.streams import (
    related_requests_stream,
    slug_stream,
    statement_stream,
    topic_stream,
    view_batch_stream,
    views_stream,
)
from domain.topics import decide_rename, renamed_to
from domain.view_batches import check_batch, check_targets

DEFAULT_MAX_ATTEMPTS = 5


@dataclass(frozen=True, slots=True)
class CommandResult:
    """What a command did: the stream written (or read), its version and the last position.

    ``position`` is None and ``events_written`` 0 when the command was a no-op.
    """

    statement_id: str
    stream_id: str
    version: int
    position: int | None
    events_written: int


@dataclass(frozen=True, slots=True)
class BatchResult:
    """What a batch of views wrote: its stream, the event's position and the views' statements.

    A retry of a batch already recorded gets the same result as the first time.
    """

    batch_id: str
    stream_id: str
    position: int
    views: int
    statement_ids: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class TopicResult:
    """What a topic command did: the topic, its stream's version and the last position.

    ``position`` is None and ``events_written`` 0 when the command was a no-op.
    """

    topic_slug: str
    stream_id: str
    version: int
    position: int | None
    events_written: int


def metadata_of(meta: CommandMetadata) -> dict[str, str | None]:
    """The metadata stored with the events a command causes."""
    return {
        "actor": meta.actor,
        "correlation_id": meta.correlation_id,
        "causation_id": meta.causation_id,
    }


def _check_expected(stream_id: str, expected: int | None, actual: int) -> None:
    if expected is not None and expected != actual:
        raise ConcurrencyConflict(stream_id, expected, actual)


class StatementHandlers:
    """One handler per command, over an EventLog.

    ``topics`` tells which topics exist; only renaming a topic needs it.
    """

    def __init__(
        self,
        log: EventLog,
        *,
        topics: TopicDirectory | None = None,
        statements: StatementDirectory | None = None,
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
        max_batch_views: int = MAX_VIEWS_PER_BATCH,
    ) -> None:
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if max_batch_views < 1:
            raise ValueError("max_batch_views must be at least 1")
        self._log = log
        self._topics = topics
        self._statements = statements
        self.max_batch_views = max_batch_views
        self._max_attempts = max_attempts

    @property
    def log(self) -> EventLog:
        """The event log the handlers read and write (bulk imports write to it directly)."""
        return self._log

    # --- queries the importer needs ----------------------------------------------------------

    async def load_statement(self, statement_id: str) -> tuple[int, StatementState]:
        """The statement's stream version and state (``exists`` is False if never published)."""
        version, events = await self._log.load(statement_stream(statement_id))
        return version, replay(events)

    async def pending_link_requests(self, statement_id: str) -> tuple[str, ...]:
        """The statements that asked to be linked to ``statement_id``, oldest first."""
        _, events = await self._log.load(related_requests_stream(statement_id))
        return requesters(events)

    # --- commands ----------------------------------------------------------------------------

    async def handle(self, command: Command) -> CommandResult:
        """Run ``command`` through its handler."""
        match command:
            case PublishStatement():
                return await self.publish_statement(command)
            case ReviseStatement():
                return await self.revise_statement(command)
            case WithdrawStatement():
                return await self.withdraw_statement(command)
            case TagStatement():
                return await self.tag_statement(command)
            case UntagStatement():
                return await self.untag_statement(command)
            case LinkRelated():
                return await self.link_related(command)
            case UnlinkRelated():
                return await self.unlink_related(command)
            case RecordView():
                return await self.record_view(command)
            case ImportViews():
                return await self.import_views(command)
            case RequestRelatedLink():
                return await self.request_related_link(command)

    async def publish_statement(self, command: PublishStatement) -> CommandResult:
        """Validate, reserve the slug, then write StatementPublished to a new stream."""

        async def reserve(_state: StatementState) -> int:
            return await self._reserve_slug(
                statement_slug(command), command.statement_id, command.meta
            )

        return await self._run(command, prepare=reserve)

    async def revise_statement(self, command: ReviseStatement) -> CommandResult:
        """Correct a statement."""
        return await self._run(command)

    async def withdraw_statement(self, command: WithdrawStatement) -> CommandResult:
        """Withdraw a statement."""
        return await self._run(command)

    async def tag_statement(self, command: TagStatement) -> CommandResult:
        """Tag a statement with the topics it does not have yet."""
        return await self._run(command)

    async def untag_statement(self, command: UntagStatement) -> CommandResult:
        """Remove a topic from a statement."""
        return await self._run(command)

    async def link_related(self, command: LinkRelated) -> CommandResult:
        """Link a statement to another one that exists and is not withdrawn."""

        async def check(_state: StatementState) -> int:
            _, related = await self.load_statement(command.related_id)
            check_related(command.related_id, related)
            return 0

        return await self._run(command, prepare=check)

    async def unlink_related(self, command: UnlinkRelated) -> CommandResult:
        """Remove a related link."""
        return await self._run(command)

    async def record_view(self, command: RecordView) -> CommandResult:
        """Record a view in the view stream; it never conflicts."""
        return await self._append_views(command, event_ids=None)

    def check_views(self, command: RecordViews) -> None:
        """Raise if the batch breaks a rule that needs no state (its size, its id, its times),
        so that an API can refuse it before counting its views against a rate limit."""
        check_batch(command, self.max_batch_views)

    async def record_views(self, command: RecordViews) -> BatchResult:
        """Record a batch of views as one event in one append, at most once per batch id.

        The batch's stream is named after the sender and the batch id, and its event's id is
        derived from them too: the first append creates the stream, a retry with the same views
        replays the original append (same position, nothing written), and the same id with
        other views is refused. A retry is recognised even when a statement of the batch was
        withdrawn since.
        """
        batch = check_batch(command, self.max_batch_views)
        key = view_batch_id(command.meta.actor, command.batch_id)
        stream = view_batch_stream(key)
        try:
            check_targets(batch, await self._withdrawn({v.statement_id for v in batch.views}))
        except ItemsRejected:
            version, _ = await self._log.load(stream)
            if version == 0:
                raise
            # Recorded before: the append below replays it or refuses other views.
        # The batch id is the correlation id so that every retry stores the same metadata.
        metadata = {"actor": command.meta.actor, "correlation_id": command.batch_id}
        try:
            appended = await self._log.append(stream, [batch], 0, metadata, [key])
        except DuplicateEventId:
            raise BatchIdReused(command.batch_id) from None
        statement_ids = tuple(dict.fromkeys(v.statement_id for v in batch.views))
        return BatchResult(
            command.batch_id, stream, appended.position, len(batch.views), statement_ids
        )

    async def _withdrawn(self, statement_ids: set[str]) -> dict[str, bool]:
        """Whether each published statement of ``statement_ids`` was withdrawn."""
        known = dict(await self._statements.withdrawn(statement_ids)) if self._statements else {}
        # Published moments ago, or unknown: the statement's own stream has the answer.
        for statement_id in sorted(statement_ids - known.keys()):
            _, state = await self.load_statement(statement_id)
            if state.exists:
                known[statement_id] = state.withdrawn
        return known

    async def import_views(self, command: ImportViews) -> CommandResult:
        """Record an imported view count once per statement and source.

        The event id is derived from the statement and the source, so a repeated import with
        the same count and metadata writes nothing (and reports the original append), and one
        with anything else raises ViewsAlreadyImported.
        """
        try:
            return await self._append_views(
                command,
                event_ids=[views_import_event_id(command.statement_id, command.source.strip())],
            )
        except DuplicateEventId:
            raise ViewsAlreadyImported(command.statement_id, command.source.strip()) from None

    async def request_related_link(self, command: RequestRelatedLink) -> CommandResult:
        """Durably record that ``requested_by`` wants a link to ``statement_id`` later."""
        stream = related_requests_stream(command.statement_id)
        event_ids = [link_request_event_id(command.statement_id, command.requested_by)]
        for attempt in range(1, self._attempts(command.expected_version) + 1):
            version, events = await self._log.load(stream)
            _check_expected(stream, command.expected_version, version)
            new = decide_link_request(command, requesters(events))
            if not new:
                return CommandResult(command.statement_id, stream, version, None, 0)
            try:
                appended = await self._log.append(
                    stream, new, version, metadata_of(command.meta), event_ids
                )
            except DuplicateEventId:
                # The same request, recorded earlier with other metadata: nothing to add.
                return CommandResult(command.statement_id, stream, version, None, 0)
            except ConcurrencyConflict:
                if attempt == self._attempts(command.expected_version):
                    raise
                continue
            return CommandResult(
                command.statement_id, stream, appended.version, appended.position, len(new)
            )
        raise AssertionError("unreachable")  # pragma: no cover

    async def rename_topic(self, command: RenameTopic) -> TopicResult:
        """Give a topic a new display name; renaming it to its current name writes nothing."""
        if self._topics is None:
            raise RuntimeError(
                "renaming topics needs a TopicDirectory (StatementHandlers(topics=))"
            )
        slug = command.topic.strip()
        stream = topic_stream(slug)
        for attempt in range(1, self._max_attempts + 1):
            version, events = await self._log.load(stream)
            # The topic's own stream is the fresher record of a rename than any read model.
            current = renamed_to(events)
            if current is None:
                current = await self._topics.topic_name(slug)
            new = decide_rename(command, current)
            if not new:
                return TopicResult(slug, stream, version, None, 0)
            try:
                appended = await self._log.append(stream, new, version, metadata_of(command.meta))
            except ConcurrencyConflict:
                if attempt == self._max_attempts:
                    raise
                continue
            return TopicResult(slug, stream, appended.version, appended.position, len(new))
        raise AssertionError("unreachable")  # pragma: no cover

    # --- helpers -----------------------------------------------------------------------------

    def _attempts(self, expected_version: int | None) -> int:
        # An explicit expected version is the caller's claim about what it saw: surface conflicts.
        return 1 if expected_version is not None else self._max_attempts

    async def _run(
        self,
        command: StatementCommand,
        prepare: Callable[[StatementState], Awaitable[int]] | None = None,
    ) -> CommandResult:
        stream = statement_stream(command.statement_id)
        attempts = self._attempts(command.expected_version)
        for attempt in range(1, attempts + 1):
            version, state = await self.load_statement(command.statement_id)
            _check_expected(stream, command.expected_version, version)
            events = decide(command, state)
            if not events:
                return CommandResult(command.statement_id, stream, version, None, 0)
            extra = await prepare(state) if prepare is not None else 0
            try:
                appended = await self._log.append(
                    stream, events, version, metadata_of(command.meta)
                )
            except ConcurrencyConflict:
                if attempt == attempts:
                    raise
                continue
            return CommandResult(
                command.statement_id,
                stream,
                appended.version,
                appended.position,
                len(events) + extra,
            )
        raise AssertionError("unreachable")  # pragma: no cover

    async def _append_views(
        self, command: RecordView | ImportViews, event_ids: list[str] | None
    ) -> CommandResult:
        # The statement stream is small (views are elsewhere), so checking it is cheap.
        version, state = await self.load_statement(command.statement_id)
        statement = statement_stream(command.statement_id)
        _check_expected(statement, command.expected_version, version)
        events = decide(command, state)
        if not events:
            return CommandResult(command.statement_id, statement, version, None, 0)
        stream = views_stream(command.statement_id)
        appended = await self._log.append(
            stream, events, None, metadata_of(command.meta), event_ids
        )
        return CommandResult(
            command.statement_id, stream, appended.version, appended.position, len(events)
        )

    async def _reserve_slug(self, slug: str, statement_id: str, meta: CommandMetadata) -> int:
        stream = slug_stream(slug)
        event = SlugReserved(slug=slug, statement_id=statement_id)
        try:
            await self._log.append(stream, [event], 0, metadata_of(meta))
        except ConcurrencyConflict:
            _, events = await self._log.load(stream)
            owner = _slug_owner(events)
            if owner == statement_id:
                # Our own reservation from an earlier attempt: carry on publishing.
                return 0
            raise SlugTaken(slug, owner or "unknown") from None
        return 1


def _slug_owner(events: list[object]) -> str | None:
    for event in events:
        if isinstance(event, SlugReserved):
            return event.statement_id
    return None
