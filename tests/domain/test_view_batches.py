"""recordViews in the domain: one event per batch, every wrong view named, retries replayed."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from domain.commands import CommandMetadata, RecordViews, WithdrawStatement
from domain.errors import BatchIdReused, BatchTooLarge, InvalidBatchId, ItemsRejected
from domain.events import ViewAt, ViewsRecorded
from domain.handlers import StatementHandlers
from domain.ids import view_batch_id
from tests.domain.domain_builders import META, new_id, publish
from tests.domain.memory_event_log import InMemoryEventLog

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
SHIPPER = CommandMetadata(actor="cdn-logs", correlation_id="request-1")


@pytest.fixture
def log() -> InMemoryEventLog:
    return InMemoryEventLog()


@pytest.fixture
def handlers(log: InMemoryEventLog) -> StatementHandlers:
    return StatementHandlers(log, max_batch_views=5)


async def _published(handlers: StatementHandlers) -> str:
    statement_id = new_id()
    await handlers.publish_statement(publish(statement_id, slug=f"s-{statement_id}"))
    return statement_id


def _batch(
    batch_id: str, *views: tuple[str, datetime], meta: CommandMetadata = SHIPPER
) -> RecordViews:
    return RecordViews(
        batch_id=batch_id,
        views=tuple(ViewAt(s, at) for s, at in views),
        received_at=NOW,
        meta=meta,
    )


async def test_a_batch_is_one_event_in_its_own_stream_with_times_in_utc(
    handlers: StatementHandlers, log: InMemoryEventLog
) -> None:
    a, b = await _published(handlers), await _published(handlers)
    moscow = timezone(timedelta(hours=3))
    result = await handlers.record_views(
        _batch("b-1", (a, NOW), (b, NOW.astimezone(moscow)), (a, NOW - timedelta(days=1)))
    )
    stream = f"view-batch-{view_batch_id('cdn-logs', 'b-1')}"
    assert result.stream_id == stream and result.views == 3
    assert result.statement_ids == (a, b)
    (event,) = log.events(stream)
    assert event == ViewsRecorded(
        batch_id="b-1",
        views=(ViewAt(a, NOW), ViewAt(b, NOW), ViewAt(a, NOW - timedelta(days=1))),
    )
    assert isinstance(event, ViewsRecorded) and event.views[1].at.tzinfo is UTC
    # The batch id is the correlation id, so every retry stores the same metadata.
    assert log.stream(stream)[0].metadata["correlation_id"] == "b-1"


async def test_a_retry_replays_the_first_append_and_writes_nothing(
    handlers: StatementHandlers, log: InMemoryEventLog
) -> None:
    a = await _published(handlers)
    first = await handlers.record_views(_batch("b-1", (a, NOW)))
    before = len(log.all_events)
    retry_meta = CommandMetadata(actor="cdn-logs", correlation_id="request-2")
    again = await handlers.record_views(_batch("b-1", (a, NOW), meta=retry_meta))
    assert again == first
    assert len(log.all_events) == before
    # Another sender's batch of the same name is its own batch.
    other = CommandMetadata(actor="site", correlation_id="request-3")
    theirs = await handlers.record_views(_batch("b-1", (a, NOW), meta=other))
    assert theirs.position is not None and theirs.position > first.position


async def test_the_same_batch_id_with_other_views_is_a_conflict(
    handlers: StatementHandlers, log: InMemoryEventLog
) -> None:
    a = await _published(handlers)
    await handlers.record_views(_batch("b-1", (a, NOW)))
    before = len(log.all_events)
    with pytest.raises(BatchIdReused) as caught:
        await handlers.record_views(_batch("b-1", (a, NOW), (a, NOW)))
    assert caught.value.field == "batch_id" and caught.value.code == "CONFLICT"
    assert len(log.all_events) == before


async def test_a_retry_after_a_withdrawal_still_gets_the_first_answer(
    handlers: StatementHandlers,
) -> None:
    a = await _published(handlers)
    first = await handlers.record_views(_batch("b-1", (a, NOW)))
    await handlers.withdraw_statement(WithdrawStatement(statement_id=a, reason="gone", meta=META))
    assert await handlers.record_views(_batch("b-1", (a, NOW))) == first
    with pytest.raises(ItemsRejected):
        await handlers.record_views(_batch("b-2", (a, NOW)))


async def test_every_wrong_view_is_named_by_index_and_nothing_is_written(
    handlers: StatementHandlers, log: InMemoryEventLog
) -> None:
    a, gone = await _published(handlers), await _published(handlers)
    await handlers.withdraw_statement(
        WithdrawStatement(statement_id=gone, reason="gone", meta=META)
    )
    before = len(log.all_events)
    missing = new_id()
    with pytest.raises(ItemsRejected) as caught:
        await handlers.record_views(_batch("b-1", (a, NOW), (missing, NOW), (gone, NOW)))
    error = caught.value
    assert [(p.index, p.field) for p in error.problems] == [
        (1, "statement_id"),
        (2, "statement_id"),
    ]
    assert f"statement {missing} does not exist" == error.problems[0].problem
    assert "withdrawn" in error.problems[1].problem
    assert error.message.startswith("views[1].statement_id: ") and "(and 1 more)" in error.message
    assert len(log.all_events) == before


async def test_times_must_have_an_offset_and_not_be_ahead_of_the_clock(
    handlers: StatementHandlers,
) -> None:
    a = await _published(handlers)
    with pytest.raises(ItemsRejected) as caught:
        await handlers.record_views(
            _batch(
                "b-1",
                (a, NOW + timedelta(minutes=4)),
                (a, NOW.replace(tzinfo=None)),
                ("not-a-uuid", NOW),
                (a, NOW + timedelta(hours=1)),
            )
        )
    problems = [(p.index, p.field) for p in caught.value.problems]
    assert problems == [(1, "at"), (2, "statement_id"), (3, "at")]


@pytest.mark.parametrize(
    ("batch_id", "count", "error"),
    [
        ("b", 0, BatchTooLarge),
        ("b", 6, BatchTooLarge),
        ("  ", 1, InvalidBatchId),
        ("x" * 201, 1, InvalidBatchId),
        ("a\nb", 1, InvalidBatchId),
    ],
)
async def test_the_batch_itself_is_checked_first(
    handlers: StatementHandlers, batch_id: str, count: int, error: type[Exception]
) -> None:
    a = await _published(handlers)
    with pytest.raises(error):
        await handlers.record_views(_batch(batch_id, *[(a, NOW)] * count))


async def test_the_directory_answers_for_the_statements_it_knows(
    log: InMemoryEventLog,
) -> None:
    asked: list[set[str]] = []

    class Directory:
        def __init__(self, known: dict[str, bool]) -> None:
            self.known = known

        async def withdrawn(self, statement_ids: object) -> dict[str, bool]:
            assert isinstance(statement_ids, set)
            asked.append(set(statement_ids))
            return {s: w for s, w in self.known.items() if s in statement_ids}

    plain = StatementHandlers(log)
    a = new_id()
    await plain.publish_statement(publish(a, slug=f"s-{a}"))
    fresh = new_id()
    await plain.publish_statement(publish(fresh, slug=f"s-{fresh}"))
    # The directory (a read model) says ``a`` was withdrawn; it does not know ``fresh`` yet,
    # whose own stream then answers.
    handlers = StatementHandlers(log, statements=Directory({a: True}))
    with pytest.raises(ItemsRejected) as caught:
        await handlers.record_views(_batch("b-1", (fresh, NOW), (a, NOW)))
    assert [(p.index, p.field) for p in caught.value.problems] == [(1, "statement_id")]
    assert asked == [{a, fresh}]
    result = await handlers.record_views(_batch("b-2", (fresh, NOW)))
    assert result.views == 1
