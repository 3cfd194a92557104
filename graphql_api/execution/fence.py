"""Every private internal of graphql-core and Strawberry that the executor relies on.

The compiled executor (:mod:`.executor`) reads graphql-core's field collection and error list,
subclasses Strawberry's execution context, and recognises Strawberry's resolver wrappers by the
names of the closures its schema converter makes; the streaming transports clear a memo of
graphql-core's per-event executors. None of that is public API, so it is all imported or named
here and nowhere else, and :func:`check` (run once at start-up by the app) verifies each hook
on the installed versions. A missing hook turns the compiled executor off: queries then run on
graphql-core's own executor, with the same answers at a higher cost per field, and one warning
names what is missing, instead of a failure on the first query or a silent change of behaviour.
``STATEMENTS_COMPILED_EXECUTOR=0`` turns it off on purpose (:func:`switch_off`).
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from graphql import Executor, GraphQLSchema

# Imported here so that an upstream rename stops at this module: the executor is imported only
# once check() has seen every hook (executor_class), so the app still starts without them.
try:
    from graphql.execution.collect_fields import (
        FieldDetailsList,
        collect_fields,
        collect_subfields,
    )
    from graphql.execution.executor import CollectedErrors
    from strawberry.execution.is_awaitable import optimized_is_awaitable
    from strawberry.scalars import is_scalar
    from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext
    from strawberry.types.arguments import convert_argument
    from strawberry.types.base import StrawberryMaybe, StrawberryOptional
    from strawberry.types.cast import TYPE_CAST_ATTRIBUTE
    from strawberry.types.enum import StrawberryEnumDefinition
    from strawberry.types.lazy_type import LazyType
except ImportError:  # pragma: no cover - reported by check()
    pass

if TYPE_CHECKING:
    from graphql_api.execution.executor import CompiledExecutor

log = logging.getLogger(__name__)

__all__ = [
    "TYPE_CAST_ATTRIBUTE",
    "CollectedErrors",
    "FenceReport",
    "FieldDetailsList",
    "LazyType",
    "StrawberryEnumDefinition",
    "StrawberryGraphQLCoreExecutionContext",
    "StrawberryMaybe",
    "StrawberryOptional",
    "check",
    "collect_fields",
    "collect_subfields",
    "convert_argument",
    "executor_class",
    "is_basic_getattr",
    "is_scalar",
    "is_strawberry_resolver",
    "optimized_is_awaitable",
    "per_event_executor",
    "strawberry_schema_of",
    "switch_off",
]

#: The private names the compiled executor imports, by module.
IMPORTED: Final[dict[str, tuple[str, ...]]] = {
    "graphql.execution.collect_fields": ("FieldDetailsList", "collect_fields", "collect_subfields"),
    "graphql.execution.executor": ("CollectedErrors",),
    "strawberry.execution.is_awaitable": ("optimized_is_awaitable",),
    "strawberry.scalars": ("is_scalar",),
    "strawberry.schema.schema": ("StrawberryGraphQLCoreExecutionContext",),
    "strawberry.types.arguments": ("convert_argument",),
    "strawberry.types.base": ("StrawberryMaybe", "StrawberryOptional"),
    "strawberry.types.cast": ("TYPE_CAST_ATTRIBUTE",),
    "strawberry.types.enum": ("StrawberryEnumDefinition",),
    "strawberry.types.lazy_type": ("LazyType",),
}

#: graphql-core executor attributes the compiled executor reads (set in Executor.__init__).
EXECUTOR_ATTRIBUTES: Final = (
    "abort_signal",
    "async_helpers",
    "build_resolve_info",
    "build_response",
    "collected_errors",
    "enable_early_execution",
    "error_propagation",
    "field_resolver",
    "fragment_definitions",
    "fragments",
    "gather_async_work",
    "hide_suggestions",
    "hooks",
    "middleware_manager",
    "operation",
    "root_value",
    "settle_in_background",
    "track_async_work",
    "variable_values",
)

#: The names Strawberry's schema converter gives the closures it wraps fields in: a plain
#: attribute (read with getattr), and a resolver function, sync or async.
BASIC_GETTER: Final = "_get_basic_result"
RESOLVER_WRAPPERS: Final = ("_resolver", "_async_resolver")
#: The attribute of a GraphQLSchema that leads back to its Strawberry schema.
STRAWBERRY_SCHEMA: Final = "_strawberry_schema"
#: graphql-core's memo of collected sub-fields, shared by a subscription's per-event copies.
SUB_FIELD_MEMO: Final = "_relevant_sub_fields"

_SUBSCRIPTION_LEAK: Final = (
    "subscriptions keep one memo entry per event delivered, so a long subscription's memory "
    "grows until it ends"
)


def is_basic_getattr(resolve: Callable[..., Any] | None) -> bool:
    """Whether ``resolve`` is Strawberry's wrapper of a plain attribute (no resolver)."""
    return getattr(resolve, "__name__", "") == BASIC_GETTER


