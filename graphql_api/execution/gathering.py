"""Awaiting what resolvers return: many at once, the first error abandoning the rest."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Coroutine, Generator
from types import GeneratorType
from typing import TYPE_CHECKING, Any, Final

from graphql.pyutils import Path

from graphql_api.execution.fence import optimized_is_awaitable as isawaitable

if TYPE_CHECKING:
    from graphql_api.execution.run import Run


#: Types seen not to be awaitable (graphql-core's test: a coroutine, an iterable coroutine or
#: an ``__await__`` attribute); checked inline before calling :func:`awaitable`.
SYNC: Final[set[type]] = {type(None), bool, int, float, str, bytes, list, tuple, dict}
SYNC_LIMIT: Final = 4_096


def awaitable(value: Any) -> bool:
    if isawaitable(value):
        return True
    kind = type(value)
    # A generator is awaitable or not by its code's flags, not by its type.
    if kind is not GeneratorType and len(SYNC) < SYNC_LIMIT:
        SYNC.add(kind)
    return False


class Started:
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


async def eager_gather(coros: list[Coroutine[Any, Any, Any]]) -> list[Any]:
    """The coroutines' results, each run at once until it first waits; a task only for those
    that do wait. The coroutines must not raise (they return their errors)."""
    results: list[Any] = [None] * len(coros)
    waiting: list[tuple[int, Started]] = []
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
            waiting.append((index, Started(coro, yielded)))
    if waiting:
        values = await asyncio.gather(*(started for _, started in waiting))
        for (index, _), value in zip(waiting, values, strict=True):
            results[index] = value
    return results


async def gather(run: Run, path: Path | None, awaitables: list[Awaitable[Any]]) -> list[Any]:
    """The values of the awaitables under ``path``; on the first error, the others are
    abandoned (see ``Run.abandon``).

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


async def gather_fields(
    run: Run, path: Path | None, out: dict[str, Any], pending: list[str]
) -> dict[str, Any]:
    if len(pending) == 1:
        key = pending[0]
        out[key] = await out[key]
    else:
        values = await gather(run, path, [out[key] for key in pending])
        out.update(zip(pending, values, strict=True))
    return out


async def gather_items(run: Run, path: Path, results: list[Any], pending: list[int]) -> list[Any]:
    if len(pending) == 1:
        index = pending[0]
        results[index] = await results[index]
    else:
        values = await gather(run, path, [results[i] for i in pending])
        for index, value in zip(pending, values, strict=True):
            results[index] = value
    return results
