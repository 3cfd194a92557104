"""A compiling executor: query operations run from a plan built once per document.

graphql-core resolves every field of every object through the same generic path (an info
object, an argument lookup, ``complete_value`` dispatching on the type, a ``Path`` per field),
and Strawberry wraps even plain attributes in a resolver; a 3-level list of 1,500 fields spends
far more time there than in SQL. :class:`CompiledExecutor` (an ``executor_class`` for
graphql-core, passed through ``strawberry.Schema(execution_context_class=...)``) instead turns
each query operation into a :class:`Plan` once, with graphql-core's own field collection, and
keeps it in a bounded cache keyed by the parsed document (Strawberry's parser cache hands back
the same document for the same text). Running a plan:

* reads a plain Strawberry field (no resolver, no extension, the default ``getattr`` resolver)
  with one ``getattr`` and coerces leaves with the type's own ``coerce_output_value``;
* calls every other field's resolver exactly as graphql-core does, with an info object from
  the same ``build_resolve_info`` and arguments coerced by ``get_argument_values`` (once per
  field per operation, since they cannot depend on the object) -- or, for a Strawberry
  resolver without arguments, extensions or exception handlers, calls the function itself
  with what Strawberry's wrapper would pass (the source, a Strawberry ``Info``);
* completes values with closures specialised for the field's type, so the dispatch on
  non-null/list/leaf/object happens at compile time;
* awaits concurrently what resolvers return (one ``gather`` per object or list, as
  graphql-core), so DataLoader keys from siblings still batch into one call; after an error,
  pending siblings finish in the background rather than being cancelled (``_Run.abandon``);
* reports errors as graphql-core does: located at the field (or list item), null propagated
  to the nearest nullable position, recorded in the executor's ``collected_errors``.

Anything it was not written for goes to graphql-core unchanged: mutations and subscriptions,
``@skip``/``@include``/``@defer``/``@stream`` or any other directive in the operation,
abstract (interface or union) return types, introspection fields, fragment variables,
middleware, abort signals, a non-Strawberry ``is_type_of``. The decision is cached with the
plan. ``tests/graphql_api/test_executor.py`` checks that both executors give the same
responses, data and errors, over generated queries.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Awaitable, Callable, Coroutine, Generator, Iterable, Sequence
from types import GeneratorType
from typing import Any, Final, TypeVar

from graphql import (
    DirectiveNode,
    DocumentNode,
    FieldNode,
    GraphQLBoolean,
    GraphQLError,
    GraphQLField,
    GraphQLID,
    GraphQLLeafType,
    GraphQLList,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLOutputType,
    GraphQLResolveInfoHelpers,
    GraphQLString,
    OperationType,
    Undefined,
    located_error,
)
from graphql.execution.collect_fields import (
    FieldDetailsList,
    collect_fields,
    collect_subfields,
)
from graphql.execution.executor import CollectedErrors
from graphql.execution.values import get_argument_values
from graphql.language import Visitor, visit
from graphql.pyutils import Path, inspect
from graphql.type import is_leaf_type, is_non_null_type, is_object_type
from strawberry.execution.is_awaitable import optimized_is_awaitable as isawaitable
from strawberry.relay.types import GlobalID
from strawberry.scalars import is_scalar
from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext
from strawberry.types.arguments import convert_argument
from strawberry.types.base import StrawberryMaybe, StrawberryOptional
from strawberry.types.cast import TYPE_CAST_ATTRIBUTE
from strawberry.types.enum import StrawberryEnumDefinition
from strawberry.types.lazy_type import LazyType

from graphql_api.execution.batch import BATCH
from graphql_api.execution.identity_cache import IdentityCache

#: How many compiled operations are kept (the parser and validation caches keep as many).
PLAN_CACHE_SIZE: Final = 1_024
#: The key under which Strawberry keeps a GraphQL type's or field's definition.
_DEFINITION: Final = "strawberry-definition"
#: The attribute ``strawberry.cast`` sets on an object.
_CAST: Final = TYPE_CAST_ATTRIBUTE

T = TypeVar("T")
Completer = Callable[["_Run", Any, Path], Any]
Leaf = Callable[[Any], Any]


class Unsupported(Exception):
    """An operation that the compiling executor leaves to graphql-core."""


class _FieldPlan:
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
_LEAF_ATTR: Final = 0  # a plain attribute of a leaf type: getattr + coerce
_ATTR: Final = 1  # a plain attribute of a list or object type
_RESOLVER: Final = 2  # anything else: the field's resolve function
_TYPENAME: Final = 3
_BATCH: Final = 4  # a batch resolver, called once per level for all the objects


class Plan:
    """The compiled selection set of one concrete object type."""

    __slots__ = ("batched", "by_key", "fields")

    def __init__(self, fields: Sequence[_FieldPlan]) -> None:
        self.fields = tuple(fields)
        self.by_key = {fp.key: fp for fp in self.fields}
        # Whether this selection or one below it has a batch field.
        self.batched: bool = any(
            fp.kind == _BATCH or (fp.sub_plan is not None and fp.sub_plan.batched)
            for fp in self.fields
        )


class _Compiled:
    __slots__ = ("plan", "reason")

    def __init__(self, plan: Plan | None, reason: str) -> None:
        self.plan = plan
        self.reason = reason


class PlanCache(IdentityCache[_Compiled]):
    """Compiled operations, by the parsed document's identity and the operation's name."""

    def __init__(self, size: int = PLAN_CACHE_SIZE) -> None:
        super().__init__(size)


_PLANS = PlanCache()


class _HasDirectives(Visitor):
    found = False

    def enter_directive(self, node: DirectiveNode, *_args: Any) -> None:
        self.found = True


# --- compilation -----------------------------------------------------------------------------


class _Compiler:
    def __init__(self, executor: CompiledExecutor) -> None:
        self.executor = executor
        self.schema = executor.schema

    def operation(self) -> Plan:
        ex = self.executor
        operation = ex.operation
        if operation.operation is not OperationType.QUERY:
            raise Unsupported(f"{operation.operation.value} operations")
        if any(f.variable_definitions for f in ex.fragment_definitions.values()):
            raise Unsupported("fragment variables")
        visitor = _HasDirectives()
        visit(operation, visitor)
        for fragment in ex.fragment_definitions.values():
            visit(fragment, visitor)
        if visitor.found:
            raise Unsupported("directives")
        root_type = self.schema.query_type
        if root_type is None:
            raise Unsupported("no query type")
        grouped, _defers, _forbidden = collect_fields(
            self.schema, ex.fragments, ex.variable_values, root_type, operation, ex.hide_suggestions
        )
        return self.plan(root_type, grouped.items())

    def plan(
        self, parent: GraphQLObjectType, grouped: Iterable[tuple[str, FieldDetailsList]]
    ) -> Plan:
        fields = []
        for key, details in grouped:
            node = details[0].node
            if any(d.fragment_variable_values is not None for d in details):
                raise Unsupported("fragment variables")
            name = node.name.value
            fp = _FieldPlan()
            fp.key = key
            fp.nodes = [d.node for d in details]
            fp.parent_type = parent
            fp.parent_name = parent.name
            if name == "__typename":
                fp.kind = _TYPENAME
                fields.append(fp)
                continue
            if name.startswith("__"):
                raise Unsupported("introspection")
            field_def = self.schema.get_field(parent, name)
            if field_def is None:
                # graphql-core leaves unknown fields out of the response; validation has
                # already refused them.
                continue
            fp.field_def = field_def
            return_type = field_def.type
            fp.non_null = is_non_null_type(return_type)
            fp.null_message = f"Cannot return null for non-nullable field {parent.name}.{name}."
            fp.null_message_if_non_null = fp.null_message if fp.non_null else ""
            named = _named(return_type)
            basic = self._basic_attribute(field_def)
            if basic is not None and is_leaf_type(named) and named is _unwrap(return_type):
                fp.kind = _LEAF_ATTR
                fp.attr = basic
                fp.leaf = _leaf(named, parent.name, name)
                fp.exact = _EXACT.get(named.name) if named is _BUILT_IN.get(named.name) else None
            else:
                if basic is not None:
                    fp.kind = _ATTR
                    fp.attr = basic
                else:
                    fp.kind = _RESOLVER
                    fp.resolve = field_def.resolve or self.executor.field_resolver
                    fp.arguments = _arguments(field_def, node)
                    if not self._batch(fp, field_def):
                        self._direct(fp, field_def)
                fp.complete = self.completer(return_type, fp, details)
            fields.append(fp)
        return Plan(fields)

    def _strawberry_resolver(self, fp: _FieldPlan, field_def: GraphQLField) -> tuple[Any, Any]:
        """The field's Strawberry definition and schema, when its resolver is a plain function.

        None, None when the field has extensions (permissions are extensions) or the schema
        has exception handlers: then only Strawberry's wrapper calls the resolver right.
        """
        definition = (field_def.extensions or {}).get(_DEFINITION)
        resolver = getattr(definition, "base_resolver", None)
        strawberry_schema = getattr(self.schema, "_strawberry_schema", None)
        if (
            resolver is None
            or definition is None
            or definition.extensions
            or strawberry_schema is None
            or getattr(strawberry_schema, "exception_handlers", ())
            or getattr(fp.resolve, "__name__", "") not in ("_resolver", "_async_resolver")
        ):
            return None, None
        return definition, strawberry_schema

    def _batch(self, fp: _FieldPlan, field_def: GraphQLField) -> bool:
        """Resolve the field with its batch resolver (:mod:`.batch`), if any."""
        definition, strawberry_schema = self._strawberry_resolver(fp, field_def)
        batch = (getattr(definition, "metadata", None) or {}).get(BATCH)
        if batch is None:
            return False
        fp.kind = _BATCH
        fp.batch = batch
        fp.batch_info = (strawberry_schema.config.info_class, definition)
        fp.batch_arguments = _converter(definition, strawberry_schema)
        return True

    def _direct(self, fp: _FieldPlan, field_def: GraphQLField) -> None:
        """Call a Strawberry resolver without Strawberry's wrapper, when that changes nothing.

        For a field with no field extensions (permissions are extensions) and no exception
        handlers in the schema, the wrapper only converts the arguments (done here once per
        operation: they depend on the variables only, and resolvers do not change them),
        passes the source as ``self``/``root``/``parent`` and a Strawberry ``Info`` as
        ``info``, then awaits what an async resolver returns (the executor awaits it anyway).
        """
        definition, strawberry_schema = self._strawberry_resolver(fp, field_def)
        if definition is None or not callable(definition.base_resolver.wrapped_func):
            return
        resolver = definition.base_resolver
        fp.direct = resolver.wrapped_func
        if definition.arguments:
            fp.batch_info = (strawberry_schema.config.info_class, definition)
            fp.batch_arguments = _converter(definition, strawberry_schema)
        fp.direct_self = resolver.self_parameter is not None
        fp.direct_source = tuple(
            parameter.name
            for parameter in (resolver.parent_parameter, resolver.root_parameter)
            if parameter is not None
        )
        info = resolver.info_parameter
        if info is not None:
            fp.direct_info = (info.name, strawberry_schema.config.info_class, definition)

    def _basic_attribute(self, field_def: GraphQLField) -> str | None:
        """The attribute a field reads, when its resolver is Strawberry's plain ``getattr``."""
        resolve = field_def.resolve
        definition = (field_def.extensions or {}).get(_DEFINITION)
        if (
            resolve is None
            or definition is None
            or getattr(resolve, "__name__", "") != "_get_basic_result"
            or not definition.is_basic_field
            or definition.default_resolver is not getattr
        ):
            return None
        attr: str = definition.python_name
        return attr

    def completer(
        self, return_type: GraphQLOutputType, fp: _FieldPlan, details: FieldDetailsList
    ) -> Completer:
        if isinstance(return_type, GraphQLNonNull):
            # Objects and lists check for null themselves: one call less per value.
            if is_object_type(return_type.of_type):
                return self._object(return_type.of_type, fp, details, fp.null_message)
            if isinstance(return_type.of_type, GraphQLList):
                return self._list(return_type.of_type, fp, details, fp.null_message)
            inner = self.completer(return_type.of_type, fp, details)
            message = fp.null_message

            # An awaitable completion is checked for null by whoever awaits it
            # (_field_later, _guard_later, _item_later): one coroutine less per value.
            def non_null(run: _Run, value: Any, path: Path) -> Any:
                completed = inner(run, value, path)
                if completed is None:
                    raise TypeError(message)
                return completed

            return non_null
        if isinstance(return_type, GraphQLList):
            return self._list(return_type, fp, details)
        if is_leaf_type(return_type):
            leaf = _leaf(return_type, fp.parent_name, fp.nodes[0].name.value)

            def leaf_value(run: _Run, value: Any, path: Path) -> Any:
                if isinstance(value, Exception):
                    raise value
                if value is None or value is Undefined:
                    return None
                return leaf(value)

            return leaf_value
        if is_object_type(return_type):
            return self._object(return_type, fp, details)
        raise Unsupported(f"abstract type {return_type}")

    def _object(
        self,
        object_type: GraphQLObjectType,
        fp: _FieldPlan,
        details: FieldDetailsList,
        null_message: str = "",
    ) -> Completer:
        is_type_of = object_type.is_type_of
        if is_type_of is not None and not getattr(is_type_of, "__module__", "").startswith(
            "strawberry."
        ):
            raise Unsupported(f"is_type_of of {object_type.name}")
        ex = self.executor
        grouped, _defers, _forbidden = collect_subfields(
            self.schema,
            ex.fragments,
            ex.variable_values,
            ex.operation,
            object_type,
            details,
            ex.hide_suggestions,
        )
        plan = self.plan(object_type, grouped.items())
        fp.sub_plan = plan
        definition = (object_type.extensions or {}).get(_DEFINITION)
        # An instance of the type's own class that was not cast to another type passes
        # Strawberry's is_type_of (an isinstance check with cast support) without the call.
        # The cast mark is looked up in the instance's __dict__: hasattr would call the
        # class's __getattr__, if it has one, for every object.
        own_class = getattr(definition, "origin", None)
        if getattr(own_class, "__dictoffset__", 0) == 0:
            own_class = None

        def object_value(run: _Run, value: Any, path: Path) -> Any:
            # Strawberry's is_type_of ignores its info argument.
            if type(value) is not own_class or _CAST in value.__dict__:
                if isinstance(value, Exception):
                    raise value
                if value is None or value is Undefined:
                    if null_message:
                        raise TypeError(null_message)
                    return None
                if is_type_of is not None and not is_type_of(value, None):  # type: ignore[arg-type]
                    raise GraphQLError(
                        f"Expected value of type '{object_type}' but got: {inspect(value)}.",
                        [d.node for d in details],
                    )
            return run.object(plan, value, path)

        object_value.plan = plan  # type: ignore[attr-defined]
        object_value.own_class = own_class  # type: ignore[attr-defined]
        return object_value

    def _list(
        self,
        list_type: GraphQLList[Any],
        fp: _FieldPlan,
        details: FieldDetailsList,
        list_null_message: str = "",
    ) -> Completer:
        item_type = list_type.of_type
        item = self.completer(item_type, fp, details)
        nullable_items = not is_non_null_type(item_type)
        # "" for nullable items: what the awaiting wrappers check to null-check a value.
        null_message = "" if nullable_items else fp.null_message
        message = (
            f"Expected Iterable, but did not find one for field"
            f" '{fp.parent_name}.{fp.nodes[0].name.value}'."
        )
        nodes = fp.nodes
        # Items of an object type: an instance of its own class (not cast) goes straight to
        # the object's plan, as object_value would send it.
        plan: Plan | None = getattr(item, "plan", None)
        own_class: type | None = getattr(item, "own_class", None) if plan is not None else None

        def list_value(run: _Run, value: Any, path: Path) -> Any:
            if type(value) is not list:
                if isinstance(value, Exception):
                    raise value
                if value is None or value is Undefined:
                    if list_null_message:
                        raise TypeError(list_null_message)
                    return None
                if isinstance(value, str | bytes | dict) or not isinstance(value, Iterable):
                    raise GraphQLError(message)
            results: list[Any] = []
            pending: list[int] | None = None
            run_object = run.object
            try:
                for index, raw in enumerate(value):
                    item_path = _path(Path, (path, index, None))
                    try:
                        if type(raw) is own_class and _CAST not in raw.__dict__:
                            completed: Any = run_object(plan, raw, item_path)  # type: ignore[arg-type]
                            if type(completed) is not dict:
                                completed = _guard_later(
                                    run, completed, item_path, nodes, null_message
                                )
                        elif type(raw) not in _SYNC and _awaitable(raw):
                            completed = _item_later(run, item, raw, item_path, nodes, null_message)
                        else:
                            completed = item(run, raw, item_path)
                            if type(completed) not in _SYNC and _awaitable(completed):
                                completed = _guard_later(
                                    run, completed, item_path, nodes, null_message
                                )
                    except Exception as error:
                        completed = run.field_error(error, nodes, item_path, nullable_items)
                    if type(completed) not in _SYNC and _awaitable(completed):
                        if pending is None:
                            pending = []
                        pending.append(index)
                    results.append(completed)
            except BaseException:
                if pending:
                    run.abandon(path, [results[i] for i in pending])
                raise
            if pending is None:
                return results
            return _gather_items(run, path, results, pending)

        return list_value


