"""The handlers over a tiny in-memory EventLog: streams, slugs, retries, views, metadata."""

from __future__ import annotations

import asyncio

import pytest

from domain.commands import (
    Command,
    CommandMetadata,
    ImportViews,
    LinkRelated,
    RecordView,
    RequestRelatedLink,
    ReviseStatement,
    TagStatement,
    UnlinkRelated,
    UntagStatement,
    WithdrawStatement,
)
from domain.errors import (
    ConcurrencyConflict,
    EmptyTitle,
    RelatedNotFound,
    RelatedWithdrawn,
    SlugTaken,
    StatementAlreadyExists,
    StatementNotFound,
    StatementWithdrawnError,
    ViewsAlreadyImported,
)
from domain.events import (
    LinkedRelated,
    RelatedLinkRequested,
    SlugReserved,
    StatementPublished,
    Tagged,
    Viewed,
    ViewsImported,
)
from domain.handlers import CommandResult, StatementHandlers
from tests.domain.domain_builders import META, new_id, publish, published
from tests.domain.memory_event_log import InMemoryEventLog

SLUG = "comment-on-the-talks-beijing-8-november-2014"


@pytest.fixture
def log() -> InMemoryEventLog:
    return InMemoryEventLog()


@pytest.fixture
def handlers(log: InMemoryEventLog) -> StatementHandlers:
    return StatementHandlers(log)


async def _published(handlers: StatementHandlers, **changes: object) -> str:
    statement_id = new_id()
    await handlers.publish_statement(publish(statement_id, slug=f"s-{statement_id}", **changes))
    return statement_id


def _tag(statement_id: str, *topics: str, expected: int | None = None) -> TagStatement:
    return TagStatement(
        statement_id=statement_id, topics=topics, meta=META, expected_version=expected
    )


# --- publishing and slugs ----------------------------------------------------------------


async def test_publish_reserves_the_slug_then_writes_the_statement(
    handlers: StatementHandlers, log: InMemoryEventLog
) -> None:
    sid = new_id()
    result = await handlers.publish_statement(publish(sid))
    assert log.events(f"slug-{SLUG}") == [SlugReserved(slug=SLUG, statement_id=sid)]
    assert log.events(f"statement-{sid}") == [published(sid)]
    assert result == CommandResult(sid, f"statement-{sid}", 1, 2, events_written=2)
    assert log.append_calls == [f"slug-{SLUG}", f"statement-{sid}"]


async def test_invalid_publish_writes_nothing_not_even_the_slug(
    handlers: StatementHandlers, log: InMemoryEventLog
) -> None:
    with pytest.raises(EmptyTitle):
        await handlers.publish_statement(publish(title=" ", slug="valid-slug"))
    assert log.all_events == []


async def test_concurrent_publishes_with_one_slug_have_exactly_one_winner(
    handlers: StatementHandlers, log: InMemoryEventLog
) -> None:
    ids = [new_id() for _ in range(5)]
    results = await asyncio.gather(
        *(handlers.publish_statement(publish(sid)) for sid in ids), return_exceptions=True
    )
    winners = [r for r in results if isinstance(r, CommandResult)]
    losers = [r for r in results if isinstance(r, SlugTaken)]
    assert len(winners) == 1
    assert len(losers) == 4
    winner = winners[0].statement_id
    assert all(loser.owner_id == winner and loser.slug == SLUG for loser in losers)
    assert [e.stream_id for e in log.all_events] == [f"slug-{SLUG}", f"statement-{winner}"]


async def test_publish_retry_after_a_crash_reuses_its_own_slug_reservation(
    handlers: StatementHandlers, log: InMemoryEventLog
) -> None:
    sid = new_id()

    async def crash_on_statement(stream_id: str) -> None:
        if stream_id.startswith("statement-"):
            raise ConnectionError("lost the database")

    log.before_append = crash_on_statement
    with pytest.raises(ConnectionError):
        await handlers.publish_statement(publish(sid))
    log.before_append = None
    result = await handlers.publish_statement(publish(sid))
    assert result.events_written == 1
    assert len(log.events(f"slug-{SLUG}")) == 1
    assert log.events(f"statement-{sid}") == [published(sid)]


