"""Automatic persisted queries (Apollo's APQ protocol), and an allow-list for production.

A client sends ``extensions: {"persistedQuery": {"version": 1, "sha256Hash": "<hex>"}}``
(in a POST body, or URL-encoded JSON in a GET's ``extensions`` parameter):

* with no ``query``: the document registered under that hash runs; an unknown hash gets the
  error ``PersistedQueryNotFound`` (code ``PERSISTED_QUERY_NOT_FOUND``) and the client sends
  the hash again with the ``query``;
* with the ``query``: its SHA-256 must be the hash (else ``PERSISTED_QUERY_HASH_MISMATCH``); it
  runs, and once it has parsed and validated it is registered (a bounded LRU, per process).

With an allow-list (``allow_list_only``), only documents whose hash is on the list run, sent
in full or by hash: others get ``PERSISTED_QUERY_NOT_ALLOWED``. The list is a JSON file, either
``{"<sha256>": "<document>", ...}`` or an Apollo persisted-query manifest (``{"operations":
[{"body": "<document>", ...}]}``), and/or bare hashes whose documents clients register by
sending them once.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from cachetools import LRUCache

from graphql_api.errors import (
    BAD_REQUEST,
    PERSISTED_QUERY_HASH_MISMATCH,
    PERSISTED_QUERY_NOT_ALLOWED,
    PERSISTED_QUERY_NOT_FOUND,
    PERSISTED_QUERY_NOT_SUPPORTED,
)

APQ_VERSION: Final = 1
_SHA256: Final = re.compile(r"[0-9a-fA-F]{64}")


def document_hash(document: str) -> str:
    """The lowercase hex SHA-256 of a document's UTF-8 bytes, as APQ clients compute it."""
    return hashlib.sha256(document.encode("utf-8", "surrogatepass")).hexdigest()


class PersistedQueryError(Exception):
    """A persisted-query request that cannot run; ``code`` is for ``extensions.code``."""

    def __init__(self, message: str, code: str) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


@dataclass(frozen=True)
class AllowList:
    """Known documents by hash, and hashes allowed before their document is known."""

    documents: Mapping[str, str] = field(default_factory=dict)
    hashes: frozenset[str] = frozenset()

    def allows(self, sha256: str) -> bool:
        return sha256 in self.documents or sha256 in self.hashes

    @classmethod
    def of(cls, documents: Iterable[str] = (), hashes: Iterable[str] = ()) -> AllowList:
        known = {document_hash(document): document for document in documents}
        allowed = frozenset(h.lower() for h in hashes)
        for sha in allowed:
            if not _SHA256.fullmatch(sha):
                raise ValueError(f"not a SHA-256 hex digest: {sha!r}")
        return cls(documents=known, hashes=allowed)

    @classmethod
    def load(cls, path: str | Path, hashes: Iterable[str] = ()) -> AllowList:
        """Read a JSON allow-list: a {hash: document} object or an Apollo manifest."""
        data: Any = json.loads(Path(path).read_text(encoding="utf-8"))
        documents: list[str] = []
        if isinstance(data, dict) and isinstance(data.get("operations"), list):
            documents = [op["body"] for op in data["operations"] if isinstance(op, dict)]
        elif isinstance(data, dict):
            for sha, document in data.items():
                if not isinstance(document, str) or document_hash(document) != sha.lower():
                    raise ValueError(f"{path}: the document under {sha!r} has another hash")
                documents.append(document)
        elif isinstance(data, list):
            documents = [document for document in data if isinstance(document, str)]
        else:
            raise ValueError(f"{path}: expected a JSON object or list of documents")
        return cls.of(documents, hashes)


@dataclass(frozen=True, slots=True)
class Resolved:
    """The document a request runs, and the hash to register it under once it validates."""

    query: str | None
    register_hash: str | None = None


class PersistedQueries:
    """Resolves APQ requests against the registered documents and the allow-list."""

    def __init__(
        self,
        *,
        max_entries: int = 1_000,
        max_document_length: int = 100_000,
        allow_list: AllowList | None = None,
        allow_list_only: bool = False,
    ) -> None:
        if allow_list_only and allow_list is None:
            raise ValueError("allow_list_only needs an allow_list")
        self.max_entries = max_entries
        self.max_document_length = max_document_length
        self.allow_list = allow_list or AllowList()
        self.allow_list_only = allow_list_only
        self._documents: LRUCache[str, str] = LRUCache(maxsize=max_entries)

    def __len__(self) -> int:
        return len(self._documents)

    def resolve(self, query: str | None, extensions: Mapping[str, Any] | None) -> Resolved:
        """The document to run; raises PersistedQueryError when there is none to run."""
        persisted = extensions.get("persistedQuery") if extensions else None
        if persisted is None:
            if (
                self.allow_list_only
                and query is not None
                and not self.allow_list.allows(document_hash(query))
            ):
                raise PersistedQueryError(
                    "This document is not on the allow-list.", PERSISTED_QUERY_NOT_ALLOWED
                )
            return Resolved(query)
        sha = self._hash_of(persisted)
        if query is None:
            document = self.allow_list.documents.get(sha) or self._lookup(sha)
            if document is None:
                raise PersistedQueryError("PersistedQueryNotFound", PERSISTED_QUERY_NOT_FOUND)
            return Resolved(document)
        if document_hash(query) != sha:
            raise PersistedQueryError(
                "The sha256Hash does not match the query.", PERSISTED_QUERY_HASH_MISMATCH
            )
        if self.allow_list_only and not self.allow_list.allows(sha):
            raise PersistedQueryError(
                "This document is not on the allow-list.", PERSISTED_QUERY_NOT_ALLOWED
            )
        return Resolved(query, register_hash=sha)

    def register(self, sha: str, document: str) -> None:
        """Remember a document that parsed and validated (bounded LRU)."""
        if len(document) > self.max_document_length:
            return
        self._documents[sha] = document

    def _lookup(self, sha: str) -> str | None:
        return self._documents.get(sha)

    @staticmethod
    def _hash_of(persisted: object) -> str:
        if not isinstance(persisted, Mapping):
            raise PersistedQueryError("extensions.persistedQuery must be an object.", BAD_REQUEST)
        if persisted.get("version") != APQ_VERSION:
            raise PersistedQueryError(
                "PersistedQueryNotSupported: only version 1 is supported.",
                PERSISTED_QUERY_NOT_SUPPORTED,
            )
        sha = persisted.get("sha256Hash")
        if not isinstance(sha, str) or not _SHA256.fullmatch(sha):
            raise PersistedQueryError(
                "extensions.persistedQuery.sha256Hash must be a hex SHA-256.", BAD_REQUEST
            )
        return sha.lower()


def persisted_queries(
    *,
    production: bool,
    allow_list_path: str | Path | None = None,
    allowed_hashes: Iterable[str] = (),
    max_entries: int = 1_000,
) -> PersistedQueries:
    """APQ for the app: with ``production`` and a list (file or hashes), allow-list-only."""
    hashes = list(allowed_hashes)
    allow_list: AllowList | None = None
    if allow_list_path is not None:
        allow_list = AllowList.load(allow_list_path, hashes)
    elif hashes:
        allow_list = AllowList.of((), hashes)
    return PersistedQueries(
        max_entries=max_entries,
        allow_list=allow_list,
        allow_list_only=production and allow_list is not None,
    )