#: Types seen not to be awaitable (graphql-core's test: a coroutine, an iterable coroutine or
#: an ``__await__`` attribute); checked inline before calling :func:`_awaitable`.
_SYNC: Final[set[type]] = {type(None), bool, int, float, str, bytes, list, tuple, dict}
_SYNC_LIMIT: Final = 4_096


def _awaitable(value: Any) -> bool:
    if isawaitable(value):
        return True
    kind = type(value)
    # A generator is awaitable or not by its code's flags, not by its type.
    if kind is not GeneratorType and len(_SYNC) < _SYNC_LIMIT:
        _SYNC.add(kind)
    return False


#: A Path without NamedTuple's Python-level __new__ (it is a tuple of prev, key, typename).
_path: Final = tuple.__new__


#: Built-in scalars whose output coercion returns values of these exact types unchanged.
_BUILT_IN: Final = {"String": GraphQLString, "ID": GraphQLID, "Boolean": GraphQLBoolean}
_EXACT: Final = {"String": str, "ID": str, "Boolean": bool}


def _named(type_: GraphQLOutputType) -> GraphQLOutputType:
    while isinstance(type_, GraphQLNonNull | GraphQLList):
        type_ = type_.of_type
    return type_


def _unwrap(type_: GraphQLOutputType) -> GraphQLOutputType:
    """The type without its non-null wrapper (lists stay)."""
    return type_.of_type if isinstance(type_, GraphQLNonNull) else type_


