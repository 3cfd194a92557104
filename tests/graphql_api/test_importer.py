"""The batch importer against the pages it was given: every statement, link and count."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from bench.archive_pages import GeneratedPage, generate
from domain.events import LinkedRelated, RelatedLinkRequested, StatementPublished, ViewsImported
from domain.handlers import StatementHandlers
from domain.importing import statement_id_for_title
from eventstore import EventStore, open_store
from eventstore.urls import create_engine
from graphql_api.service_layer.archive_import import ImportReport, import_paths
from graphql_api.service_layer.eventlog import StoreEventLog
from projections.registry import event_registry

PAGES = 240
BROKEN_EVERY = 16


@dataclass
class Archive:
    handlers: StatementHandlers
    store: EventStore
    engine: AsyncEngine


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
async def archive(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Archive]:
    if request.param == "sqlite":
        url, schema = f"sqlite:///{tmp_path / 'import.db'}", None
        store = open_store(url)
    else:
        url, schema = request.getfixturevalue("pg_schema")
        store = open_store(url, schema=schema)
    await store.setup()
    engine = create_engine(url, schema=schema)
    try:
        yield Archive(StatementHandlers(StoreEventLog(store, event_registry())), store, engine)
    finally:
        await store.close()
        await engine.dispose()


def _break(page: GeneratedPage, how: int) -> bytes:
    """A broken copy of a page: unparseable bytes, no body, or a date after publication."""
    if how == 0:
        return random.Random(page.name).randbytes(3000)
    if how == 1:
        cut = page.text.index(page.published_at.strftime("%d-%m-%Y, %H:%M"))
        return page.text[:cut].encode()
    later = page.title.replace(str(page.published_at.year), str(page.published_at.year + 1))
    return page.text.replace(page.title, later).encode()


def _write_shuffled(pages: list[GeneratedPage], broken: set[int], folder: Path) -> list[Path]:
    """Each page under a random name (files import in name order); broken ones broken."""
    folder.mkdir()
    names = random.Random(5).sample(range(10 * len(pages)), len(pages))
    paths = []
    for index, (page, name) in enumerate(zip(pages, names, strict=True)):
        path = folder / f"{name:05}.txt"
        if index in broken:
            path.write_bytes(_break(page, index % 3))
        else:
            path.write_text(page.text, encoding="utf-8")
        paths.append(path)
    return paths


async def _events(store: EventStore) -> list[tuple[str, object]]:
    decode = event_registry().decode
    return [(record.stream_id, decode(record)) async for record in store.read_all()]


async def test_an_archive_in_random_order_with_broken_pages_imports_exactly(
    archive: Archive, tmp_path: Path
) -> None:
    pages = generate(PAGES, seed=7)
    broken = set(range(3, PAGES, BROKEN_EVERY))
    paths = _write_shuffled(pages, broken, tmp_path / "pages")
    good = [p for i, p in enumerate(pages) if i not in broken]
    good_ids = {statement_id_for_title(p.title): p for p in good}
    broken_ids = {statement_id_for_title(pages[i].title) for i in broken}

    # Small batches, so that links cross batches in both directions; two parsing processes.
    report = await import_paths(
        archive.handlers, [tmp_path / "pages"], engine=archive.engine, workers=2, batch_size=50
    )

    failed = {line.split(":", 1)[0] for line in report.failures}
    assert failed == {str(paths[i]) for i in broken}
    events = await _events(archive.store)
    published = {e.statement_id: e for _, e in events if isinstance(e, StatementPublished)}
    assert published.keys() == good_ids.keys()
    for statement_id, event in published.items():
        page = good_ids[statement_id]
        assert (event.title, event.published_at) == (page.title, page.published_at)
    views = {e.statement_id: e.count for _, e in events if isinstance(e, ViewsImported)}
    assert views == {statement_id: page.views for statement_id, page in good_ids.items()}
    expected_links = {
        (statement_id, statement_id_for_title(title))
        for statement_id, page in good_ids.items()
        for title in page.related
        if statement_id_for_title(title) in good_ids
    }
    links = [(e.statement_id, e.related_id) for _, e in events if isinstance(e, LinkedRelated)]
    assert sorted(links) == sorted(expected_links)
    waiting = {
        (e.requested_by, e.statement_id) for _, e in events if isinstance(e, RelatedLinkRequested)
    }
    # Requests stay only for the broken pages' statements; some were also made for good
    # pages not imported yet when their requesters were, and were then honoured.
    assert {
        (statement_id, statement_id_for_title(title))
        for statement_id, page in good_ids.items()
        for title in page.related
        if statement_id_for_title(title) in broken_ids
    } <= waiting
    assert report.summary == report.summary.__class__(
        pages=len(good),
        published=len(good),
        skipped=0,
        events_written=len(events),
        view_imports=len(good),
        links_made=len(expected_links),
        links_pending=len(waiting),
    )
    assert f"imported {len(good)} of {PAGES} files" in report.summary_line()

    # Again, unchanged: nothing written, the good pages already present, the broken named.
    again = await import_paths(archive.handlers, [tmp_path / "pages"], engine=archive.engine)
    assert await _events(archive.store) == events
    assert _counts(again) == (0, len(good), 0, 0, 0, len(broken))

    # The broken pages mended: they go in, and the links that waited for them are made.
    for index in broken:
        paths[index].write_text(pages[index].text, encoding="utf-8")
    mended = await import_paths(archive.handlers, [tmp_path / "pages"], engine=archive.engine)
    assert not mended.failures
    events = await _events(archive.store)
    assert len([e for _, e in events if isinstance(e, StatementPublished)]) == PAGES
    every_link = {
        (statement_id_for_title(p.title), statement_id_for_title(t))
        for p in pages
        for t in p.related
    }
    links = [(e.statement_id, e.related_id) for _, e in events if isinstance(e, LinkedRelated)]
    assert sorted(links) == sorted(every_link)
    assert mended.summary.links_made == len(every_link) - len(expected_links)
    assert mended.summary.published == len(broken)


def _counts(report: ImportReport) -> tuple[int, int, int, int, int, int]:
    s = report.summary
    return (
        s.published,
        s.skipped + report.unchanged,
        s.events_written,
        s.view_imports,
        s.links_made,
        len(report.failures),
    )
