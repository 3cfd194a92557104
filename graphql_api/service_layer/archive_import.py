"""``statements import``: archive pages from files and folders, each page all or nothing."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from domain.errors import DomainError
from domain.handlers import StatementHandlers
from domain.importing import ImportSummary, import_text
from graphql_api.service_layer.progress import Progress

PAGE_SUFFIXES = (".txt",)


@dataclass
class ImportReport:
    """What an import run did, and the files it could not import."""

    files: int = 0
    summary: ImportSummary = field(default_factory=ImportSummary)
    failures: list[str] = field(default_factory=list)

    def summary_line(self) -> str:
        s = self.summary
        return (
            f"imported {self.files - len(self.failures)} of {self.files} files: "
            f"{s.published} published, {s.skipped} already present, {s.events_written} events "
            f"written, {s.view_imports} view imports, {s.links_made} links made, "
            f"{s.links_pending} links waiting for their statement, {len(self.failures)} failed"
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


async def import_paths(handlers: StatementHandlers, paths: list[Path]) -> ImportReport:
    """Import every page; a page that fails is reported and the others still go in."""
    report = ImportReport()
    progress = Progress("import")
    for path in page_files(paths):
        report.files += 1
        try:
            text = _read(path)
            report.summary += await import_text(handlers, text, source=str(path))
        except (OSError, UnicodeDecodeError) as exc:
            report.failures.append(f"{path}: cannot read: {exc}")
        except DomainError as exc:
            report.failures.append(str(exc))
        progress.update(
            files=report.files,
            statements=report.summary.published,
            events=report.summary.events_written,
        )
    progress.done(
        files=report.files,
        statements=report.summary.published,
        events=report.summary.events_written,
    )
    return report


def _read(path: Path) -> str:
    return path.read_bytes().decode("utf-8-sig")
