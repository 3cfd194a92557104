"""Running a plan: one execution's state, field errors and null propagation, batch levels."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Sequence
from typing import TYPE_CHECKING, Any, Final

from graphql import (
    FieldNode,
    GraphQLNonNull,
    Undefined,
    located_error,
)
from graphql.pyutils import Path

from graphql_api.execution.fence import optimized_is_awaitable as isawaitable
from graphql_api.execution.gathering import SYNC, awaitable, eager_gather, gather_fields
from graphql_api.execution.plan import (
    ATTR,
    BATCH_FIELD,
    LEAF_ATTR,
    TYPENAME,
    Completer,
    FieldPlan,
    Plan,
    unwrap,
)

if TYPE_CHECKING:
    from graphql_api.execution.executor import CompiledExecutor


#: A Path without NamedTuple's Python-level __new__ (it is a tuple of prev, key, typename).
new_path: Final = tuple.__new__


Entry = tuple[Any, dict[str, Any], Path]  # (source, its response object, the field's path)


class Run:
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
        self.queue: dict[FieldPlan, list[Entry]] = {}
        self.nulls: list[Path | None] = []
        # Positions an error is propagating from; what runs on below them is not reported.
        self.abandoned: set[Path | None] | None = None

    # --- batch fields ---------------------------------------------------------------------

    def defer(self, fp: FieldPlan, source: Any, out: dict[str, Any], path: Path) -> None:
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
            results = await eager_gather([self.call_batch(fp, e) for fp, e in groups])
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
                elif kind in SYNC or not awaitable(completed):
                    out[key] = completed
                else:
                    if later is None:
                        later = []
                    later.append(self.complete_later(fp, completed, out, path))
        if later is not None:
            # complete_later returns its errors: nothing to cancel or abandon.
            await asyncio.gather(*later)

    async def call_batch(self, fp: FieldPlan, entries: list[Entry]) -> Sequence[Any]:
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
        self, fp: FieldPlan, completed: Awaitable[Any], out: dict[str, Any], path: Path
    ) -> None:
        try:
            value = await completed
            if value is None and fp.non_null:
                raise TypeError(fp.null_message)
        except Exception as error:
            self.batch_error(error, fp, path)
            value = None
        out[fp.key] = value

    def batch_error(self, raw: Exception, fp: FieldPlan, path: Path) -> None:
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
            type_ = unwrap(type_)
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

    def args(self, fp: FieldPlan) -> dict[str, Any]:
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

    def kwargs(self, fp: FieldPlan, path: Path, info: Any = None) -> dict[str, Any]:
        """The field's arguments as its resolver takes them, converted once per operation."""
        kwargs = self.converted.get(id(fp))
        if kwargs is None:
            if info is None:
                info_class, definition = fp.batch_info  # type: ignore[misc]
                info = info_class(_raw_info=self.info(fp, path), _field=definition)
            kwargs = fp.batch_arguments(self.args(fp), info)  # type: ignore[misc]
            self.converted[id(fp)] = kwargs
        return kwargs

    def info(self, fp: FieldPlan, path: Path) -> Any:
        return self.executor.build_resolve_info(
            fp.field_def,  # type: ignore[arg-type]
            fp.nodes,
            fp.parent_type,  # type: ignore[arg-type]
            path,
        )

    def direct(self, fp: FieldPlan, source: Any, path: Path) -> Any:
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
                if kind == LEAF_ATTR:
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
                            new_path(Path, (path, fp.key, fp.parent_name)),
                            not fp.non_null,
                        )
                    continue
                if kind == TYPENAME:
                    out[fp.key] = fp.parent_name
                    continue
                if kind == BATCH_FIELD:
                    out[fp.key] = None
                    self.defer(fp, source, out, new_path(Path, (path, fp.key, fp.parent_name)))
                    continue
                field_path = new_path(Path, (path, fp.key, fp.parent_name))
                try:
                    if kind == ATTR:
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
                    if type(value) in SYNC or not awaitable(value):
                        result: Any = fp.complete(self, value, field_path)  # type: ignore[misc]
                        if type(result) in SYNC or not awaitable(result):
                            out[fp.key] = result
                            continue
                        result = guard_later(
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
        return gather_fields(self, path, out, pending)


async def _field_later(run: Run, fp: FieldPlan, value: Awaitable[Any], path: Path) -> Any:
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


async def guard_later(
    run: Run, completed: Awaitable[Any], path: Path, nodes: list[FieldNode], non_null: str
) -> Any:
    """Await a completion; ``non_null`` is the error message when null is not allowed."""
    try:
        value = await completed
        if value is None and non_null:
            raise TypeError(non_null)
    except Exception as error:
        return run.field_error(error, nodes, path, not non_null)
    return value


async def item_later(
    run: Run,
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
