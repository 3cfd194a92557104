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
  pending siblings finish in the background rather than being cancelled (``Run.abandon``);
* reports errors as graphql-core does: located at the field (or list item), null propagated
  to the nearest nullable position, recorded in the executor's ``collected_errors``.

Anything it was not written for goes to graphql-core unchanged: mutations and subscriptions,
``@skip``/``@include``/``@defer``/``@stream`` or any other directive in the operation,
abstract (interface or union) return types, introspection fields, fragment variables,
middleware, abort signals, a non-Strawberry ``is_type_of``. The decision is cached with the
plan. ``tests/graphql_api/test_executor.py`` checks that both executors give the same
responses, data and errors, over generated queries.

The parts: :mod:`.plan` (what a compiled operation is, and its cache), :mod:`.compiler` (from a
document to plans), :mod:`.run` (one execution of a plan: errors, nulls, batch levels),
:mod:`.gathering` (awaiting resolvers' values), :mod:`.fence` (every private internal of
graphql-core and Strawberry used, checked at start-up); this module is the entry point
graphql-core calls.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Callable
from typing import Any, TypeVar

from graphql import (
    DocumentNode,
    GraphQLError,
    GraphQLResolveInfoHelpers,
    OperationType,
)

from graphql_api.execution.compiler import Compiler
from graphql_api.execution.fence import (
    CollectedErrors,
    StrawberryGraphQLCoreExecutionContext,
)
from graphql_api.execution.fence import optimized_is_awaitable as isawaitable
from graphql_api.execution.plan import Compiled, Plan, PlanCache, Unsupported
from graphql_api.execution.run import Run

T = TypeVar("T")


_PLANS = PlanCache()


def _weakly(method: Callable[..., T]) -> Callable[..., T]:
    """``method``, without keeping its object alive."""
    ref = weakref.WeakMethod(method)

    def call(*args: Any, **kwargs: Any) -> T:
        bound = ref()
        if bound is None:
            raise RuntimeError("the execution this helper belongs to is over")
        return bound(*args, **kwargs)

    return call


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
                entry = Compiled(Compiler(self).operation(), "")
            except Unsupported as reason:
                entry = Compiled(None, str(reason))
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
        run = Run(self, plan)
        try:
            data = run.object(plan, self.root_value, None)
        except GraphQLError as error:
            self.collected_errors.add(error, None)
            return self.build_response(None)
        if isawaitable(data) or run.queue:
            return self._later(run, data)
        return self.build_response(data)

    async def _later(self, run: Run, data: Any) -> Any:
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
        run = Run(self, plan, share=False)
        try:
            data = run.object(plan, self.root_value, None)
        except GraphQLError as error:
            self.collected_errors.add(error, None)
            return self.build_response(None)
        return await self._later(run, data)
