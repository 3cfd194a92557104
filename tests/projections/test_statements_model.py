"""The statement page, topics, ministers, related statements and the archive, on SQLite and PG."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone

from domain import events as E
from projections.read_models import ReadModels
from projections.rows import (
    ArchiveMonthRow,
    MinisterRow,
    MinisterTopicRow,
    StatementFilter,
    TopicRow,
)
from tests.projections.conftest import LAVROV, MSK, RYABKOV, ZAKHAROVA, Log, Project


async def test_statement_page_fields(log: Log, project: Project, models: ReadModels) -> None:
    published_at = datetime(2020, 7, 10, 16, 58, tzinfo=MSK)
    sid = await log.publish(
        title="Comment on the talks in Geneva",
        kind="comment",
        minister=LAVROV,
        published_at=published_at,
        occurred_on=date(2020, 7, 9),
        paragraphs=("One «two».", "Three."),
        location="Geneva",
        slug="comment-geneva",
        language="ru",
        source_url="https://example.org/1",
    )
    await log.tag(sid, "Middle East")
    await project()

    row = (await models.statements_by_ids([sid, "missing"]))[sid]
    assert row.id == sid
    assert row.slug == "comment-geneva"
    assert row.title == "Comment on the talks in Geneva"
    assert row.kind == "comment"
    assert (row.minister_id, row.minister_name, row.minister_title) == (
        LAVROV.id,
        LAVROV.name,
        LAVROV.title,
    )
    assert row.location == "Geneva"
    assert row.occurred_on == date(2020, 7, 9)
    assert row.published_at == published_at
    assert row.published_at.utcoffset() == timedelta(hours=3)
    assert row.paragraphs == ("One «two».", "Three.")
    assert row.language == "ru"
    assert row.source_url == "https://example.org/1"
    assert row.view_count == 0
    assert row.version == 2  # published, tagged: the statement stream's version
    assert row.withdrawn is False
    assert row.rank is None and row.snippet is None
    assert await models.statements_by_ids(["missing"]) == {}
    by_slug = await models.statements_by_slugs(["comment-geneva", "nope"])
    assert by_slug == {"comment-geneva": row}


async def test_revisions_are_applied(log: Log, project: Project, models: ReadModels) -> None:
    sid = await log.publish(title="Old title", minister=LAVROV, location=None)
    await log.revise(
        sid,
        title=E.TextChange("Old title", "New title"),
        kind=E.TextChange("comment", "speech"),
        minister=E.MinisterChange(LAVROV, RYABKOV),
        location=E.OptionalTextChange(None, "Minsk"),
        occurred_on=E.DateChange(date(2020, 7, 10), date(2020, 7, 1)),
        paragraphs=E.ParagraphsChange(("First paragraph.", "Second paragraph."), ("Only one.",)),
    )
    await project()
    row = (await models.statements_by_ids([sid]))[sid]
    assert (row.title, row.kind, row.minister_id, row.minister_name) == (
        "New title",
        "speech",
        RYABKOV.id,
        RYABKOV.name,
    )
    assert (row.location, row.occurred_on, row.paragraphs) == (
        "Minsk",
        date(2020, 7, 1),
        ("Only one.",),
    )
    assert row.version == 2
    # The statement moved to Ryabkov: counts and lists follow.
    ministers = await models.ministers_by_ids([LAVROV.id, RYABKOV.id])
    assert ministers[LAVROV.id].statement_count == 0
    assert ministers[RYABKOV.id] == MinisterRow(RYABKOV.id, RYABKOV.name, RYABKOV.title, 1)
    assert [m.id for m in await models.ministers()] == [RYABKOV.id]
    pages = await models.statements_for_ministers([LAVROV.id, RYABKOV.id], first=10)
    assert pages[LAVROV.id].items == [] and pages[LAVROV.id].total_count == 0
    assert [r.id for r in pages[RYABKOV.id].items] == [sid]
    # Only the new text is searchable.
    assert (await models.statements(StatementFilter(search="old"))).items == []
    assert [r.id for r in (await models.statements(StatementFilter(search="new only"))).items] == [
        sid
    ]
    # Another revision: the latest values win; the version counts every event.
    await log.revise(sid, location=E.OptionalTextChange("Minsk", None))
    await project()
    row = (await models.statements_by_ids([sid]))[sid]
    assert row.location is None and row.version == 3 and row.title == "New title"


async def test_withdrawal_drops_a_statement_from_every_list(
    log: Log, project: Project, models: ReadModels
) -> None:
    keep = await log.publish(title="Peace talks continue", minister=LAVROV)
    gone = await log.publish(title="Peace talks collapse", minister=LAVROV)
    await log.tag(keep, "Peace")
    await log.tag(gone, "Peace", "Collapse")
    await log.link(keep, gone)
    await log.view(gone, 5)
    await project()
    assert (await models.archive()) == [ArchiveMonthRow(2020, 7, 2)]
    assert (await models.topics_by_slugs(["peace"]))["peace"].statement_count == 2

    await log.withdraw(gone)
    await project()
    row = (await models.statements_by_ids([gone]))[gone]
    assert row.withdrawn is True and row.version == 4  # published, two tags, withdrawn
    assert (await models.archive()) == [ArchiveMonthRow(2020, 7, 1)]
    topics = await models.topics_by_slugs(["peace", "collapse"])
    assert topics["peace"] == TopicRow("peace", "Peace", 1)
    assert topics["collapse"] == TopicRow("collapse", "Collapse", 0)
    assert [t.slug for t in (await models.topics(first=10)).items] == ["peace"]
    assert (await models.ministers_by_ids([LAVROV.id]))[LAVROV.id].statement_count == 1
    assert await models.minister_topics([LAVROV.id], 10) == {
        LAVROV.id: [MinisterTopicRow(LAVROV.id, TopicRow("peace", "Peace", 1), 1)]
    }
    his_peace = (await models.statements_for_minister_topics([(LAVROV.id, "peace")], 10))[
        (LAVROV.id, "peace")
    ]
    assert [r.id for r in his_peace.items] == [keep] and his_peace.total_count == 1
    assert [r.id for r in (await models.statements()).items] == [keep]
    assert [r.id for r in (await models.statements(StatementFilter(search="peace"))).items] == [
        keep
    ]
    assert (await models.statements(StatementFilter(search="collapse"))).total_count == 0
    assert [r.id for r in (await models.statements_for_topics(["peace"], 10))["peace"].items] == [
        keep
    ]
    month = (await models.statements_for_months([(2020, 7)], 10))[(2020, 7)]
    assert [r.id for r in month.items] == [keep] and month.total_count == 1
    assert await models.related_of([keep]) == {keep: []}
    assert await models.most_viewed(10) == []
    # Its own page still shows it, with its topics and view count.
    assert [t.slug for t in (await models.topics_of([gone]))[gone]] == ["peace", "collapse"]
    assert (await models.view_counts([gone]))[gone] == 5


async def test_tag_and_untag(log: Log, project: Project, models: ReadModels) -> None:
    a = await log.publish(minister=LAVROV)
    b = await log.publish(minister=LAVROV)
    c = await log.publish(minister=RYABKOV)
    await log.tag(a, "Syria", "Iran")
    await log.tag(b, "Syria")
    await log.tag(c, "Syria", "Arms Control")
    await project()
    assert (await models.topics(first=10)).items == [
        TopicRow("syria", "Syria", 3),
        TopicRow("arms-control", "Arms Control", 1),
        TopicRow("iran", "Iran", 1),
    ]
    assert await models.topics_of([a, c]) == {
        a: [TopicRow("syria", "Syria", 3), TopicRow("iran", "Iran", 1)],
        c: [TopicRow("syria", "Syria", 3), TopicRow("arms-control", "Arms Control", 1)],
    }
    # Each minister's count of a topic, beside the topic's own count (of everyone's).
    assert await models.minister_topics([LAVROV.id, RYABKOV.id, "nobody"], 1) == {
        LAVROV.id: [MinisterTopicRow(LAVROV.id, TopicRow("syria", "Syria", 3), 2)],
        RYABKOV.id: [MinisterTopicRow(RYABKOV.id, TopicRow("arms-control", "Arms Control", 1), 1)],
        "nobody": [],
    }
    assert (await models.minister_topics([LAVROV.id], 5))[LAVROV.id] == [
        MinisterTopicRow(LAVROV.id, TopicRow("syria", "Syria", 3), 2),
        MinisterTopicRow(LAVROV.id, TopicRow("iran", "Iran", 1), 1),
    ]
    # A minister's statements on a topic are his only; pages of one, then the rest.
    pairs = [(LAVROV.id, "syria"), (RYABKOV.id, "syria"), (ZAKHAROVA.id, "syria")]
    pages = await models.statements_for_minister_topics(pairs, 1)
    newer, older = sorted([a, b], reverse=True)  # published at the same time: by id
    assert [r.id for r in pages[pairs[0]].items] == [newer]
    assert pages[pairs[0]].total_count == 2 and pages[pairs[0]].has_next
    assert [r.id for r in pages[pairs[1]].items] == [c] and pages[pairs[1]].total_count == 1
    assert pages[pairs[2]].items == [] and pages[pairs[2]].total_count == 0
    rest = await models.statements_for_minister_topics(
        [pairs[0]], 5, pages[pairs[0]].cursors[-1], with_total=False
    )
    assert [r.id for r in rest[pairs[0]].items] == [older]
    assert rest[pairs[0]].has_previous and not rest[pairs[0]].has_next

    await log.untag(a, "syria")
    await log.untag(a, "iran")
    await log.tag(a, "Iran")  # tagged again: back, now last in the statement's order
    await project()
    assert (await models.topics_by_slugs(["syria", "iran"])) == {
        "syria": TopicRow("syria", "Syria", 2),
        "iran": TopicRow("iran", "Iran", 1),
    }
    assert await models.topics_of([a]) == {a: [TopicRow("iran", "Iran", 1)]}
    assert (await models.minister_topics([LAVROV.id], 5))[LAVROV.id] == [
        MinisterTopicRow(LAVROV.id, TopicRow("iran", "Iran", 1), 1),
        MinisterTopicRow(LAVROV.id, TopicRow("syria", "Syria", 2), 1),
    ]
    syria = await models.statements_for_topics(["syria", "none"], 10)
    assert {r.id for r in syria["syria"].items} == {b, c}
    assert syria["none"].items == [] and syria["none"].total_count == 0
    filtered = await models.statements(StatementFilter(topic="iran"))
    assert [r.id for r in filtered.items] == [a]


async def test_related_in_both_directions(log: Log, project: Project, models: ReadModels) -> None:
    a = await log.publish()
    b = await log.publish()
    c = await log.publish()
    await log.link(a, b)
    await log.link(c, a)
    await project()
    assert await models.related_of([a, b, c, "unknown"]) == {
        a: [b, c],  # oldest link first
        b: [a],
        c: [a],
        "unknown": [],
    }

    await log.unlink(a, b)
    await project()
    assert await models.related_of([a, b, c]) == {a: [c], b: [], c: [a]}

    # Links made from both sides: unlinking one side leaves the other.
    await log.link(a, c)
    await log.unlink(c, a)
    await project()
    assert await models.related_of([a, c]) == {a: [c], c: [a]}


async def test_archive_counts_by_local_month_newest_first(
    log: Log, project: Project, models: ReadModels
) -> None:
    # 00:30 on 1 July in Moscow is still 30 June in UTC: the archive follows the local clock.
    july_first = await log.publish(published_at=datetime(2020, 7, 1, 0, 30, tzinfo=MSK))
    await log.publish(published_at=datetime(2020, 7, 31, 23, 0, tzinfo=MSK))
    await log.publish(published_at=datetime(2020, 6, 15, 12, 0, tzinfo=MSK))
    await log.publish(published_at=datetime(2019, 12, 31, 12, 0, tzinfo=UTC))
    await log.publish(published_at=datetime(2020, 8, 1, 2, 0, tzinfo=timezone(timedelta(hours=5))))
    await project()
    assert await models.archive() == [
        ArchiveMonthRow(2020, 8, 1),
        ArchiveMonthRow(2020, 7, 2),
        ArchiveMonthRow(2020, 6, 1),
        ArchiveMonthRow(2019, 12, 1),
    ]
    pages = await models.statements_for_months([(2020, 7), (2020, 6), (2021, 1)], first=1)
    assert pages[(2020, 7)].total_count == 2 and pages[(2020, 7)].has_next
    assert len(pages[(2020, 7)].items) == 1
    assert pages[(2020, 6)].total_count == 1 and not pages[(2020, 6)].has_next
    assert pages[(2021, 1)].items == []
    rest = await models.statements_for_months([(2020, 7)], 5, after=pages[(2020, 7)].cursors[0])
    assert [r.id for r in rest[(2020, 7)].items] == [july_first]
    assert rest[(2020, 7)].has_previous and not rest[(2020, 7)].has_next
    july = await models.statements(
        StatementFilter(from_date=date(2020, 7, 1), to_date=date(2020, 7, 31)), first=10
    )
    assert july.total_count == 2


async def test_ministers(log: Log, project: Project, models: ReadModels) -> None:
    await log.publish(minister=LAVROV)
    await log.publish(minister=LAVROV)
    await log.publish(minister=ZAKHAROVA)
    renamed = E.MinisterRef(ZAKHAROVA.id, "Maria V. Zakharova", "Director")
    await log.publish(minister=renamed)
    await log.publish(minister=RYABKOV)
    await project()
    assert await models.ministers() == [
        MinisterRow(ZAKHAROVA.id, renamed.name, renamed.title, 2),  # latest name and title
        MinisterRow(LAVROV.id, LAVROV.name, LAVROV.title, 2),
        MinisterRow(RYABKOV.id, RYABKOV.name, RYABKOV.title, 1),
    ]
    assert set(await models.ministers_by_ids([LAVROV.id, "x"])) == {LAVROV.id}
    filtered = await models.statements(StatementFilter(minister_id=LAVROV.id))
    assert filtered.total_count == 2
    assert {r.minister_id for r in filtered.items} == {LAVROV.id}


async def test_filters(log: Log, project: Project, models: ReadModels) -> None:
    speech = await log.publish(kind="speech", published_at=datetime(2020, 5, 1, tzinfo=MSK))
    await log.publish(kind="comment", published_at=datetime(2020, 5, 2, tzinfo=MSK))
    await log.publish(kind="speech", published_at=datetime(2020, 6, 1, tzinfo=MSK))
    await project()
    page = await models.statements(
        StatementFilter(kind="speech", from_date=date(2020, 5, 1), to_date=date(2020, 5, 31))
    )
    assert [r.id for r in page.items] == [speech] and page.total_count == 1
    none = await models.statements(StatementFilter(kind="nope"))
    assert none.items == [] and none.total_count == 0 and not none.has_next
