"""The site's GraphQL documents: one ``.graphql`` file per page, with shared fragments.

A page names its document; the document's text (with the fragments it spreads) is fixed when
the package loads, and its SHA-256 is on the site's allow-list, as a persisted query's is: the
site cannot run a document that is not one of these files.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from graphql_api.transport.apq import AllowList, document_hash

DOCUMENTS_DIR: Final = Path(__file__).parent / "documents"
FRAGMENTS_FILE: Final = "fragments.graphql"
_FRAGMENT: Final = re.compile(r"^fragment\s+(\w+)\s+on\s+\w+\s*\{.*?^\}", re.MULTILINE | re.DOTALL)
_SPREAD: Final = re.compile(r"\.\.\.\s*(\w+)")


@dataclass(frozen=True)
class Document:
    """One page's document: its file's name (without ``.graphql``), text and hash."""

    name: str
    text: str

    @property
    def sha256(self) -> str:
        return document_hash(self.text)


def _fragments(directory: Path) -> dict[str, str]:
    source = (directory / FRAGMENTS_FILE).read_text(encoding="utf-8")
    return {match.group(1): match.group(0) for match in _FRAGMENT.finditer(source)}


def _with_fragments(text: str, fragments: Mapping[str, str]) -> str:
    """The document and the fragments it spreads (transitively); GraphQL refuses unused ones."""
    wanted: list[str] = []
    pending = _SPREAD.findall(text)
    while pending:
        name = pending.pop()
        if name in wanted or name not in fragments:
            continue
        wanted.append(name)
        pending.extend(_SPREAD.findall(fragments[name]))
    return "\n\n".join([text.strip(), *(fragments[name] for name in sorted(wanted))]) + "\n"


@dataclass(frozen=True)
class SiteDocuments:
    """The site's documents by name, and the allow-list of their hashes."""

    documents: Mapping[str, Document]
    allow_list: AllowList

    @classmethod
    def load(cls, directory: Path = DOCUMENTS_DIR) -> SiteDocuments:
        fragments = _fragments(directory)
        documents = {
            path.stem: Document(
                path.stem, _with_fragments(path.read_text(encoding="utf-8"), fragments)
            )
            for path in sorted(directory.glob("*.graphql"))
            if path.name != FRAGMENTS_FILE
        }
        return cls(documents, AllowList.of(doc.text for doc in documents.values()))

    def __getitem__(self, name: str) -> Document:
        document = self.documents[name]
        if not self.allow_list.allows(document.sha256):
            raise LookupError(f"the site document {name!r} is not on the allow-list")
        return document
