"""Limits on what one operation may ask: tokens, depth, aliases, page sizes and cost.

Every limit is checked before any resolver runs, and none of them wraps field resolvers:

* **tokens** (``TOO_MANY_TOKENS``): Strawberry's way (``MaxTokensLimiter``): the parse option
  ``max_tokens`` makes graphql-core's parser stop one token past the limit (comments
  included), so a huge document costs little. The parser's syntax error gets its code and
  message from :func:`graphql_api.errors.classify`.
* **fields** (``TOO_MANY_FIELDS``): at most 200 field selections written in the document,
  counted right after parsing. graphql-core's check of overlapping fields is quadratic: 2,000
  tokens of ``{ a(x: 1) a(x: 1) ... }`` take it ~0.4 s; 200 fields at most ~0.15 s.
* **depth** (``QUERY_TOO_DEEP``) and **aliases** (``TOO_MANY_ALIASES``): graphql-core
  validation rules, so the schema's validation cache caches their verdict per document.
  Depth counts fields along the deepest path (``{ a { b } }`` is 2), through fragments;
  introspection fields (``__schema``, ``__type``, ``__typename``) are not counted. Aliases are
  counted through fragments, once per spread.
* **page sizes** (``BAD_USER_INPUT``): a literal ``first``/``last`` outside ``0..100`` is a
  validation error; one given by a variable is checked with the cost, once variables are known.
* **cost** (``QUERY_TOO_COSTLY``), with the variables of the request, just before execution::

      cost(selection set) = sum over its fields f of  1 + multiplier(f) * cost(f's selections)

      multiplier(f) = f's `first` or `last` argument when f takes one (default 10 if absent);
                      1 for `edges`/`nodes` of a *Connection type (already counted there);
                      the hint in Limits.list_sizes["Type.field"], else 10, for other lists;
                      1 otherwise.

  So ``statements(first: 20) { edges { node { minister { statements(first: 5) { edges {
  node { topics { name } } } } } } } }`` costs 1 + 20 * (1 + 1 + 1 + 1 + 5 * (1 + 1 + 1 + 10
  * 1)) = 1381. Fragments and inline fragments add their fields' costs (every branch of an
  abstract type is counted, an upper bound); introspection fields cost nothing.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Final

from cachetools import LRUCache
from graphql import (
    ASTValidationRule,
    DocumentNode,
    ExecutionResult,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    GraphQLField,
    GraphQLInterfaceType,
    GraphQLList,
    GraphQLNamedType,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLSchema,
    InlineFragmentNode,
    IntValueNode,
    NoSchemaIntrospectionCustomRule,
    NullValueNode,
    OperationDefinitionNode,
    SelectionSetNode,
    ValidationRule,
    VariableNode,
    get_named_type,
    get_operation_ast,
)
from graphql.language import ValueNode
from strawberry.extensions import SchemaExtension
from strawberry.types.graphql import OperationType as StrawberryOperationType

from graphql_api.errors import (
    BAD_REQUEST,
    BAD_USER_INPUT,
    QUERY_TOO_COSTLY,
    QUERY_TOO_DEEP,
    TOO_MANY_ALIASES,
    TOO_MANY_FIELDS,
    coded_error,
)
from graphql_api.execution import IdentityCache

PAGE_ARGUMENTS: Final = ("first", "last")


@dataclass(frozen=True)
class Limits:
    """What one operation may ask; see the module doc for how each is counted."""

    max_depth: int = 10
    max_aliases: int = 30
    max_tokens: int = 2_000
    #: Field selections written in the document (GraphiQL's introspection query has 72): bounds
    #: graphql-core's quadratic check of overlapping fields to ~0.15 s for the worst document.
    max_fields: int = 200
    #: About 50,000 fields resolved: two nested pages of 100 pass, three do not.
    max_cost: int = 50_000
    max_page_size: int = 100
    #: The multiplier of a list field without ``first``/``last``, and of an absent ``first``.
    default_list_size: int = 10
    #: Better multipliers for some list fields, as {"Type.field": size}.
    list_sizes: Mapping[str, int] = field(default_factory=dict)


# --- fields ----------------------------------------------------------------------------------


class _KnownDocuments:
    """A bounded LRU set of small documents that passed the field count."""

    MAX_ENTRIES: ClassVar[int] = 2_048
    MAX_LENGTH: ClassVar[int] = 20_000

    def __init__(self) -> None:
        self._entries: LRUCache[tuple[str, int], bool] = LRUCache(self.MAX_ENTRIES)

    def __contains__(self, key: tuple[str, int]) -> bool:
        # ``get``, not ``in``: only a read marks the entry as recently used.
        return self._entries.get(key, False)

    def add(self, key: tuple[str, int]) -> None:
        if len(key[0]) > self.MAX_LENGTH:
            return
        self._entries[key] = True


_known_documents = _KnownDocuments()


def count_fields(document: DocumentNode) -> int:
    """The number of field selections written in a document (fragments counted once)."""
    count = 0
    stack: list[SelectionSetNode] = [
        definition.selection_set
        for definition in document.definitions
        if isinstance(definition, OperationDefinitionNode | FragmentDefinitionNode)
    ]
    while stack:
        for selection in stack.pop().selections:
            if isinstance(selection, FieldNode):
                count += 1
                if selection.selection_set is not None:
                    stack.append(selection.selection_set)
            elif isinstance(selection, InlineFragmentNode):
                stack.append(selection.selection_set)
    return count


def check_fields(document: DocumentNode, max_fields: int) -> None:
    """Raise a TOO_MANY_FIELDS error if ``document`` selects more than ``max_fields`` fields."""
    count = count_fields(document)
    if count > max_fields:
        raise coded_error(
            f"query: selects {count} fields; at most {max_fields} are allowed",
            TOO_MANY_FIELDS,
        )


# --- depth and aliases ---------------------------------------------------------------------


def _depth(
    selection_set: SelectionSetNode,
    fragments: Mapping[str, FragmentDefinitionNode],
    memo: dict[tuple[str, int], int],
    visiting: frozenset[str],
    budget: int,
) -> int:
    """Depth of a selection set, stopping once it is more than ``budget`` levels deep.

    A fragment's depth is remembered per budget: without that, fragments that each spread the
    next one twice take time exponential in their number.
    """
    deepest = 0
    for selection in selection_set.selections:
        if isinstance(selection, FieldNode):
            if selection.name.value.startswith("__"):
                continue
            depth = 1
            if selection.selection_set is not None and budget > 0:
                depth += _depth(selection.selection_set, fragments, memo, visiting, budget - 1)
        elif isinstance(selection, InlineFragmentNode):
            depth = _depth(selection.selection_set, fragments, memo, visiting, budget)
        elif isinstance(selection, FragmentSpreadNode):
            name = selection.name.value
            fragment = fragments.get(name)
            if fragment is None or name in visiting:
                continue
            key = (name, budget)
            if key not in memo:
                memo[key] = _depth(
                    fragment.selection_set, fragments, memo, visiting | {name}, budget
                )
            depth = memo[key]
        else:  # pragma: no cover - no other selection kinds exist
            continue
        deepest = max(deepest, depth)
        if deepest > budget:
            break
    return deepest


def _aliases(
    selection_set: SelectionSetNode,
    fragments: Mapping[str, FragmentDefinitionNode],
    memo: dict[str, int],
    visiting: frozenset[str],
) -> int:
    count = 0
    for selection in selection_set.selections:
        if isinstance(selection, FieldNode):
            if selection.alias is not None:
                count += 1
            if selection.selection_set is not None:
                count += _aliases(selection.selection_set, fragments, memo, visiting)
        elif isinstance(selection, InlineFragmentNode):
            count += _aliases(selection.selection_set, fragments, memo, visiting)
        elif isinstance(selection, FragmentSpreadNode):
            name = selection.name.value
            fragment = fragments.get(name)
            if fragment is None or name in visiting:
                continue
            if name not in memo:
                memo[name] = _aliases(fragment.selection_set, fragments, memo, visiting | {name})
            count += memo[name]
    return count


def _fragments(rule: ValidationRule) -> dict[str, FragmentDefinitionNode]:
    return {
        definition.name.value: definition
        for definition in rule.context.document.definitions
        if isinstance(definition, FragmentDefinitionNode)
    }


class DepthLimitRule(ValidationRule):
    """QUERY_TOO_DEEP when an operation is deeper than ``max_depth`` fields."""

    max_depth: ClassVar[int] = Limits.max_depth

    def enter_operation_definition(self, node: OperationDefinitionNode, *_args: Any) -> None:
        depth = _depth(node.selection_set, _fragments(self), {}, frozenset(), self.max_depth)
        if depth > self.max_depth:
            self.report_error(
                GraphQLError(
                    f"query: nests fields more than {self.max_depth} levels deep; at most "
                    f"{self.max_depth} are allowed",
                    node,
                    extensions={"code": QUERY_TOO_DEEP},
                )
            )


class AliasLimitRule(ValidationRule):
    """TOO_MANY_ALIASES when an operation has more than ``max_aliases`` aliases."""

    max_aliases: ClassVar[int] = Limits.max_aliases

    def enter_operation_definition(self, node: OperationDefinitionNode, *_args: Any) -> None:
        count = _aliases(node.selection_set, _fragments(self), {}, frozenset())
        if count > self.max_aliases:
            self.report_error(
                GraphQLError(
                    f"query: has {count} aliases; at most {self.max_aliases} are allowed",
                    node,
                    extensions={"code": TOO_MANY_ALIASES},
                )
            )


def page_size_error(name: str, value: int, max_page_size: int, node: Any = None) -> GraphQLError:
    return GraphQLError(
        f"{name}: must be between 0 and {max_page_size}, got {value}",
        node,
        extensions={"code": BAD_USER_INPUT},
    )


class PageSizeRule(ValidationRule):
    """BAD_USER_INPUT when a literal ``first``/``last`` is outside ``0..max_page_size``."""

    max_page_size: ClassVar[int] = Limits.max_page_size

    def enter_field(self, node: FieldNode, *_args: Any) -> None:
        for argument in node.arguments or ():
            name = argument.name.value
            if name in PAGE_ARGUMENTS and isinstance(argument.value, IntValueNode):
                value = int(argument.value.value)
                if not 0 <= value <= self.max_page_size:
                    self.report_error(page_size_error(name, value, self.max_page_size, argument))


# --- cost ----------------------------------------------------------------------------------


class _TooCostly(Exception):
    pass


class CostEstimator:
    """Computes the cost of an operation (module doc) with the request's variable values."""

    def __init__(
        self,
        schema: GraphQLSchema,
        fragments: Mapping[str, FragmentDefinitionNode],
        variables: Mapping[str, Any],
        defaults: Mapping[str, Any],
        limits: Limits,
    ) -> None:
        self.schema = schema
        self.fragments = fragments
        self.variables = variables
        self.defaults = defaults
        self.limits = limits
        self._memo: dict[str, int] = {}

    def cost(self, operation: OperationDefinitionNode) -> int:
        """The operation's cost; raises a GraphQLError for a bad page size or a high cost."""
        root = self.schema.get_root_type(operation.operation)
        if root is None:
            return 0
        try:
            return self._selection_cost(operation.selection_set, root, frozenset())
        except _TooCostly:
            return self.limits.max_cost + 1

    def _selection_cost(
        self, selection_set: SelectionSetNode, parent: GraphQLNamedType, visiting: frozenset[str]
    ) -> int:
        total = 0
        for selection in selection_set.selections:
            if isinstance(selection, FieldNode):
                total += self._field_cost(selection, parent, visiting)
            elif isinstance(selection, InlineFragmentNode):
                condition = selection.type_condition
                branch = self.schema.get_type(condition.name.value) if condition else parent
                total += self._selection_cost(selection.selection_set, branch or parent, visiting)
            elif isinstance(selection, FragmentSpreadNode):
                name = selection.name.value
                fragment = self.fragments.get(name)
                if fragment is None or name in visiting:
                    continue
                if name not in self._memo:
                    branch = self.schema.get_type(fragment.type_condition.name.value) or parent
                    self._memo[name] = self._selection_cost(
                        fragment.selection_set, branch, visiting | {name}
                    )
                total += self._memo[name]
            if total > self.limits.max_cost:
                raise _TooCostly
        return total

    def _field_cost(
        self, node: FieldNode, parent: GraphQLNamedType, visiting: frozenset[str]
    ) -> int:
        name = node.name.value
        if name.startswith("__"):
            return 0
        definition: GraphQLField | None = None
        if isinstance(parent, GraphQLObjectType | GraphQLInterfaceType):
            definition = parent.fields.get(name)
        if definition is None:
            return 1
        children = 0
        if node.selection_set is not None:
            child_type = get_named_type(definition.type)
            children = self._selection_cost(node.selection_set, child_type, visiting)
        return 1 + self._multiplier(node, definition, parent) * children

    def _multiplier(
        self, node: FieldNode, definition: GraphQLField, parent: GraphQLNamedType
    ) -> int:
        page: int | None = None
        paged = False
        for name in PAGE_ARGUMENTS:
            if name not in definition.args:
                continue
            paged = True
            value = self._argument(node, name, definition)
            if value is not None:
                if not 0 <= value <= self.limits.max_page_size:
                    raise page_size_error(name, value, self.limits.max_page_size, node)
                page = value if page is None else max(page, value)
        if paged:
            return page if page is not None else self.limits.default_list_size
        field_type = definition.type
        if isinstance(field_type, GraphQLNonNull):
            field_type = field_type.of_type
        if not isinstance(field_type, GraphQLList):
            return 1
        if parent.name.endswith("Connection") and node.name.value in ("edges", "nodes"):
            return 1
        hint = self.limits.list_sizes.get(f"{parent.name}.{node.name.value}")
        return hint if hint is not None else self.limits.default_list_size

    def _argument(self, node: FieldNode, name: str, definition: GraphQLField) -> int | None:
        value_node: ValueNode | None = None
        for argument in node.arguments or ():
            if argument.name.value == name:
                value_node = argument.value
                break
        value: Any
        if value_node is None:
            value = definition.args[name].default_value
        elif isinstance(value_node, IntValueNode):
            value = int(value_node.value)
        elif isinstance(value_node, VariableNode):
            variable = value_node.name.value
            value = self.variables.get(variable, self.defaults.get(variable))
        elif isinstance(value_node, NullValueNode):
            value = None
        else:
            value = None
        # Anything else (a wrong type) fails variable coercion later; estimate it as absent.
        return value if isinstance(value, int) and not isinstance(value, bool) else None