async def test_publishing_the_same_statement_twice_is_refused(
    handlers: StatementHandlers, log: InMemoryEventLog
) -> None:
    sid = new_id()
    await handlers.publish_statement(publish(sid))
    with pytest.raises(StatementAlreadyExists):
        await handlers.publish_statement(publish(sid))
    assert len(log.all_events) == 2


async def test_a_slug_taken_by_another_statement_is_refused(
    handlers: StatementHandlers,
) -> None:
    first = new_id()
    await handlers.publish_statement(publish(first))
    with pytest.raises(SlugTaken, match=f"already used by statement {first}"):
        await handlers.publish_statement(publish(new_id(), title="Another title", slug=SLUG))


# --- metadata and results ----------------------------------------------------------------


async def test_metadata_is_stored_with_every_event(
    handlers: StatementHandlers, log: InMemoryEventLog
) -> None:
    sid = await _published(handlers)
    meta = CommandMetadata(actor="alice", correlation_id="corr-9", causation_id="evt-3")
    await handlers.tag_statement(TagStatement(statement_id=sid, topics=("A", "B"), meta=meta))
    await handlers.record_view(RecordView(statement_id=sid, meta=meta))
    tagged = log.stream(f"statement-{sid}")[1:]
    viewed = log.stream(f"statement-views-{sid}")
    expected = {"actor": "alice", "correlation_id": "corr-9", "causation_id": "evt-3"}
    assert [s.metadata for s in (*tagged, *viewed)] == [expected] * 3
    assert log.stream(f"statement-{sid}")[0].metadata == {
        "actor": META.actor,
        "correlation_id": META.correlation_id,
        "causation_id": META.causation_id,
    }


async def test_results_give_version_position_and_count(
    handlers: StatementHandlers, log: InMemoryEventLog
) -> None:
    sid = await _published(handlers)
    result = await handlers.tag_statement(_tag(sid, "A", "B"))
    assert result == CommandResult(sid, f"statement-{sid}", 3, 4, events_written=2)
    again = await handlers.tag_statement(_tag(sid, "a"))
    assert again == CommandResult(sid, f"statement-{sid}", 3, None, events_written=0)
    assert len(log.all_events) == 4


# --- concurrency -------------------------------------------------------------------------


async def test_an_explicit_expected_version_surfaces_the_conflict(
    handlers: StatementHandlers, log: InMemoryEventLog
) -> None:
    sid = await _published(handlers)
    await handlers.tag_statement(_tag(sid, "A", expected=1))
    with pytest.raises(ConcurrencyConflict) as caught:
        await handlers.tag_statement(_tag(sid, "B", expected=1))
    assert (caught.value.stream_id, caught.value.expected, caught.value.actual) == (
        f"statement-{sid}",
        1,
        2,
    )
    assert [e.topic_slug for e in log.events(f"statement-{sid}")[1:]] == ["a"]  # type: ignore[attr-defined]


async def test_a_conflict_between_load_and_append_with_expected_version_is_not_retried(
    handlers: StatementHandlers, log: InMemoryEventLog
) -> None:
    sid = await _published(handlers)
    stream = f"statement-{sid}"

    async def someone_else_writes(stream_id: str) -> None:
        if stream_id == stream:
            log.before_append = None
            await log.write(stream, [Tagged(statement_id=sid, topic_slug="x", topic_name="X")])

    log.before_append = someone_else_writes
    with pytest.raises(ConcurrencyConflict):
        await handlers.tag_statement(_tag(sid, "A", expected=1))
    assert log.append_calls.count(stream) == 2  # publish, then the one failed attempt


