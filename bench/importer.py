"""Importing an archive: ``statements import`` over generated pages, beside the store's floor.

5,000 pages (500 with --quick) in the seed page's layout (``bench.archive_pages``): its body
shuffled, distinct titles, dates and view counts, five related titles each, all in the set.
On each backend:

* import: the pages into an empty database through ``import_paths``, as the CLI runs it; the
  peer column is the floor, the store's own batch append (``EventStore.append_many``) of the
  very events the import wrote, stream by stream, 1,500 streams a call, into another empty
  database in the same run. The ratio is the share of the store's speed the importer keeps.
* re-import: the same folder again, unchanged: every file read and hashed, nothing written
  (target: 5,000 pages/s). The peer column is the floor of that work: reading and hashing
  every file, nothing else, in the same run.

The machine is shared: compare the ratios, not the absolute rates.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from pathlib import Path

from bench.archive_pages import generate, write
from bench.common import BACKENDS, Config, Result, progress
from bench.eventstore import Location, fresh
from domain.handlers import StatementHandlers
from eventstore import ANY, EventStore, NewEvent, RecordedEvent, open_store
from eventstore.urls import create_engine
from graphql_api.service_layer.archive_import import content_hash, import_paths, page_files
from graphql_api.service_layer.eventlog import StoreEventLog
from projections.registry import event_registry

#: Streams per ``append_many`` call of the floor: about what one batch of pages writes.
FLOOR_STREAMS_PER_CALL = 1_500


def _url(loc: Location) -> str:
    return f"sqlite:///{loc.sqlite_path}" if loc.backend == "sqlite" else loc.pg_url


def _open(loc: Location) -> EventStore:
    if loc.backend == "sqlite":
        return open_store(_url(loc))
    return open_store(loc.pg_url, schema=loc.pg_schema)


async def _import(
    loc: Location, folder: Path, pages: int
) -> tuple[float, float, list[RecordedEvent]]:
    """Seconds to import, seconds to import again unchanged, and the events written."""
    store = _open(loc)
    await store.setup()
    engine = create_engine(_url(loc), schema=loc.pg_schema)
    try:
        handlers = StatementHandlers(StoreEventLog(store, event_registry()))
        started = time.perf_counter()
        report = await import_paths(handlers, [folder], engine=engine)
        first = time.perf_counter() - started
        assert report.summary.published == pages and not report.failures, (
            report.summary_line(),
            report.failures[:5],
        )
        started = time.perf_counter()
        again = await import_paths(handlers, [folder], engine=engine)
        second = time.perf_counter() - started
        assert again.summary.events_written == 0, again.summary_line()
        events = [event async for event in store.read_all()]
        return first, second, events
    finally:
        await store.close()
        await engine.dispose()


async def _floor(loc: Location, events: Sequence[RecordedEvent]) -> float:
    """Seconds for the store's batch append of ``events``, grouped by stream as written."""
    streams: dict[str, list[NewEvent]] = {}
    for event in events:
        streams.setdefault(event.stream_id, []).append(
            NewEvent(event.type, event.data, event.metadata, event.event_id, event.schema_version)
        )
    requests = list(streams.items())
    store = _open(loc)
    await store.setup()
    try:
        started = time.perf_counter()
        for start in range(0, len(requests), FLOOR_STREAMS_PER_CALL):
            chunk = requests[start : start + FLOOR_STREAMS_PER_CALL]
            results = await store.append_many([(s, batch, ANY) for s, batch in chunk])
            assert not any(isinstance(r, Exception) for r in results), results
        return time.perf_counter() - started
    finally:
        await store.close()


def _read_and_hash(folder: Path) -> float:
    """Seconds to read and hash every page file: what an unchanged re-import cannot skip."""
    started = time.perf_counter()
    for path in page_files([folder]):
        content_hash(path.read_bytes())
    return time.perf_counter() - started


def run(config: Config) -> list[Result]:
    pages = 500 if config.quick else 5_000
    folder = config.tmp_dir / "archive-pages"
    progress(f"importer: generating {pages:,} pages")
    write(generate(pages), folder)
    results: list[Result] = []
    for backend in BACKENDS:
        with fresh(config, backend, "import") as loc, fresh(config, backend, "floor") as floor_loc:
            progress(f"importer: {backend}: importing {pages:,} pages, then again unchanged")
            first, second, events = asyncio.run(_import(loc, folder, pages))
            progress(f"importer: {backend}: the store's batch append of {len(events):,} events")
            floor = asyncio.run(_floor(floor_loc, events))
            read_floor = _read_and_hash(folder)
        results.append(
            Result(
                f"import {pages:,} pages ({len(events):,} events; peer: store batch floor)",
                backend,
                "pages/s",
                pages / first,
                pages / floor,
            )
        )
        results.append(
            Result(
                f"re-import {pages:,} unchanged pages (peer: reading and hashing the files)",
                backend,
                "pages/s",
                pages / second,
                pages / read_floor,
            )
        )
    return results
