"""Importing archive pages through the handlers: idempotent, linked in either order."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import replace
from datetime import date

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from domain.archive_page import ArchivePage, parse_archive_page
from domain.errors import DomainError, PageParseError, PageRejected
from domain.events import (
    LinkedRelated,
    RelatedLinkRequested,
    SlugReserved,
    StatementPublished,
    Tagged,
    ViewsImported,
)
from domain.handlers import StatementHandlers
from domain.importing import (
    ARCHIVE_VIEWS_SOURCE,
    ImportSummary,
    import_page,
    import_text,
    publish_command,
    statement_id_for_title,
)
from tests.domain.memory_event_log import InMemoryEventLog
from tests.domain.test_archive_page import PAGE, RELATED, TITLE

PAGE_ID = statement_id_for_title(TITLE)


@pytest.fixture
def log() -> InMemoryEventLog:
    return InMemoryEventLog()


@pytest.fixture
def handlers(log: InMemoryEventLog) -> StatementHandlers:
    return StatementHandlers(log)


def real_page() -> ArchivePage:
    return parse_archive_page(PAGE, source="000_a4da26f8be4eafc8.txt")


def related_page(index: int, *, lists: tuple[str, ...] = ()) -> ArchivePage:
    """A page for one of the real page's related titles (its own body, listing ``lists``)."""
    title = RELATED[index]
    # Published after the latest related date, so that every related page is valid.
    text = PAGE.replace(TITLE, title).replace("17-11-2014, 16:58", "01-09-2015, 12:00")
    text = text[: text.index("Print version |") + len("Print version |")]
    text += "".join(f"\n  • {t}" for t in lists)
    return parse_archive_page(text, source=f"related-{index}.txt")


def links(log: InMemoryEventLog) -> set[tuple[str, str]]:
    return {
        (e.event.statement_id, e.event.related_id)
        for e in log.all_events
        if isinstance(e.event, LinkedRelated)
    }


def test_statement_ids_are_derived_from_titles() -> None:
    assert statement_id_for_title(TITLE) == PAGE_ID
    # Case, spacing and punctuation do not change the id; the words do.
    assert statement_id_for_title("  " + TITLE.upper().replace(",", " ,") + "  ") == PAGE_ID
    assert statement_id_for_title(TITLE.replace("Beijing", "Shanghai")) != PAGE_ID
    assert publish_command(real_page()).statement_id == PAGE_ID


async def test_importing_the_real_page(handlers: StatementHandlers, log: InMemoryEventLog) -> None:
    summary = await import_page(handlers, real_page())
    assert summary == ImportSummary(
        pages=1, published=1, events_written=8, view_imports=1, links_pending=5
    )
    (reserved,) = log.events("slug-" + publish_command(real_page()).slug)  # type: ignore[operator]
    assert reserved == SlugReserved(
        slug=publish_command(real_page()).slug or "", statement_id=PAGE_ID
    )
    # The category ("Minister S.Lavrov") names the minister and is no topic: the page has no
    # tags, so the statement has no topics.
    (published,) = log.events(f"statement-{PAGE_ID}")
    assert isinstance(published, StatementPublished)
    assert (published.title, published.kind, published.location) == (TITLE, "comment", "Beijing")
    assert published.minister.id == "sergey-lavrov"
    assert published.occurred_on == date(2014, 11, 8)
    assert len(published.paragraphs) == 9
    # 1,993 views are one event, not 1,993.
    assert log.events(f"statement-views-{PAGE_ID}") == [
        ViewsImported(statement_id=PAGE_ID, count=1993, source=ARCHIVE_VIEWS_SOURCE)
    ]
    for title in RELATED:
        assert log.events(f"related-requests-{statement_id_for_title(title)}") == [
            RelatedLinkRequested(statement_id=statement_id_for_title(title), requested_by=PAGE_ID)
        ]


async def test_a_page_s_tags_become_topics_and_its_category_does_not(
    handlers: StatementHandlers, log: InMemoryEventLog
) -> None:
    text = PAGE.replace(
        "  • Category: Minister S.Lavrov\n",
        "  • Category: Minister S.Lavrov\n  • Tags: NATO, Middle East |\n",
    )
    await import_text(handlers, text, source="tagged.txt")
    published, *tagged = log.events(f"statement-{PAGE_ID}")
    assert isinstance(published, StatementPublished)
    assert published.minister.id == "sergey-lavrov"
    assert tagged == [
        Tagged(statement_id=PAGE_ID, topic_slug="nato", topic_name="NATO"),
        Tagged(statement_id=PAGE_ID, topic_slug="middle-east", topic_name="Middle East"),
    ]
    before = log.all_events
    await import_text(handlers, text, source="tagged.txt")
    assert log.all_events == before


async def test_importing_the_same_page_twice_writes_nothing_new(
    handlers: StatementHandlers, log: InMemoryEventLog
) -> None:
    await import_page(handlers, real_page())
    before = log.all_events
    again = await import_page(handlers, real_page())
    assert log.all_events == before
    assert again.published == 0
    assert again.skipped == 1
    assert again.events_written == 0
    # Even from another file, by another actor: the statement is the same.
    other = replace(real_page(), source="copy/of/000.txt")
    await import_page(handlers, other, actor="someone-else")
    assert log.all_events == before


@pytest.mark.parametrize("order", ["page first", "related first"])
async def test_related_statements_are_linked_in_either_order(
    handlers: StatementHandlers, log: InMemoryEventLog, order: str
) -> None:
    pages = [real_page(), related_page(2)]
    if order == "related first":
        pages.reverse()
    for page in pages:
        await import_page(handlers, page)
    related_id = statement_id_for_title(RELATED[2])
    assert links(log) == {(PAGE_ID, related_id)}