def _leaf(leaf_type: GraphQLLeafType, parent: str, field: str) -> Leaf:
    coerce = leaf_type.coerce_output_value

    def leaf(value: Any) -> Any:
        coerced = coerce(value)
        if coerced is Undefined or coerced is None:
            raise TypeError(
                f"Expected `{inspect(leaf_type)}.coerce_output_value({inspect(value)})` to"
                f" return non-nullable value, returned: {inspect(coerced)}"
            )
        return coerced

    return leaf


def _converter(
    definition: Any, strawberry_schema: Any
) -> Callable[[dict[str, Any], Any], dict[str, Any]]:
    """Coerced arguments to the keyword arguments of the field's resolver, as Strawberry's
    wrapper converts them (input objects, enums, custom scalars, Python names).

    What ``convert_arguments`` does, with the names and what each argument needs worked out
    once: a scalar or an enum is passed as coerced, only the others are converted. It used
    to convert every given argument, and camel-case every name, on every request.
    """
    arguments = definition.arguments
    if not arguments:
        empty: dict[str, Any] = {}
        return lambda _raw, _info: empty
    registry = strawberry_schema.schema_converter.scalar_registry
    config = strawberry_schema.config
    plan = [
        (
            config.name_converter.from_argument(argument),
            argument.python_name,
            None if _passes_through(argument.type, registry) else argument.type,
        )
        for argument in arguments
    ]

    def convert(raw: dict[str, Any], info: Any) -> dict[str, Any]:
        kwargs: dict[str, Any] = {}
        for name, python, type_ in plan:
            if name in raw:
                value = raw[name]
                kwargs[python] = (
                    value
                    if type_ is None
                    else convert_argument(value, type_, registry, config, info, path=(name,))
                )
        return kwargs

    return convert


