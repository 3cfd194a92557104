"""Compilation: an operation's selection sets turned into plans, once per document.

Each field gets its kind (a plain attribute, a Strawberry resolver called directly, a batch
resolver, or the field's resolve function) and a completer specialised for its return type, so
that running a plan dispatches on nothing the schema already decided.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, Final

from graphql import (
    DirectiveNode,
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
    GraphQLString,
    OperationType,
    Undefined,
)
from graphql.execution import get_argument_values
from graphql.language import Visitor, visit
from graphql.pyutils import Path, inspect
from graphql.type import is_leaf_type, is_non_null_type, is_object_type
from strawberry.relay import GlobalID

from graphql_api.execution.batch import BATCH
from graphql_api.execution.fence import (
    TYPE_CAST_ATTRIBUTE,
    FieldDetailsList,
    LazyType,
    StrawberryEnumDefinition,
    StrawberryMaybe,
    StrawberryOptional,
    collect_fields,
    collect_subfields,
    convert_argument,
    is_basic_getattr,
    is_scalar,
    is_strawberry_resolver,
    strawberry_schema_of,
)
from graphql_api.execution.gathering import SYNC, awaitable, gather_items
from graphql_api.execution.plan import (
    ATTR,
    BATCH_FIELD,
    LEAF_ATTR,
    RESOLVER,
    TYPENAME,
    Completer,
    FieldPlan,
    Leaf,
    Plan,
    Unsupported,
    named,
    unwrap,
)
from graphql_api.execution.run import Run, guard_later, item_later, new_path

if TYPE_CHECKING:
    from graphql_api.execution.executor import CompiledExecutor


#: The key under which Strawberry keeps a GraphQL type's or field's definition.
DEFINITION: Final = "strawberry-definition"

#: The attribute ``strawberry.cast`` sets on an object.
CAST: Final = TYPE_CAST_ATTRIBUTE


class HasDirectives(Visitor):
    found = False

    def enter_directive(self, node: DirectiveNode, *_args: Any) -> None:
        self.found = True


class Compiler:
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
        visitor = HasDirectives()
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
            fp = FieldPlan()
            fp.key = key
            fp.nodes = [d.node for d in details]
            fp.parent_type = parent
            fp.parent_name = parent.name
            if name == "__typename":
                fp.kind = TYPENAME
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
            named_type = named(return_type)
            basic = self._basic_attribute(field_def)
            if basic is not None and is_leaf_type(named_type) and named_type is unwrap(return_type):
                fp.kind = LEAF_ATTR
                fp.attr = basic
                fp.leaf = _leaf(named_type, parent.name, name)
                built_in = _BUILT_IN.get(named_type.name)
                fp.exact = _EXACT.get(named_type.name) if named_type is built_in else None
            else:
                if basic is not None:
                    fp.kind = ATTR
                    fp.attr = basic
                else:
                    fp.kind = RESOLVER
                    fp.resolve = field_def.resolve or self.executor.field_resolver
                    fp.arguments = _arguments(field_def, node)
                    if not self._batch(fp, field_def):
                        self._direct(fp, field_def)
                fp.complete = self.completer(return_type, fp, details)
            fields.append(fp)
        return Plan(fields)

    def _strawberry_resolver(self, fp: FieldPlan, field_def: GraphQLField) -> tuple[Any, Any]:
        """The field's Strawberry definition and schema, when its resolver is a plain function.

        None, None when the field has extensions (permissions are extensions) or the schema
        has exception handlers: then only Strawberry's wrapper calls the resolver right.
        """
        definition = (field_def.extensions or {}).get(DEFINITION)
        resolver = getattr(definition, "base_resolver", None)
        strawberry_schema = strawberry_schema_of(self.schema)
        if (
            resolver is None
            or definition is None
            or definition.extensions
            or strawberry_schema is None
            or getattr(strawberry_schema, "exception_handlers", ())
            or not is_strawberry_resolver(fp.resolve)
        ):
            return None, None
        return definition, strawberry_schema

    def _batch(self, fp: FieldPlan, field_def: GraphQLField) -> bool:
        """Resolve the field with its batch resolver (:mod:`.batch`), if any."""
        definition, strawberry_schema = self._strawberry_resolver(fp, field_def)
        batch = (getattr(definition, "metadata", None) or {}).get(BATCH)
        if batch is None:
            return False
        fp.kind = BATCH_FIELD
        fp.batch = batch
        fp.batch_info = (strawberry_schema.config.info_class, definition)
        fp.batch_arguments = _converter(definition, strawberry_schema)
        return True

    def _direct(self, fp: FieldPlan, field_def: GraphQLField) -> None:
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
        definition = (field_def.extensions or {}).get(DEFINITION)
        if (
            resolve is None
            or definition is None
            or not is_basic_getattr(resolve)
            or not definition.is_basic_field
            or definition.default_resolver is not getattr
        ):
            return None
        attr: str = definition.python_name
        return attr

    def completer(
        self, return_type: GraphQLOutputType, fp: FieldPlan, details: FieldDetailsList
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
            # (_field_later, guard_later, item_later): one coroutine less per value.
            def non_null(run: Run, value: Any, path: Path) -> Any:
                completed = inner(run, value, path)
                if completed is None:
                    raise TypeError(message)
                return completed

            return non_null
        if isinstance(return_type, GraphQLList):
            return self._list(return_type, fp, details)
        if is_leaf_type(return_type):
            leaf = _leaf(return_type, fp.parent_name, fp.nodes[0].name.value)

            def leaf_value(run: Run, value: Any, path: Path) -> Any:
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
        fp: FieldPlan,
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
        definition = (object_type.extensions or {}).get(DEFINITION)
        # An instance of the type's own class that was not cast to another type passes
        # Strawberry's is_type_of (an isinstance check with cast support) without the call.
        # The cast mark is looked up in the instance's __dict__: hasattr would call the
        # class's __getattr__, if it has one, for every object.
        own_class = getattr(definition, "origin", None)
        if getattr(own_class, "__dictoffset__", 0) == 0:
            own_class = None

        def object_value(run: Run, value: Any, path: Path) -> Any:
            # Strawberry's is_type_of ignores its info argument.
            if type(value) is not own_class or CAST in value.__dict__:
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
        fp: FieldPlan,
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

        def list_value(run: Run, value: Any, path: Path) -> Any:
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
                    item_path = new_path(Path, (path, index, None))
                    try:
                        if type(raw) is own_class and CAST not in raw.__dict__:
                            completed: Any = run_object(plan, raw, item_path)  # type: ignore[arg-type]
                            if type(completed) is not dict:
                                completed = guard_later(
                                    run, completed, item_path, nodes, null_message
                                )
                        elif type(raw) not in SYNC and awaitable(raw):
                            completed = item_later(run, item, raw, item_path, nodes, null_message)
                        else:
                            completed = item(run, raw, item_path)
                            if type(completed) not in SYNC and awaitable(completed):
                                completed = guard_later(
                                    run, completed, item_path, nodes, null_message
                                )
                    except Exception as error:
                        completed = run.field_error(error, nodes, item_path, nullable_items)
                    if type(completed) not in SYNC and awaitable(completed):
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
            return gather_items(run, path, results, pending)

        return list_value


#: Built-in scalars whose output coercion returns values of these exact types unchanged.
_BUILT_IN: Final = {"String": GraphQLString, "ID": GraphQLID, "Boolean": GraphQLBoolean}
_EXACT: Final = {"String": str, "ID": str, "Boolean": bool}


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