async def test_pages_listing_each_other_are_linked_both_ways(
    handlers: StatementHandlers, log: InMemoryEventLog
) -> None:
    other = related_page(4, lists=(TITLE,))
    first = await import_page(handlers, other)
    assert first.links_pending == 1
    second = await import_page(handlers, real_page())
    other_id = statement_id_for_title(RELATED[4])
    assert second.links_made == 2
    assert links(log) == {(PAGE_ID, other_id), (other_id, PAGE_ID)}
    before = log.all_events
    await import_page(handlers, real_page())
    await import_page(handlers, other)
    assert log.all_events == before


async def test_importing_all_pages_in_any_order_gives_the_same_links() -> None:
    def pages() -> list[ArchivePage]:
        return [real_page(), *(related_page(i, lists=(TITLE,)) for i in range(5))]

    results = []
    for order in (pages(), list(reversed(pages())), pages()[2:] + pages()[:2]):
        log = InMemoryEventLog()
        handlers = StatementHandlers(log)
        for page in order:
            await import_page(handlers, page)
        results.append(links(log))
    assert results[0] == results[1] == results[2]
    assert len(results[0]) == 10


async def test_concurrent_imports_of_linked_pages_still_link(
    handlers: StatementHandlers, log: InMemoryEventLog
) -> None:
    await asyncio.gather(import_page(handlers, real_page()), import_page(handlers, related_page(0)))
    assert links(log) == {(PAGE_ID, statement_id_for_title(RELATED[0]))}


async def test_a_page_breaking_a_rule_writes_nothing(
    handlers: StatementHandlers, log: InMemoryEventLog
) -> None:
    future = PAGE.replace("8 November 2014", "8 November 2015")
    with pytest.raises(PageRejected) as caught:
        await import_text(handlers, future, source="future.txt")
    assert str(caught.value).startswith("future.txt: cannot import archive page: occurred_on")
    bad_topic = PAGE.replace(
        "Category: Minister S.Lavrov", "Category: Minister S.Lavrov\n• Tags: !!!"
    )
    with pytest.raises(PageRejected, match="no letters or digits"):
        await import_text(handlers, bad_topic, source="bad-topic.txt")
    assert log.all_events == []


async def test_an_import_cut_short_is_completed_by_importing_again(
    handlers: StatementHandlers, log: InMemoryEventLog
) -> None:
    async def crash_on_views(stream_id: str) -> None:
        if stream_id.startswith("statement-views-"):
            raise ConnectionError("lost the database")

    log.before_append = crash_on_views
    with pytest.raises(ConnectionError):
        await import_page(handlers, real_page())
    log.before_append = None
    summary = await import_page(handlers, real_page())
    assert summary.skipped == 1
    assert summary.view_imports == 1
    assert summary.links_pending == 5
    assert len(log.events(f"statement-views-{PAGE_ID}")) == 1
    before = log.all_events
    await import_page(handlers, real_page())
    assert log.all_events == before


async def test_a_taken_slug_falls_back_to_one_with_the_id(
    handlers: StatementHandlers, log: InMemoryEventLog
) -> None:
    slug = publish_command(real_page()).slug
    await log.write(f"slug-{slug}", [SlugReserved(slug=slug or "", statement_id="someone-else")])
    await import_page(handlers, real_page())
    published = log.events(f"statement-{PAGE_ID}")[0]
    assert isinstance(published, StatementPublished)
    assert published.slug == f"{slug}-{PAGE_ID[:8]}"


async def test_a_withdrawn_statement_is_left_alone(
    handlers: StatementHandlers, log: InMemoryEventLog
) -> None:
    from domain.commands import WithdrawStatement
    from tests.domain.domain_builders import META

    await import_page(handlers, real_page())
    await handlers.withdraw_statement(
        WithdrawStatement(statement_id=PAGE_ID, reason="duplicate", meta=META)
    )
    before = log.all_events
    summary = await import_page(handlers, real_page())
    assert summary == ImportSummary(pages=1, skipped=1)
    assert log.all_events == before
    # A page listing the withdrawn statement does not link to it.
    await import_page(handlers, related_page(1, lists=(TITLE,)))
    assert links(log) == set()


def test_summaries_add_up() -> None:
    a = ImportSummary(pages=1, published=1, events_written=4, links_pending=2)
    b = ImportSummary(pages=1, skipped=1, links_made=1, view_imports=1)
    assert a + b == ImportSummary(
        pages=2, published=1, skipped=1, events_written=4, view_imports=1, links_made=1,
        links_pending=2,
    )  # fmt: skip


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text())
def test_importing_arbitrary_text_imports_or_raises_a_domain_error(text: str) -> None:
    async def run() -> None:
        handlers = StatementHandlers(InMemoryEventLog())
        with contextlib.suppress(PageParseError, PageRejected):
            await import_text(handlers, text, source="fuzz.txt")

    asyncio.run(run())


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.one_of(st.sampled_from(PAGE.split("\n")), st.text(max_size=30)), max_size=50))
def test_importing_mangled_pages_imports_or_raises_a_domain_error(lines: list[str]) -> None:
    async def run() -> None:
        handlers = StatementHandlers(InMemoryEventLog())
        try:
            await import_text(handlers, "\n".join(lines), source="mangled.txt")
        except DomainError as error:
            assert isinstance(error, (PageParseError, PageRejected))

    asyncio.run(run())