async def test_without_expected_version_a_conflict_is_retried_on_fresh_state(
    handlers: StatementHandlers, log: InMemoryEventLog
) -> None:
    sid = await _published(handlers)
    stream = f"statement-{sid}"

    async def someone_else_writes(stream_id: str) -> None:
        if stream_id == stream:
            log.before_append = None
            await log.write(stream, [Tagged(statement_id=sid, topic_slug="x", topic_name="X")])

    log.before_append = someone_else_writes
    result = await handlers.tag_statement(_tag(sid, "A", "X"))
    # The retry saw the concurrent tag X, so only A is new.
    assert result.events_written == 1
    assert [e.topic_slug for e in log.events(stream)[1:]] == ["x", "a"]  # type: ignore[attr-defined]


async def test_retries_are_bounded(log: InMemoryEventLog) -> None:
    handlers = StatementHandlers(log, max_attempts=3)
    sid = await _published(handlers)
    stream = f"statement-{sid}"
    attempts = 0

    async def always_conflict(stream_id: str) -> None:
        nonlocal attempts
        if stream_id == stream:
            attempts += 1
            await log.write(
                stream, [Tagged(statement_id=sid, topic_slug=f"t{attempts}", topic_name="T")]
            )

    log.before_append = always_conflict
    with pytest.raises(ConcurrencyConflict):
        await handlers.tag_statement(_tag(sid, "A"))
    assert attempts == 3


async def test_concurrent_taggers_all_succeed_within_the_retry_budget(
    handlers: StatementHandlers,
) -> None:
    sid = await _published(handlers)
    # Each round of conflicts lets one tagger through, so as many taggers as attempts succeed.
    await asyncio.gather(*(handlers.tag_statement(_tag(sid, f"Topic {i}")) for i in range(5)))
    _, state = await handlers.load_statement(sid)
    assert len(state.topics) == 5


def test_max_attempts_must_be_positive(log: InMemoryEventLog) -> None:
    with pytest.raises(ValueError, match="max_attempts"):
        StatementHandlers(log, max_attempts=0)


# --- views -------------------------------------------------------------------------------


async def test_views_go_to_their_own_stream_without_version_checks(
    handlers: StatementHandlers, log: InMemoryEventLog
) -> None:
    sid = await _published(handlers)
    results = await asyncio.gather(
        *(handlers.record_view(RecordView(statement_id=sid, meta=META)) for _ in range(20))
    )
    assert log.events(f"statement-views-{sid}") == [Viewed(statement_id=sid)] * 20
    assert sorted(r.version for r in results) == list(range(1, 21))
    assert {r.stream_id for r in results} == {f"statement-views-{sid}"}
    version, _ = await log.load(f"statement-{sid}")
    assert version == 1


async def test_tagging_never_reads_the_views(
    handlers: StatementHandlers, log: InMemoryEventLog
) -> None:
    sid = await _published(handlers)
    for _ in range(50):
        await handlers.record_view(RecordView(statement_id=sid, meta=META))
    log.events_read.clear()
    await handlers.tag_statement(_tag(sid, "Syria"))
    await handlers.revise_statement(
        ReviseStatement(statement_id=sid, reason="fix", kind="speech", meta=META)
    )
    await handlers.record_view(RecordView(statement_id=sid, meta=META))
    assert log.events_read[f"statement-views-{sid}"] == 0


async def test_views_of_missing_or_withdrawn_statements_are_refused(
    handlers: StatementHandlers, log: InMemoryEventLog
) -> None:
    with pytest.raises(StatementNotFound):
        await handlers.record_view(RecordView(statement_id=new_id(), meta=META))
    sid = await _published(handlers)
    await handlers.withdraw_statement(WithdrawStatement(statement_id=sid, reason="dup", meta=META))
    with pytest.raises(StatementWithdrawnError):
        await handlers.record_view(RecordView(statement_id=sid, meta=META))
    with pytest.raises(StatementWithdrawnError):
        await handlers.import_views(ImportViews(statement_id=sid, count=5, source="x", meta=META))
    assert log.events(f"statement-views-{sid}") == []


