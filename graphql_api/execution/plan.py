"""Plans: the compiled selection sets of an operation, and the cache that keeps them."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any, Final

from graphql import (
    FieldNode,
    GraphQLField,
    GraphQLList,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLOutputType,
)
from graphql.pyutils import Path

from graphql_api.execution.identity_cache import IdentityCache

if TYPE_CHECKING:
    from graphql_api.execution.run import Run


#: How many compiled operations are kept (the parser and validation caches keep as many).
PLAN_CACHE_SIZE: Final = 1_024

Completer = Callable[["Run", Any, Path], Any]
Leaf = Callable[[Any], Any]


class Unsupported(Exception):
    """An operation that the compiling executor leaves to graphql-core."""


class FieldPlan:
    """One response key of a selection set on a concrete object type."""

    __slots__ = (
        "arguments",
        "attr",
        "batch",
        "batch_arguments",
        "batch_info",
        "complete",
        "direct",
        "direct_info",
        "direct_self",
        "direct_source",
        "exact",
        "field_def",
        "key",
        "kind",
        "leaf",
        "nodes",
        "non_null",
        "null_message",
        "null_message_if_non_null",
        "parent_name",
        "parent_type",
        "resolve",
        "sub_plan",
    )

    def __init__(self) -> None:
        self.key = ""
        self.kind = 0
        self.attr = ""
        self.resolve: Callable[..., Any] | None = None
        self.field_def: GraphQLField | None = None
        self.nodes: list[FieldNode] = []
        self.parent_type: GraphQLObjectType | None = None
        self.parent_name = ""
        self.non_null = False
        self.null_message = ""
        self.null_message_if_non_null = ""
        self.leaf: Leaf | None = None
        self.exact: type | None = None
        # A Strawberry resolver called as Strawberry's wrapper would call it (see _direct).
        self.direct: Callable[..., Any] | None = None
        self.direct_self = False
        self.direct_source: tuple[str, ...] = ()
        self.direct_info: tuple[str, Any, Any] | None = None
        self.complete: Completer | None = None
        self.arguments: Callable[[Any], dict[str, Any]] | None = None
        # A batch resolver (graphql_api.execution.batch), its Info class and Strawberry field, and
        # the converter of coerced arguments to the resolver's keyword arguments.
        self.batch: Callable[..., Awaitable[Sequence[Any]]] | None = None
        self.batch_info: tuple[Any, Any] | None = None
        self.batch_arguments: Callable[[dict[str, Any], Any], dict[str, Any]] | None = None
        # The plan of the object type this field returns (for null propagation of batches).
        self.sub_plan: Plan | None = None


# Field kinds, most frequent first.
LEAF_ATTR: Final = 0  # a plain attribute of a leaf type: getattr + coerce
ATTR: Final = 1  # a plain attribute of a list or object type
RESOLVER: Final = 2  # anything else: the field's resolve function
TYPENAME: Final = 3
BATCH_FIELD: Final = 4  # a batch resolver, called once per level for all the objects


class Plan:
    """The compiled selection set of one concrete object type."""

    __slots__ = ("batched", "by_key", "fields")

    def __init__(self, fields: Sequence[FieldPlan]) -> None:
        self.fields = tuple(fields)
        self.by_key = {fp.key: fp for fp in self.fields}
        # Whether this selection or one below it has a batch field.
        self.batched: bool = any(
            fp.kind == BATCH_FIELD or (fp.sub_plan is not None and fp.sub_plan.batched)
            for fp in self.fields
        )


class Compiled:
    __slots__ = ("plan", "reason")

    def __init__(self, plan: Plan | None, reason: str) -> None:
        self.plan = plan
        self.reason = reason


class PlanCache(IdentityCache[Compiled]):
    """Compiled operations, by the parsed document's identity and the operation's name."""

    def __init__(self, size: int = PLAN_CACHE_SIZE) -> None:
        super().__init__(size)


def named(type_: GraphQLOutputType) -> GraphQLOutputType:
    while isinstance(type_, GraphQLNonNull | GraphQLList):
        type_ = type_.of_type
    return type_


def unwrap(type_: GraphQLOutputType) -> GraphQLOutputType:
    """The type without its non-null wrapper (lists stay)."""
    return type_.of_type if isinstance(type_, GraphQLNonNull) else type_