def _passes_through(type_: Any, registry: Any) -> bool:
    """Whether Strawberry hands an argument of this type to the resolver as graphql-core
    coerced it: a scalar or an enum, optional or not (not a list: it is copied; not a
    GlobalID or a Maybe: they are wrapped)."""
    while isinstance(type_, StrawberryOptional) and not isinstance(type_, StrawberryMaybe):
        type_ = type_.of_type
    if isinstance(type_, StrawberryMaybe | LazyType) or type_ is GlobalID:
        return False
    return isinstance(type_, StrawberryEnumDefinition) or is_scalar(type_, registry)


def _arguments(field_def: GraphQLField, node: FieldNode) -> Callable[[Any], dict[str, Any]]:
    if not field_def.args and not node.arguments:
        empty: dict[str, Any] = {}
        return lambda _executor: empty

    def arguments(executor: Any) -> dict[str, Any]:
        return get_argument_values(
            field_def, node, executor.variable_values, None, executor.hide_suggestions
        )

    return arguments


# --- running ---------------------------------------------------------------------------------


_Entry = tuple[Any, dict[str, Any], Path]  # (source, its response object, the field's path)


class _Run:
    """The state of one execution of a plan.

    Batch fields are resolved level by level: completing an object only notes (source, its
    response object, path) under the field's plan in ``queue``; once the objects of a level
    are complete (what the operation's other resolvers return included), a flush calls each
    batch resolver once for all its notes, then completes the values into the response
    objects, which notes the next level. A non-null batch field that fails nulls its nearest
    nullable ancestor once everything has run (``nulls``), with the error recorded at that
    position as graphql-core records it.
    """

    __slots__ = (
        "abandoned",
        "arguments",
        "converted",
        "errors",
        "executor",
        "nulls",
        "queue",
        "root",
        "share",
        "shared",
    )

    def __init__(self, executor: CompiledExecutor, root: Plan, share: bool = True) -> None:
        self.executor = executor
        self.root = root
        # Whether equal value objects of a batch share one completed response (see flush).
        self.share = share
        self.shared = 0
        self.errors = executor.collected_errors
        # Coerced arguments per field plan: they depend on the variables only.
        self.arguments: dict[int, dict[str, Any] | Exception] = {}
        # A batch resolver's keyword arguments per field plan.
        self.converted: dict[int, dict[str, Any]] = {}
        self.queue: dict[_FieldPlan, list[_Entry]] = {}
        self.nulls: list[Path | None] = []
        # Positions an error is propagating from; what runs on below them is not reported.
        self.abandoned: set[Path | None] | None = None

    # --- batch fields ---------------------------------------------------------------------

    def defer(self, fp: _FieldPlan, source: Any, out: dict[str, Any], path: Path) -> None:
        queue = self.queue
        entries = queue.get(fp)
        if entries is None:
            queue[fp] = entries = []
        entries.append((source, out, path))

    async def flush(self) -> None:
        queue, self.queue = self.queue, {}
        groups = list(queue.items())
        if len(groups) == 1:
            results = [await self.call_batch(*groups[0])]
        else:
            results = await _eager_gather([self.call_batch(fp, e) for fp, e in groups])
        later: list[Awaitable[None]] | None = None
        share = self.share
        for (fp, entries), values in zip(groups, results, strict=True):
            complete = fp.complete
            key = fp.key
            # The completed response of each value object met so far in this group.
            done: dict[int, Any] = {}
            for (_source, out, path), value in zip(entries, values, strict=True):
                if share:
                    prior = done.get(id(value))
                    if prior is not None:
                        out[key] = prior
                        self.shared += 1
                        continue
                try:
                    completed = complete(self, value, path)  # type: ignore[misc]
                except Exception as error:
                    self.batch_error(error, fp, path)
                    out[key] = None
                    continue
                kind = type(completed)
                if kind is dict or kind is list:
                    out[key] = completed
                    if share:
                        done[id(value)] = completed
                elif kind in _SYNC or not _awaitable(completed):
                    out[key] = completed
                else:
                    if later is None:
                        later = []
                    later.append(self.complete_later(fp, completed, out, path))
        if later is not None:
            # complete_later returns its errors: nothing to cancel or abandon.
            await asyncio.gather(*later)

    async def call_batch(self, fp: _FieldPlan, entries: list[_Entry]) -> Sequence[Any]:
        """The batch resolver's values for ``entries``; exceptions in place of failed ones."""
        try:
            info_class, definition = fp.batch_info  # type: ignore[misc]
            path = entries[0][2]
            info = info_class(_raw_info=self.info(fp, path), _field=definition)
            kwargs = self.kwargs(fp, path, info)
            values = await fp.batch([entry[0] for entry in entries], info, **kwargs)  # type: ignore[misc]
            if len(values) != len(entries):
                raise RuntimeError(
                    f"The batch resolver of {fp.parent_name}.{fp.nodes[0].name.value} returned"
                    f" {len(values)} values for {len(entries)} objects."
                )
        except Exception as error:
            return [error] * len(entries)
        return values

    async def complete_later(
        self, fp: _FieldPlan, completed: Awaitable[Any], out: dict[str, Any], path: Path
    ) -> None:
        try:
            value = await completed
            if value is None and fp.non_null:
                raise TypeError(fp.null_message)
        except Exception as error:
            self.batch_error(error, fp, path)
            value = None
        out[fp.key] = value

    def batch_error(self, raw: Exception, fp: _FieldPlan, path: Path) -> None:
        """Record a batch field's error; a non-null one nulls the nearest nullable ancestor."""
        if self.abandoned is not None and self.dropped(path):
            return
        error = located_error(raw, fp.nodes, path.as_list())
        if not fp.non_null:
            self.errors.add(error, path)
            return
        position = self.nullable_position(path.prev)
        self.errors.add(error, position)
        self.nulls.append(position)

    def nullable_position(self, path: Path | None) -> Path | None:
        """The nearest position at or above ``path`` that may be null (None: the data)."""
        chain: list[Path] = []
        while path is not None:
            chain.append(path)
            path = path.prev
        chain.reverse()
        nearest: Path | None = None
        plan: Plan | None = self.root
        type_: Any = None
        for position in chain:
            if isinstance(position.key, str):
                fp = plan.by_key[position.key]  # type: ignore[union-attr]
                type_ = fp.field_def.type  # type: ignore[union-attr]
                plan = fp.sub_plan
            else:
                type_ = type_.of_type  # the list's item type
            nullable = not isinstance(type_, GraphQLNonNull)
            type_ = _unwrap(type_)
            if nullable:
                nearest = position
        return nearest

    def finish(self, data: dict[str, Any]) -> dict[str, Any] | None:
        """The data with the positions nulled by batch fields set to null."""
        for position in self.nulls:
            if position is None:
                return None
            keys = position.as_list()
            container: Any = data
            for key in keys[:-1]:
                container = container[key]
                if container is None:
                    break
            else:
                container[keys[-1]] = None
        return data

    def field_error(
        self, raw: Exception, nodes: list[FieldNode], path: Path, nullable: bool
    ) -> Any:
        """The value of a position whose completion raised: null, or raised again located."""
        error = located_error(raw, nodes, path.as_list())
        if not nullable:
            raise error
        if self.abandoned is None or not self.dropped(path):
            self.errors.add(error, path)
        return None

    def abandon(self, path: Path | None, pending: list[Any]) -> None:
        """Let ``pending`` (below ``path``) finish in the background, their errors unreported:
        an error is on its way up from ``path``, to null it or one of its ancestors.

        As graphql-core after a synchronous error. Their errors would mostly be dropped by
        ``CollectedErrors`` anyway, as under a nulled position, but only once the propagating
        error has got there: until then they would be reported, by chance of scheduling.
        """
        if self.abandoned is None:
            self.abandoned = set()
        self.abandoned.add(path)
        self.executor.settle_in_background(pending)

    def dropped(self, path: Path) -> bool:
        """Whether ``path`` lies strictly below an abandoned position."""
        abandoned = self.abandoned
        if abandoned is None:
            return False
        position = path.prev
        while position is not None:
            if position in abandoned:
                return True
            position = position.prev
        return None in abandoned

    def args(self, fp: _FieldPlan) -> dict[str, Any]:
        found = self.arguments.get(id(fp))
        if found is None:
            try:
                found = fp.arguments(self.executor)  # type: ignore[misc]
            except Exception as error:
                found = error
            self.arguments[id(fp)] = found
        if isinstance(found, Exception):
            raise found
        return found

    def kwargs(self, fp: _FieldPlan, path: Path, info: Any = None) -> dict[str, Any]:
        """The field's arguments as its resolver takes them, converted once per operation."""
        kwargs = self.converted.get(id(fp))
        if kwargs is None:
            if info is None:
                info_class, definition = fp.batch_info  # type: ignore[misc]
                info = info_class(_raw_info=self.info(fp, path), _field=definition)
            kwargs = fp.batch_arguments(self.args(fp), info)  # type: ignore[misc]
            self.converted[id(fp)] = kwargs
        return kwargs

    def info(self, fp: _FieldPlan, path: Path) -> Any:
        return self.executor.build_resolve_info(
            fp.field_def,  # type: ignore[arg-type]
            fp.nodes,
            fp.parent_type,  # type: ignore[arg-type]
            path,
        )

    def direct(self, fp: _FieldPlan, source: Any, path: Path) -> Any:
        kwargs: dict[str, Any] = {name: source for name in fp.direct_source}
        info = None
        if fp.direct_info is not None:
            name, info_class, definition = fp.direct_info
            info = kwargs[name] = info_class(_raw_info=self.info(fp, path), _field=definition)
        if fp.batch_arguments is not None:
            kwargs.update(self.kwargs(fp, path, info))
        if fp.direct_self:
            return fp.direct(source, **kwargs)  # type: ignore[misc]
        return fp.direct(**kwargs)  # type: ignore[misc]

    def object(self, plan: Plan, source: Any, path: Path | None) -> Any:
        out: dict[str, Any] = {}
        pending: list[str] | None = None
        try:
            for fp in plan.fields:
                kind = fp.kind
                if kind == _LEAF_ATTR:
                    try:
                        value = getattr(source, fp.attr)
                        if type(value) is fp.exact:
                            out[fp.key] = value
                        elif value is None or value is Undefined:
                            if fp.non_null:
                                raise TypeError(fp.null_message)
                            out[fp.key] = None
                        else:
                            if isinstance(value, Exception):
                                raise value
                            out[fp.key] = fp.leaf(value)  # type: ignore[misc]
                    except Exception as error:
                        out[fp.key] = self.field_error(
                            error,
                            fp.nodes,
                            _path(Path, (path, fp.key, fp.parent_name)),
                            not fp.non_null,
                        )
                    continue
                if kind == _TYPENAME:
                    out[fp.key] = fp.parent_name
                    continue
                if kind == _BATCH:
                    out[fp.key] = None
                    self.defer(fp, source, out, _path(Path, (path, fp.key, fp.parent_name)))
                    continue
                field_path = _path(Path, (path, fp.key, fp.parent_name))
                try:
                    if kind == _ATTR:
                        value = getattr(source, fp.attr)
                    elif fp.direct is not None:
                        value = self.direct(fp, source, field_path)
                    else:
                        info = self.executor.build_resolve_info(
                            fp.field_def,  # type: ignore[arg-type]
                            fp.nodes,
                            fp.parent_type,  # type: ignore[arg-type]
                            field_path,
                        )
                        value = fp.resolve(source, info, **self.args(fp))  # type: ignore[misc]
                    if type(value) in _SYNC or not _awaitable(value):
                        result: Any = fp.complete(self, value, field_path)  # type: ignore[misc]
                        if type(result) in _SYNC or not _awaitable(result):
                            out[fp.key] = result
                            continue
                        result = _guard_later(
                            self, result, field_path, fp.nodes, fp.null_message_if_non_null
                        )
                    else:
                        result = _field_later(self, fp, value, field_path)
                except Exception as error:
                    out[fp.key] = self.field_error(error, fp.nodes, field_path, not fp.non_null)
                    continue
                out[fp.key] = result
                if pending is None:
                    pending = []
                pending.append(fp.key)
        except BaseException:
            if pending:
                # As graphql-core: siblings already started still run to the end, so that
                # their errors are observed and no coroutine is left unawaited.
                self.abandon(path, [out[key] for key in pending])
            raise
        if pending is None:
            return out
        return _gather_fields(self, path, out, pending)


