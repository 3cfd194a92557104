"""The schema: the Query type given by the query layer, the mutations, limits and errors.

``build_schema(Query)`` is the one place that chooses the extensions, in this order:

1. OperationLimits (:mod:`graphql_api.security.query_limits`): the parser's token limit,
   fields right after, the validation rules (depth, aliases, literal page sizes; with
   ``production`` also no introspection), and before execution the cost
   with the request's variables;
2. Strawberry's ParserCache and :class:`DocumentValidationCache` (bounded LRUs shared across
   requests).

Query operations run on the compiled executor (:mod:`graphql_api.execution`: a plan compiled
once per document, the same answers as graphql-core's executor at a fraction of the cost per
field) unless it is switched off or its start-up check found a hook missing; everything else
runs on graphql-core's executor as Strawberry configures it.

Extensions are passed as classes, so each request gets its own instances. None of them wraps
field resolvers. ``ApiSchema.execute`` then gives every error its code and masks unexpected
ones (:func:`graphql_api.errors.classify_result`; with ``production`` "Did you mean"
suggestions are removed too). It does that after Strawberry returns rather than in an
extension, because errors raised inside extension hooks (a parse error in ParserCache, a
token limit) skip the extensions' post-operation code. It also adds the errors a mutation found
after its field resolved (read models short of its position,
:mod:`graphql_api.service_layer.consistency`), beside the data.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import strawberry
from graphql import GraphQLError
from strawberry.extensions import ParserCache, SchemaExtension
from strawberry.schema.config import StrawberryConfig
from strawberry.schema.schema import validate_document
from strawberry.types import ExecutionContext, ExecutionResult
from strawberry.types.execution import PreExecutionError
from strawberry.types.graphql import OperationType

from graphql_api.errors import GRAPHQL_VALIDATION_FAILED, classify_result, log_errors, with_code
from graphql_api.execution import IdentityCache, executor_class
from graphql_api.schema.mutations import Mutation
from graphql_api.security.query_limits import Limits, operation_limits
from graphql_api.service_layer.consistency import late_errors

CACHE_SIZE = 1_024

ExtensionFactory = type[SchemaExtension] | Callable[[], SchemaExtension]


class SizedParserCache(ParserCache):
    def __init__(self) -> None:
        super().__init__(maxsize=CACHE_SIZE)


_VALIDATED: IdentityCache[list[GraphQLError]] = IdentityCache(CACHE_SIZE)


class DocumentValidationCache(SchemaExtension):
    """Strawberry's ValidationCache, keyed by the parsed document's identity.

    Strawberry's keys the LRU by the document itself, and a graphql-core AST node hashes
    every node below it on each lookup: a cost per request that grows with the document.
    ParserCache hands back the same document object for the same text, so its identity
    is the key (with the rules, a tuple of classes).

    The errors get their code (``GRAPHQL_VALIDATION_FAILED`` unless a limit's rule gave one)
    here, where they are known to be validation errors: the streaming transports get them
    in the same kind of result as graphql-core's refusals of variable values.
    """

    def on_validate(self) -> Iterator[None]:
        context = self.execution_context
        schema = context.schema._schema
        document = context.graphql_document
        rules = context.validation_rules
        if document is None:  # the parser failed; Strawberry reports that itself
            yield
            return
        errors = _VALIDATED.get((schema, document), rules)
        if errors is None:
            errors = [
                with_code(error, GRAPHQL_VALIDATION_FAILED)
                for error in validate_document(schema, document, rules)
            ]
            _VALIDATED.put((schema, document), rules, errors)
        context.pre_execution_errors = errors
        yield


class ApiSchema(strawberry.Schema):
    """A Strawberry schema whose errors all have codes; it logs only unexpected ones."""

    production: bool = False

    async def execute(
        self,
        query: str | None,
        variable_values: dict[str, Any] | None = None,
        context_value: Any | None = None,
        root_value: Any | None = None,
        operation_name: str | None = None,
        allowed_operation_types: Iterable[OperationType] | None = None,
        operation_extensions: dict[str, Any] | None = None,
    ) -> ExecutionResult:
        result = await super().execute(
            query,
            variable_values,
            context_value,
            root_value,
            operation_name,
            allowed_operation_types,
            operation_extensions,
        )
        late = late_errors(context_value)
        if late and not isinstance(result, PreExecutionError):
            result.errors = [*(result.errors or ()), *late]
        return classify_result(result, production=self.production)

    def process_errors(
        self, errors: list[GraphQLError], execution_context: ExecutionContext | None = None
    ) -> None:
        context = execution_context.context if execution_context is not None else None
        log_errors(errors, getattr(context, "request_id", None))


def build_schema(
    query: type,
    *,
    mutation: type | None = Mutation,
    subscription: type | None = None,
    types: Sequence[type] = (),
    production: bool = False,
    limits: Limits | None = None,
    extensions: Sequence[ExtensionFactory] = (),
    compiled: bool = True,
) -> ApiSchema:
    """The API's schema around ``query`` (a ``@strawberry.type`` class given by the caller).

    ``types`` adds types reachable only through interfaces (e.g. Node implementations);
    ``extensions`` are appended after the ones listed in the module doc; ``compiled=False``
    runs every operation on graphql-core's executor instead of the compiled one (the tests
    compare the two).
    """
    chosen: list[Any] = [
        operation_limits(limits, introspection=not production),
        SizedParserCache,
        DocumentValidationCache,
        *extensions,
    ]
    schema = ApiSchema(
        query=query,
        mutation=mutation,
        subscription=subscription,
        types=list(types),
        extensions=chosen,
        config=StrawberryConfig(disable_field_suggestions=production),
        execution_context_class=executor_class() if compiled else None,
    )
    schema.production = production
    return schema
