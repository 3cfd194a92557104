"""``statements import``: archive pages from files and folders, in batches, each all or nothing.

The files are read and hashed here, parsed (in worker processes if asked: ``--workers``), and
imported batch by batch through ``domain.batch_import``. With workers, parsing the next batch
overlaps writing this one; on the shared 2-core machine the benchmarks run on, starting them
cost more than it saved (1,000 pages: 7-10 s here, 20-21 s with two workers), so one process
is the default. A page imported whole has its content hash recorded in ``imported_pages``, so
importing an unchanged archive again reads and hashes each file and writes nothing. The table
is only a memory of work done: without it (a new database) every page is imported again,
which the importer's idempotence makes harmless.
"""

from __future__ import annotations

import asyncio
import hashlib
import multiprocessing
from collections.abc import Sequence
from concurrent.futures import Executor, ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncEngine

from domain.archive_page import ArchivePage, parse_archive_page
from domain.batch_import import PAGES_PER_BATCH, import_batch
from domain.errors import DomainError
from domain.handlers import StatementHandlers
from domain.importing import ImportSummary
from graphql_api.service_layer.progress import Progress

PAGE_SUFFIXES = (".txt",)
#: Hashed with every page: a new value makes the next import read every page again. Change it
#: whenever parsing or importing a page would write something else.
IMPORT_FORMAT: Final = b"statements-import-1\0"
_SETUP_LOCK_KEY: Final = 0x696D706F72745F68  # "import_h"

metadata = sa.MetaData()
imported_pages = sa.Table(
    "imported_pages",
    metadata,
    sa.Column("content_hash", sa.Text(), primary_key=True),
    sa.Column("source", sa.Text(), nullable=False),
)


@dataclass
class ImportReport:
    """What an import run did, and the files it could not import."""

    files: int = 0
    summary: ImportSummary = field(default_factory=ImportSummary)
    #: Pages whose content was imported whole before: read, hashed and left alone.
    unchanged: int = 0
    failures: list[str] = field(default_factory=list)

    def summary_line(self) -> str:
        s = self.summary
        return (
            f"imported {self.files - len(self.failures)} of {self.files} files: "
            f"{s.published} published, {s.skipped + self.unchanged} already present, "
            f"{s.events_written} events written, {s.view_imports} view imports, "
            f"{s.links_made} links made, {s.links_pending} links waiting for their statement, "
            f"{len(self.failures)} failed"
        )


def page_files(paths: list[Path]) -> list[Path]:
    """The files to import: the files named, and the page files under the folders named."""
    found: list[Path] = []
    for path in paths:
        if path.is_dir():
            found.extend(sorted(p for p in path.rglob("*") if p.suffix in PAGE_SUFFIXES))
        else:
            found.append(path)
    return found


def content_hash(data: bytes) -> str:
    """The key of a page's content in ``imported_pages``."""
    return hashlib.blake2b(IMPORT_FORMAT + data, digest_size=20).hexdigest()


async def setup_imported_pages(engine: AsyncEngine) -> None:
    """Create ``imported_pages`` if it does not exist (safe from several processes)."""
    async with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            await conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": _SETUP_LOCK_KEY})
        await conn.run_sync(metadata.create_all)