async def test_imported_views_are_one_event_once_per_source(
    handlers: StatementHandlers, log: InMemoryEventLog
) -> None:
    sid = await _published(handlers)
    command = ImportViews(statement_id=sid, count=1993, source="archive", meta=META)
    first = await handlers.import_views(command)
    again = await handlers.import_views(command)
    assert again == first
    assert log.events(f"statement-views-{sid}") == [
        ViewsImported(statement_id=sid, count=1993, source="archive")
    ]
    with pytest.raises(ViewsAlreadyImported, match="source 'archive'"):
        await handlers.import_views(
            ImportViews(statement_id=sid, count=2000, source="archive", meta=META)
        )
    other_source = ImportViews(statement_id=sid, count=7, source="mirror", meta=META)
    await handlers.import_views(other_source)
    assert len(log.events(f"statement-views-{sid}")) == 2


# --- related statements ------------------------------------------------------------------


async def test_linking_needs_a_live_related_statement(
    handlers: StatementHandlers, log: InMemoryEventLog
) -> None:
    sid = await _published(handlers)
    missing = new_id()
    with pytest.raises(RelatedNotFound):
        await handlers.link_related(LinkRelated(statement_id=sid, related_id=missing, meta=META))
    other = await _published(handlers)
    await handlers.withdraw_statement(
        WithdrawStatement(statement_id=other, reason="dup", meta=META)
    )
    with pytest.raises(RelatedWithdrawn):
        await handlers.link_related(LinkRelated(statement_id=sid, related_id=other, meta=META))
    assert len(log.events(f"statement-{sid}")) == 1
    live = await _published(handlers)
    result = await handlers.link_related(LinkRelated(statement_id=sid, related_id=live, meta=META))
    assert result.events_written == 1
    assert log.events(f"statement-{sid}")[-1] == LinkedRelated(statement_id=sid, related_id=live)


async def test_link_requests_are_durable_and_recorded_once(
    handlers: StatementHandlers, log: InMemoryEventLog
) -> None:
    target, requester = new_id(), new_id()
    command = RequestRelatedLink(statement_id=target, requested_by=requester, meta=META)
    first = await handlers.request_related_link(command)
    second = await handlers.request_related_link(command)
    assert (first.events_written, second.events_written) == (1, 0)
    # A concurrent duplicate with other metadata is caught by the derived event id.
    other_meta = RequestRelatedLink(
        statement_id=target,
        requested_by=requester,
        meta=CommandMetadata(actor="bob", correlation_id="c2"),
    )
    assert (await handlers.request_related_link(other_meta)).events_written == 0
    assert log.events(f"related-requests-{target}") == [
        RelatedLinkRequested(statement_id=target, requested_by=requester)
    ]
    assert await handlers.pending_link_requests(target) == (requester,)


# --- dispatch ----------------------------------------------------------------------------


async def test_handle_dispatches_every_command(
    handlers: StatementHandlers, log: InMemoryEventLog
) -> None:
    sid, other = new_id(), await _published(handlers)
    commands: list[Command] = [
        publish(sid, slug="dispatch"),
        TagStatement(statement_id=sid, topics=("Syria",), meta=META),
        UntagStatement(statement_id=sid, topic="Syria", meta=META),
        LinkRelated(statement_id=sid, related_id=other, meta=META),
        UnlinkRelated(statement_id=sid, related_id=other, meta=META),
        ReviseStatement(statement_id=sid, reason="fix", kind="speech", meta=META),
        RecordView(statement_id=sid, meta=META),
        ImportViews(statement_id=sid, count=3, source="x", meta=META),
        RequestRelatedLink(statement_id=new_id(), requested_by=sid, meta=META),
        WithdrawStatement(statement_id=sid, reason="dup", meta=META),
    ]
    for command in commands:
        result = await handlers.handle(command)
        assert result.events_written >= 1, command
    _, state = await handlers.load_statement(sid)
    assert state.withdrawn and state.kind == "speech"
    assert isinstance(log.events(f"statement-{sid}")[0], StatementPublished)