def _variable_defaults(operation: OperationDefinitionNode) -> dict[str, Any]:
    defaults: dict[str, Any] = {}
    for definition in operation.variable_definitions or ():
        default = definition.default_value
        if isinstance(default, IntValueNode):
            defaults[definition.variable.name.value] = int(default.value)
    return defaults


def operation_cost(
    schema: GraphQLSchema,
    document: Any,
    operation_name: str | None,
    variables: Mapping[str, Any] | None,
    limits: Limits,
) -> int:
    """The cost of the operation the request names (0 if none can be found).

    Remembered per document, operation and integer variables (the only values a cost depends
    on: page sizes), so a document sent again with other ids is not walked again.
    """
    objects = (schema, document, limits)
    pages = (
        operation_name,
        tuple(sorted((k, v) for k, v in (variables or {}).items() if type(v) is int)),
    )
    cost = _COSTS.get(objects, pages)
    if cost is None:
        cost = _operation_cost(schema, document, operation_name, variables, limits)
        _COSTS.put(objects, pages, cost)
    return cost


_COSTS: IdentityCache[int] = IdentityCache()


def _operation_cost(
    schema: GraphQLSchema,
    document: Any,
    operation_name: str | None,
    variables: Mapping[str, Any] | None,
    limits: Limits,
) -> int:
    operation = get_operation_ast(document, operation_name)
    if operation is None:
        return 0
    fragments = {
        definition.name.value: definition
        for definition in document.definitions
        if isinstance(definition, FragmentDefinitionNode)
    }
    estimator = CostEstimator(
        schema, fragments, variables or {}, _variable_defaults(operation), limits
    )
    return estimator.cost(operation)