async def _field_later(run: _Run, fp: _FieldPlan, value: Awaitable[Any], path: Path) -> Any:
    try:
        resolved = await value
        completed = fp.complete(run, resolved, path)  # type: ignore[misc]
        if isawaitable(completed):
            completed = await completed
            if completed is None and fp.non_null:
                raise TypeError(fp.null_message)
    except Exception as error:
        return run.field_error(error, fp.nodes, path, not fp.non_null)
    return completed


async def _guard_later(
    run: _Run, completed: Awaitable[Any], path: Path, nodes: list[FieldNode], non_null: str
) -> Any:
    """Await a completion; ``non_null`` is the error message when null is not allowed."""
    try:
        value = await completed
        if value is None and non_null:
            raise TypeError(non_null)
    except Exception as error:
        return run.field_error(error, nodes, path, not non_null)
    return value


async def _item_later(
    run: _Run,
    item: Completer,
    raw: Awaitable[Any],
    path: Path,
    nodes: list[FieldNode],
    non_null: str,
) -> Any:
    try:
        completed = item(run, await raw, path)
        if isawaitable(completed):
            completed = await completed
            if completed is None and non_null:
                raise TypeError(non_null)
    except Exception as error:
        return run.field_error(error, nodes, path, not non_null)
    return completed


