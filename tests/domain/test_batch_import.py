"""A batch of pages decided together writes what importing them one by one writes."""

from __future__ import annotations

from collections import Counter

from domain.batch_import import import_batch
from domain.events import RelatedLinkRequested, SlugReserved, StatementPublished
from domain.handlers import StatementHandlers
from domain.importing import ImportSummary, import_page, publish_command
from tests.domain.memory_event_log import InMemoryEventLog
from tests.domain.test_import_orchestration import PAGE_ID, TITLE, real_page, related_page


def _pages() -> list:  # type: ignore[type-arg]
    return [related_page(0, lists=(TITLE,)), real_page(), related_page(3, lists=(TITLE,))]


def _facts(log: InMemoryEventLog) -> Counter[tuple[str, object]]:
    """Every event by stream, but the link requests (see _requests)."""
    return Counter(
        (e.stream_id, e.event)
        for e in log.all_events
        if not isinstance(e.event, RelatedLinkRequested)
    )


def _requests(log: InMemoryEventLog) -> set[object]:
    return {e.event for e in log.all_events if isinstance(e.event, RelatedLinkRequested)}


async def test_a_batch_writes_what_pages_one_by_one_write() -> None:
    one_by_one = InMemoryEventLog()
    handlers = StatementHandlers(one_by_one)
    for page in _pages():
        await import_page(handlers, page)
    batch = InMemoryEventLog()
    result = await import_batch(StatementHandlers(batch), _pages())
    assert _facts(batch) == _facts(one_by_one)
    # One by one, a page imported before the pages it lists asks for links it later gets;
    # in a batch those pages are known, and only the requests for absent pages remain.
    assert _requests(batch) < _requests(one_by_one)
    assert not result.rejected
    assert result.summary == ImportSummary(
        pages=3, published=3, events_written=len(batch.all_events), view_imports=3, links_made=4,
        links_pending=len(_requests(batch)),
    )  # fmt: skip
    # Everything was read in a few reads and written in a few bulk appends.
    assert batch.loads == []
    # Again: nothing new, everything already present.
    again = await import_batch(StatementHandlers(batch), _pages())
    assert _facts(batch) == _facts(one_by_one)
    assert again.summary == ImportSummary(pages=3, skipped=3)


async def test_a_page_whose_slug_is_taken_is_imported_on_its_own() -> None:
    log = InMemoryEventLog()
    slug = publish_command(real_page()).slug or ""
    await log.write(f"slug-{slug}", [SlugReserved(slug=slug, statement_id="someone-else")])
    result = await import_batch(StatementHandlers(log), _pages())
    published = log.events(f"statement-{PAGE_ID}")[0]
    assert isinstance(published, StatementPublished)
    assert published.slug == f"{slug}-{PAGE_ID[:8]}"
    assert (result.summary.pages, result.summary.published, result.summary.skipped) == (3, 3, 0)
    assert sorted(result.imported) == sorted(p.source for p in _pages())