def _too_costly(limits: Limits) -> GraphQLError:
    return coded_error(
        f"query: costs more than {limits.max_cost} (the estimate counts each field once per "
        "item of the lists above it); ask for fewer items or fields",
        QUERY_TOO_COSTLY,
        maxCost=limits.max_cost,
    )


class RefusedOperation(GraphQLError):
    """A limit's refusal of a subscription, raised before it starts (see OperationLimits)."""

    def __init__(self, error: GraphQLError) -> None:
        super().__init__(
            error.message,
            nodes=error.nodes,
            source=error.source,
            positions=error.positions,
            extensions=error.extensions,
        )


class OperationLimits(SchemaExtension):
    """Every limit of this module, in one extension (list it before ParserCache).

    * ``on_operation`` sets the parser's ``max_tokens`` and adds the validation rules (depth,
      aliases, literal page sizes, and with ``introspection`` off graphql-core's
      NoSchemaIntrospectionCustomRule);
    * ``on_parse`` counts fields right after the parser runs, once per distinct small
      document (later requests with the same text skip the count);
    * ``on_execute``, once variables are known, refuses a document of several operations
      without ``operationName`` (BAD_REQUEST; Strawberry would run the first one) and checks
      the page sizes given by variables and the cost. A refusal is set as the result, so
      graphql-core never runs and the response has no ``data`` (a request error). Strawberry
      starts a subscription whatever the result says, so there the refusal is raised, as a
      :class:`RefusedOperation`, which Strawberry reports instead of subscribing.

    One extension rather than three: each extension costs Strawberry some work per request.
    Configured by subclassing: see :func:`operation_limits`.
    """

    limits: ClassVar[Limits] = Limits()
    rules: ClassVar[tuple[type[ASTValidationRule], ...]] = ()

    def on_operation(self) -> Iterator[None]:
        context = self.execution_context
        context.parse_options["max_tokens"] = self.limits.max_tokens
        context.validation_rules = (*context.validation_rules, *self.rules)
        yield

    def on_parse(self) -> Iterator[None]:
        context = self.execution_context
        query = context.query
        limits = self.limits
        key = (query or "", limits.max_fields)
        if query is None or context.graphql_document is not None or key in _known_documents:
            yield
            return
        yield
        if context.graphql_document is not None:
            check_fields(context.graphql_document, limits.max_fields)
            _known_documents.add(key)

    def on_execute(self) -> Iterator[None]:
        context = self.execution_context
        document = context.graphql_document
        if document is not None and context.result is None:
            error = self._refusal(document)
            if error is not None:
                if context.operation_type == StrawberryOperationType.SUBSCRIPTION:
                    raise RefusedOperation(error)
                context.result = ExecutionResult(data=None, errors=[error])
        yield

    def _refusal(self, document: DocumentNode) -> GraphQLError | None:
        context = self.execution_context
        if getattr(context, "_provided_operation_name", None) is None and (
            sum(isinstance(d, OperationDefinitionNode) for d in document.definitions) > 1
        ):
            return coded_error(
                "operationName: is required when the document has several operations", BAD_REQUEST
            )
        try:
            cost = operation_cost(
                context.schema._schema,
                document,
                context.operation_name,
                context.variables,
                self.limits,
            )
        except GraphQLError as exc:
            return exc
        return _too_costly(self.limits) if cost > self.limits.max_cost else None


def operation_limits(
    limits: Limits | None = None, *, introspection: bool = True
) -> type[OperationLimits]:
    """The :class:`OperationLimits` extension class for ``limits`` (pass it as a class)."""
    chosen = limits or Limits()

    class ConfiguredDepthLimit(DepthLimitRule):
        max_depth = chosen.max_depth

    class ConfiguredAliasLimit(AliasLimitRule):
        max_aliases = chosen.max_aliases

    class ConfiguredPageSize(PageSizeRule):
        max_page_size = chosen.max_page_size

    rules: list[type[ASTValidationRule]] = [
        ConfiguredDepthLimit,
        ConfiguredAliasLimit,
        ConfiguredPageSize,
    ]
    if not introspection:
        rules.append(NoSchemaIntrospectionCustomRule)

    class ConfiguredOperationLimits(OperationLimits):
        pass

    ConfiguredOperationLimits.limits = chosen
    ConfiguredOperationLimits.rules = tuple(rules)
    return ConfiguredOperationLimits