def _weakly(method: Callable[..., T]) -> Callable[..., T]:
    """``method``, without keeping its object alive."""
    ref = weakref.WeakMethod(method)

    def call(*args: Any, **kwargs: Any) -> T:
        bound = ref()
        if bound is None:
            raise RuntimeError("the execution this helper belongs to is over")
        return bound(*args, **kwargs)

    return call


class _Started:
    """A coroutine already run up to its first suspension, awaitable from there on."""

    __slots__ = ("coro", "yielded")

    def __init__(self, coro: Coroutine[Any, Any, Any], yielded: Any) -> None:
        self.coro = coro
        self.yielded = yielded

    def __await__(self) -> Generator[Any, Any, Any]:
        coro, yielded = self.coro, self.yielded
        while True:
            # Hand what the coroutine waits on to the task driving us; pass back its answer.
            try:
                sent = yield yielded
            except GeneratorExit:
                coro.close()
                raise
            except BaseException as thrown:
                try:
                    yielded = coro.throw(thrown)
                except StopIteration as stop:
                    return stop.value
            else:
                try:
                    yielded = coro.send(sent)
                except StopIteration as stop:
                    return stop.value


async def _eager_gather(coros: list[Coroutine[Any, Any, Any]]) -> list[Any]:
    """The coroutines' results, each run at once until it first waits; a task only for those
    that do wait. The coroutines must not raise (they return their errors)."""
    results: list[Any] = [None] * len(coros)
    waiting: list[tuple[int, _Started]] = []
    for index, coro in enumerate(coros):
        try:
            yielded = coro.send(None)
        except StopIteration as stop:
            results[index] = stop.value
        except BaseException:
            for rest in coros[index + 1 :]:
                rest.close()
            for _, started in waiting:
                started.coro.close()
            raise
        else:
            waiting.append((index, _Started(coro, yielded)))
    if waiting:
        values = await asyncio.gather(*(started for _, started in waiting))
        for (index, _), value in zip(waiting, values, strict=True):
            results[index] = value
    return results


