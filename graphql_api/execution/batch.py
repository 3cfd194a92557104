"""Batch resolvers: one call resolves a field for every object of a level of the response.

A field declared with ``metadata=batched(fn)`` keeps its ordinary resolver (graphql-core calls
it object by object, batching through the request's DataLoaders), and the compiled executor
(:mod:`graphql_api.execution.executor`) calls ``fn`` instead, once for all the objects of the
response that select the field with the same arguments::

    async def fn(roots: Sequence[Parent], info: Info, **arguments) -> Sequence[Value | Exception]

``roots`` are the parent objects in response order (the same object may appear more than once),
``info`` is the Strawberry ``Info`` of the first of them and ``arguments`` are the field's
arguments converted as Strawberry converts them for the ordinary resolver. It returns one value
per root, in order; an exception in place of a value is that object's field error, and an
exception raised is every object's. Both resolvers must give the same values: the executor's
differential tests run queries through both.

Why: an awaited resolver per object costs a coroutine, a DataLoader future and a task per
object; a 3-level list of 20 x 5 statements spent most of its time in that machinery and not in
the two SQL statements it needed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable, Mapping, Sequence
from typing import Any, Final, TypeVar

from projections.paging import MAX_IDS

#: The field metadata key under which a field's batch resolver is kept.
BATCH: Final = "statements.batch"

R = TypeVar("R")
K = TypeVar("K", bound=Hashable)
V = TypeVar("V")
T = TypeVar("T")

BatchResolver = Callable[..., Awaitable[Sequence[Any]]]


def batched(resolver: BatchResolver) -> dict[str, Any]:
    """Field metadata declaring ``resolver`` as the field's batch resolver."""
    return {BATCH: resolver}


async def by_key(
    roots: Sequence[R],
    key: Callable[[R], K],
    fetch: Callable[[list[K]], Awaitable[Mapping[K, V]]],
    missing: V,
    make: Callable[[V], T],
    chunk: int = MAX_IDS,
) -> list[T]:
    """One ``fetch`` of the distinct keys of ``roots`` (per ``chunk`` keys); each root's value
    made from its row(s).

    A key shared by several roots is fetched and made once: equal keys give the same value
    object (values are read-only views of the read models).
    """
    keys = [key(root) for root in roots]
    unique = list(dict.fromkeys(keys))
    if len(unique) <= chunk:
        found = await fetch(unique)
    else:
        parts = await asyncio.gather(
            *(fetch(unique[i : i + chunk]) for i in range(0, len(unique), chunk))
        )
        found = {k: v for part in parts for k, v in part.items()}
    made: dict[K, T] = {}
    values: list[T] = []
    for k in keys:
        if k in made:
            values.append(made[k])
        else:
            value = made[k] = make(found.get(k, missing))
            values.append(value)
    return values


async def each(roots: Sequence[R], resolve: Callable[[R], Awaitable[T]]) -> list[T | BaseException]:
    """The per-object resolver for each root, concurrently; a failure is that root's error."""
    results = await asyncio.gather(*(resolve(root) for root in roots), return_exceptions=True)
    for result in results:
        if isinstance(result, asyncio.CancelledError):
            raise result
    return list(results)