async def import_paths(
    handlers: StatementHandlers,
    paths: list[Path],
    *,
    engine: AsyncEngine | None = None,
    workers: int = 1,
    batch_size: int = PAGES_PER_BATCH,
) -> ImportReport:
    """Import every page; a page that fails is reported and the others still go in.

    With ``engine``, pages imported whole before (by content) are skipped, and the pages
    imported now are remembered. ``workers`` processes parse when it is more than 1 (otherwise
    this one does). ``batch_size`` pages are decided and written together.
    """
    files = page_files(paths)
    report = ImportReport(files=len(files))
    known: set[str] = set()
    if engine is not None:
        await setup_imported_pages(engine)
        async with engine.connect() as conn:
            known = set((await conn.execute(sa.select(imported_pages.c.content_hash))).scalars())
    if workers < 1:
        raise ValueError("workers: must be at least 1")
    count = workers
    pool: Executor | None = None
    if count > 1:
        # Spawned, not forked: this process has threads (the store's writer) by now.
        pool = ProcessPoolExecutor(count, mp_context=multiprocessing.get_context("spawn"))
    progress = Progress("import", total=len(files), unit="files")
    files_done = 0
    parsing: tuple[dict[str, str], asyncio.Future[_Parsed]] | None = None
    try:
        batches = [files[i : i + batch_size] for i in range(0, len(files), batch_size)]
        if batches:
            parsing = _start_parsing(batches[0], known, report, pool, count)
        for index in range(len(batches)):
            assert parsing is not None
            hashes, parsed = parsing
            results = await parsed
            parsing = None
            if index + 1 < len(batches):
                # The next batch parses while this one is written: in the workers, or here
                # whenever this batch waits for a commit.
                parsing = _start_parsing(batches[index + 1], known, report, pool, count)
            pages: list[ArchivePage] = []
            for result in results:
                if isinstance(result, str):
                    report.failures.append(result)
                else:
                    pages.append(result)
            batch = await import_batch(handlers, pages)
            report.summary += batch.summary
            report.failures.extend(str(error) for error in batch.rejected)
            if engine is not None and batch.imported:
                await _remember(engine, [(hashes[s], s) for s in batch.imported])
            files_done += len(batches[index])
            progress.update(
                files=files_done,
                statements=report.summary.published,
                events=report.summary.events_written,
            )
    finally:
        if parsing is not None:
            parsing[1].cancel()
            await asyncio.wait([parsing[1]])
        if pool is not None:
            pool.shutdown(cancel_futures=True)
    progress.done(
        files=files_done,
        statements=report.summary.published,
        events=report.summary.events_written,
    )
    return report


_Parsed = list[ArchivePage | str]


def _start_parsing(
    files: Sequence[Path],
    known: set[str],
    report: ImportReport,
    pool: Executor | None,
    workers: int,
) -> tuple[dict[str, str], asyncio.Future[_Parsed]]:
    """Read and hash a batch's files here; parse the new ones, in the pool if there is one."""
    items: list[tuple[str, bytes]] = []
    hashes: dict[str, str] = {}
    for path in files:
        source = str(path)
        try:
            data = path.read_bytes()
        except OSError as exc:
            report.failures.append(f"{source}: cannot read: {exc}")
            continue
        digest = content_hash(data)
        if digest in known:
            report.unchanged += 1
            continue
        hashes[source] = digest
        items.append((source, data))
    if pool is None:
        return hashes, asyncio.ensure_future(_parse_between_writes(items))
    loop = asyncio.get_running_loop()
    size = -(-len(items) // workers) or 1
    parts = [
        loop.run_in_executor(pool, parse_pages, items[i : i + size])
        for i in range(0, len(items), size)
    ]
    return hashes, asyncio.ensure_future(_joined(parts))


async def _joined(parts: list[asyncio.Future[_Parsed]]) -> _Parsed:
    return [page for part in await asyncio.gather(*parts) for page in part]


#: Pages parsed between two turns of the event loop, so that commits are not kept waiting.
_PAGES_PER_TURN: Final = 8


async def _parse_between_writes(items: Sequence[tuple[str, bytes]]) -> _Parsed:
    """Parse here, a few pages per turn of the loop: the batch before is meanwhile written,
    and its commits (on the store's writer thread) overlap with this parsing."""
    parsed: _Parsed = []
    for start in range(0, len(items), _PAGES_PER_TURN):
        parsed.extend(parse_pages(items[start : start + _PAGES_PER_TURN]))
        await asyncio.sleep(0)
    return parsed


def parse_pages(items: Sequence[tuple[str, bytes]]) -> _Parsed:
    """Each page parsed, or the message that says why it cannot be (runs in the workers)."""
    parsed: _Parsed = []
    for source, data in items:
        try:
            parsed.append(parse_archive_page(data.decode("utf-8-sig"), source=source))
        except UnicodeDecodeError as exc:
            parsed.append(f"{source}: cannot read: {exc}")
        except DomainError as exc:
            parsed.append(str(exc))
    return parsed


async def _remember(engine: AsyncEngine, rows: list[tuple[str, str]]) -> None:
    insert = (
        postgresql.insert(imported_pages)
        if engine.dialect.name == "postgresql"
        else sqlite.insert(imported_pages)
    ).on_conflict_do_nothing()
    async with engine.begin() as conn:
        await conn.execute(insert, [{"content_hash": h, "source": s} for h, s in rows])