async def _gather(run: _Run, path: Path | None, awaitables: list[Awaitable[Any]]) -> list[Any]:
    """The values of the awaitables under ``path``; on the first error, the others are
    abandoned (see ``_Run.abandon``).

    graphql-core's ``gather_with_cancel`` cancels them instead, and a task cancelled before
    its first step never starts its coroutine: the resolver's coroutine that ours was handed
    is then dropped unawaited ("coroutine ... was never awaited", at garbage collection).
    """
    futures = [asyncio.ensure_future(awaitable) for awaitable in awaitables]
    try:
        return await asyncio.gather(*futures)
    except Exception:
        run.abandon(path, [future for future in futures if not future.done()])
        raise


async def _gather_fields(
    run: _Run, path: Path | None, out: dict[str, Any], pending: list[str]
) -> dict[str, Any]:
    if len(pending) == 1:
        key = pending[0]
        out[key] = await out[key]
    else:
        values = await _gather(run, path, [out[key] for key in pending])
        out.update(zip(pending, values, strict=True))
    return out


async def _gather_items(run: _Run, path: Path, results: list[Any], pending: list[int]) -> list[Any]:
    if len(pending) == 1:
        index = pending[0]
        results[index] = await results[index]
    else:
        values = await _gather(run, path, [results[i] for i in pending])
        for index, value in zip(pending, values, strict=True):
            results[index] = value
    return results


