"""Relay connections: ``PageInfo``, and ``Connection[T]``/``Edge[T]`` for any node type.

``Connection[Topic]`` is the GraphQL type ``TopicConnection`` (with ``TopicEdge``); statements
have a connection of their own (:class:`graphql_api.schema.types.statement.StatementConnection`),
whose edges also carry a search's snippet and relevance. Cursors are the read models' keyset
cursors: opaque strings, valid only for the list (and order) that produced them. ``nodes`` is a
shortcut for ``edges { node }``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Generic, TypeVar

import strawberry
from graphql import (
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    InlineFragmentNode,
    SelectionSetNode,
)

from graphql_api.execution import IdentityCache
from projections.rows import Page

T = TypeVar("T")
R = TypeVar("R")


# Cursors are read from the page's (lazy) sequence only when selected: see Cursors.


@strawberry.type(description="Where a page stands in its list (Relay).")
class PageInfo:
    has_next_page: bool
    has_previous_page: bool
    cursors: strawberry.Private[Sequence[str]]

    @strawberry.field
    def start_cursor(self) -> str | None:
        return self.cursors[0] if self.cursors else None

    @strawberry.field
    def end_cursor(self) -> str | None:
        return self.cursors[-1] if self.cursors else None

    @classmethod
    def of(cls, cursors: Sequence[str], has_next: bool, has_previous: bool) -> PageInfo:
        return cls(has_next_page=has_next, has_previous_page=has_previous, cursors=cursors)


@strawberry.type(description="An item of a page and its cursor.")
class Edge(Generic[T]):
    node: T
    cursors: strawberry.Private[Sequence[str]]
    index: strawberry.Private[int]

    @strawberry.field
    def cursor(self) -> str:
        return self.cursors[self.index]

    @classmethod
    def each(cls, cursors: Sequence[str], nodes: Sequence[T]) -> list[Edge[T]]:
        """The edges of ``nodes``, the i-th with the i-th of ``cursors``."""
        if len(cursors) != len(nodes):
            raise ValueError(f"{len(nodes)} nodes but {len(cursors)} cursors")
        return [cls(node=node, cursors=cursors, index=i) for i, node in enumerate(nodes)]


@strawberry.type(description="A page of a list (Relay connection) and the size of the list.")
class Connection(Generic[T]):
    edges: list[Edge[T]]
    nodes: list[T]
    page_info: PageInfo
    total_count: int = strawberry.field(description="The number of items in the whole list.")

    @classmethod
    def of(cls, page: Page[R], node: Callable[[R], T]) -> Connection[T]:
        """The connection of a read-model page, each item made into a node by ``node``."""
        nodes = [node(item) for item in page.items]
        return cls(
            edges=Edge.each(page.cursors, nodes),
            nodes=nodes,
            page_info=PageInfo.of(page.cursors, page.has_next, page.has_previous),
            total_count=page.total_count,
        )


# --- does the client ask for totalCount? -------------------------------------------------------

TOTAL_COUNT = "totalCount"
_SELECTS_TOTAL: IdentityCache[bool] = IdentityCache(4_096)


def selects_total(info: Any) -> bool:
    """Whether the connection field being resolved selects ``totalCount`` anywhere below it.

    Counting a list reads every index entry of it, a page only ``first + 1``: the read models
    skip the count when nobody asks. Conservative: a ``totalCount`` under a fragment or a
    directive counts as asked. Remembered per field node (documents are cached, so are their
    nodes); ``info`` is a Strawberry Info.
    """
    raw = info._raw_info
    nodes: tuple[FieldNode, ...] = tuple(raw.field_nodes)
    wanted = _SELECTS_TOTAL.get(nodes)
    if wanted is None:
        fragments: Mapping[str, FragmentDefinitionNode] = raw.fragments
        wanted = any(
            node.selection_set is not None and _has_total(node.selection_set, fragments, set())
            for node in nodes
        )
        _SELECTS_TOTAL.put(nodes, None, wanted)
    return wanted


def _has_total(
    selection_set: SelectionSetNode,
    fragments: Mapping[str, FragmentDefinitionNode],
    seen: set[str],
) -> bool:
    for selection in selection_set.selections:
        if isinstance(selection, FieldNode):
            if selection.name.value == TOTAL_COUNT:
                return True
        elif isinstance(selection, InlineFragmentNode):
            if _has_total(selection.selection_set, fragments, seen):
                return True
        elif isinstance(selection, FragmentSpreadNode):
            name = selection.name.value
            fragment = fragments.get(name)
            if fragment is not None and name not in seen:
                seen.add(name)
                if _has_total(fragment.selection_set, fragments, seen):
                    return True
    return False