def is_strawberry_resolver(resolve: Callable[..., Any] | None) -> bool:
    """Whether ``resolve`` is Strawberry's wrapper of a resolver function."""
    return getattr(resolve, "__name__", "") in RESOLVER_WRAPPERS


def strawberry_schema_of(schema: GraphQLSchema) -> Any:
    """The Strawberry schema a graphql-core schema was converted from, or None."""
    return getattr(schema, STRAWBERRY_SCHEMA, None)


@dataclass(frozen=True)
class FenceReport:
    """What :func:`check` found missing: hooks of the compiled executor, of subscriptions."""

    executor_missing: tuple[str, ...] = ()
    subscription_missing: tuple[str, ...] = ()

    @property
    def compiled_executor(self) -> bool:
        return not self.executor_missing

    @property
    def per_event_executor(self) -> bool:
        return not self.subscription_missing

    def warning(self) -> str | None:
        """The one warning to log, or None when every hook is there."""
        parts = []
        if self.executor_missing:
            parts.append(
                "the compiled executor is off, queries run on graphql-core's executor (same "
                "answers, slower): missing " + ", ".join(self.executor_missing)
            )
        if self.subscription_missing:
            parts.append(f"{_SUBSCRIPTION_LEAK}: missing " + ", ".join(self.subscription_missing))
        if not parts:
            return None
        return (
            "graphql-core or Strawberry no longer have internals this version relies on "
            "(pyproject.toml pins the tested ones); " + "; ".join(parts)
        )


class _State:
    """The process's answer: the report of the one check, and the off switch."""

    def __init__(self) -> None:
        self.report: FenceReport | None = None
        self.switched_off = False


STATE: Final = _State()


def switch_off() -> None:
    """Run queries on graphql-core's executor in this process (STATEMENTS_COMPILED_EXECUTOR=0)."""
    STATE.switched_off = True


def check() -> FenceReport:
    """Verify every hook once per process; log one warning naming what is missing, if anything."""
    if STATE.report is None:
        STATE.report = _inspect()
        message = STATE.report.warning()
        if message is not None:
            log.warning(message)
    return STATE.report


def executor_class() -> type[CompiledExecutor] | None:
    """The compiled executor, or None for the stock one (switched off, or a hook missing)."""
    if STATE.switched_off or not check().compiled_executor:
        return None
    from graphql_api.execution.executor import CompiledExecutor

    return CompiledExecutor


_per_event_classes: dict[type[Executor[Any]], type[Executor[Any]]] = {}