class CompiledExecutor(StrawberryGraphQLCoreExecutionContext):
    """Strawberry's graphql-core executor, with compiled plans for the query operations."""

    plans: PlanCache = _PLANS
    document: DocumentNode | None = None

    @classmethod
    def build(cls, schema: Any, document: DocumentNode, *args: Any, **kwargs: Any) -> Any:
        executor = super().build(schema, document, *args, **kwargs)
        if isinstance(executor, CompiledExecutor):
            # graphql-core does not keep the document; the plan cache is keyed by it.
            executor.document = document
            if executor.operation.operation is OperationType.QUERY:
                # graphql-core's helpers hold bound methods of the executor, a cycle that left
                # every request's executor, context and loaders to the cyclic collector (25-44
                # objects a request); held weakly, they are freed when the request ends.
                executor.async_helpers = GraphQLResolveInfoHelpers(
                    gather=_weakly(executor.gather_async_work),
                    track=_weakly(executor.track_async_work),
                )
        return executor

    def compiled(self) -> Plan | None:
        """This operation's plan, compiled on first use; None when graphql-core runs it."""
        if (
            self.abort_signal is not None
            or self.hooks is not None
            or self.enable_early_execution
            or not self.error_propagation
            or (self.middleware_manager is not None and self.middleware_manager.middlewares)
        ):
            return None
        document = self.document
        if document is None:
            return None
        name = self.operation.name.value if self.operation.name else None
        entry = self.plans.get((document,), name)
        if entry is None:
            try:
                entry = _Compiled(_Compiler(self).operation(), "")
            except Unsupported as reason:
                entry = _Compiled(None, str(reason))
            self.plans.put((document,), name, entry)
        return entry.plan

    def execute_operation(self, serially: bool | None = None) -> Any:
        plan = self.compiled() if not serially else None
        if plan is None:
            return super().execute_operation(serially)
        if plan.batched and asyncio._get_running_loop() is None:
            # Batch fields are awaited in tasks; without a loop (execute_sync) graphql-core
            # reports that the operation cannot complete synchronously.
            return super().execute_operation(serially)
        run = _Run(self, plan)
        try:
            data = run.object(plan, self.root_value, None)
        except GraphQLError as error:
            self.collected_errors.add(error, None)
            return self.build_response(None)
        if isawaitable(data) or run.queue:
            return self._later(run, data)
        return self.build_response(data)

    async def _later(self, run: _Run, data: Any) -> Any:
        try:
            if isawaitable(data):
                data = await data
            # Flushed here rather than in a task per level: the batch resolvers' reads are
            # often synchronous (SQLite on the loop's thread), and a task each cost as much.
            while run.queue:
                await run.flush()
        except GraphQLError as error:
            self.collected_errors.add(error, None)
            if run.shared:
                return await self._again(run.root)
            return self.build_response(None)
        if run.shared and self.collected_errors.errors:
            return await self._again(run.root)
        return self.build_response(run.finish(data))

    async def _again(self, plan: Plan) -> Any:
        """Run the operation again with no shared responses: an error has a path, and a
        response shared by several positions would report it, or null it, at one of them."""
        self.collected_errors = CollectedErrors()
        run = _Run(self, plan, share=False)
        try:
            data = run.object(plan, self.root_value, None)
        except GraphQLError as error:
            self.collected_errors.add(error, None)
            return self.build_response(None)
        return await self._later(run, data)
