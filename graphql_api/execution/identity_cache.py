"""A bounded LRU keyed by the identity of objects: parsed documents, schemas, AST nodes.

Strawberry's parser cache hands back the same document object for the same query text, so
what is derived from a document (its plan, its validation verdict, its cost, whether a field
selects ``totalCount``) can be remembered by the document's identity. Hashing a graphql-core
AST node instead hashes every node below it, on every lookup. An entry holds the objects of its
key, so their ids cannot be reused by other objects while it lives.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Hashable, Iterator
from typing import Generic, TypeVar

V = TypeVar("V")

DEFAULT_SIZE = 1_024


class IdentityCache(Generic[V]):
    """Values by (the identity of some objects, a plain hashable part); least recently used
    entries go first once ``size`` are kept."""

    def __init__(self, size: int = DEFAULT_SIZE) -> None:
        self._size = size
        self._entries: OrderedDict[Hashable, tuple[tuple[object, ...], V]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, objects: tuple[object, ...], extra: Hashable = None) -> V | None:
        key = (tuple(map(id, objects)), extra)
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            self._entries.move_to_end(key)
        return entry[1]

    def put(self, objects: tuple[object, ...], extra: Hashable, value: V) -> None:
        key = (tuple(map(id, objects)), extra)
        with self._lock:
            self._entries[key] = (objects, value)
            self._entries.move_to_end(key)
            while len(self._entries) > self._size:
                self._entries.popitem(last=False)

    def values(self) -> Iterator[V]:
        """The values, least recently used first."""
        with self._lock:
            entries = list(self._entries.values())
        return (value for _objects, value in entries)

    def __len__(self) -> int:
        return len(self._entries)