def per_event_executor(base: type[Executor[Any]]) -> type[Executor[Any]]:
    """``base``, minus a leak of its per-event copies (``base`` itself without the hook).

    graphql-core 3.3 runs each event of a subscription on a shallow copy of the subscription's
    executor, and the copy shares its memo of collected sub-fields. That memo is keyed by the
    identity of a field list built anew for every event and keeps the list alive, so it gains
    an entry (about ten objects) per message for the life of the subscription: at thousands of
    messages a second the heap grows without bound and the full garbage collections, each
    stopping the event loop, grow with it. Each copy gets a memo of its own.
    """
    if not check().per_event_executor:
        return base
    known = _per_event_classes.get(base)
    if known is not None:
        return known

    class PerEventExecutor(base):  # type: ignore[valid-type,misc]
        def build_per_event_executor(self, payload: Any) -> Executor[Any]:
            executor: Executor[Any] = super().build_per_event_executor(payload)
            setattr(executor, SUB_FIELD_MEMO, {})
            return executor

    PerEventExecutor.__name__ = PerEventExecutor.__qualname__ = f"PerEvent{base.__name__}"
    _per_event_classes[base] = PerEventExecutor
    return PerEventExecutor


# --- the check ----------------------------------------------------------------------------


def _inspect() -> FenceReport:
    executor_missing = [
        f"{module}.{name}"
        for module, names in IMPORTED.items()
        for name in names
        if not _has(module, name)
    ]
    subscription_missing: list[str] = []
    if not callable(getattr(Executor, "build_per_event_executor", None)):
        subscription_missing.append("graphql.Executor.build_per_event_executor")
    try:
        executor_missing += _probe(subscription_missing)
    except Exception as error:  # anything the probe trips on is a hook that moved
        executor_missing.append(f"a working probe query ({type(error).__name__}: {error})")
    return FenceReport(tuple(executor_missing), tuple(subscription_missing))


def _has(module: str, name: str) -> bool:
    try:
        return hasattr(importlib.import_module(module), name)
    except ImportError:
        return False


def _probe(subscription_missing: list[str]) -> list[str]:
    """Build a small Strawberry schema and look at what the executor relies on in it."""
    import strawberry
    from graphql import parse

    from graphql_api.execution.probe import ProbeQuery

    schema = strawberry.Schema(ProbeQuery)
    graphql_schema = schema._schema
    missing = []
    if strawberry_schema_of(graphql_schema) is None:
        missing.append(f"graphql.GraphQLSchema.{STRAWBERRY_SCHEMA} (set by Strawberry)")
    fields = graphql_schema.type_map["Probe"].fields  # type: ignore[attr-defined]
    if not is_basic_getattr(fields["plain"].resolve):
        missing.append(f"Strawberry's {BASIC_GETTER} wrapper of plain fields")
    if not is_strawberry_resolver(fields["sync"].resolve) or not is_strawberry_resolver(
        fields["later"].resolve
    ):
        missing.append(f"Strawberry's {' and '.join(RESOLVER_WRAPPERS)} resolver wrappers")

    base = schema.execution_context_class or StrawberryGraphQLCoreExecutionContext
    executor = base.build(graphql_schema, parse("{ probe { plain sync(times: 2) later } }"))
    if isinstance(executor, list):
        raise RuntimeError("; ".join(error.message for error in executor))
    missing += [
        f"graphql.Executor.{name}" for name in EXECUTOR_ATTRIBUTES if not hasattr(executor, name)
    ]
    if not isinstance(getattr(executor, SUB_FIELD_MEMO, None), dict):
        subscription_missing.append(f"graphql.Executor.{SUB_FIELD_MEMO}")
    if missing:
        return missing

    from graphql_api.execution.executor import CompiledExecutor

    compiled = CompiledExecutor.build(graphql_schema, parse("{ probe { plain sync(times: 2) } }"))
    if isinstance(compiled, list) or compiled.compiled() is None:
        return ["a compiled plan for a probe query"]
    result = compiled.execute_operation()
    if result.errors or result.data != {"probe": {"plain": "plain", "sync": "syncsync"}}:
        return [f"the probe query's answer ({result.errors or result.data})"]
    return []
