"""Read-your-writes and reads at or after a log position.

* **After a mutation.** A mutation's resolver runs its commands inside :func:`read_your_writes`,
  which records the events they append (:func:`graphql_api.service_layer.eventlog.recording_writes`)
  and then waits until every read model those events' types affect shows them, committed. Only then
  does the mutation answer, so every query sent after the answer, to any process, sees the change.
  The wait is bounded (``STATEMENTS_POSITION_WAIT_SECONDS``): past the bound the write stays
  durable, the payload still goes out, and the response carries a ``POSITION_NOT_REACHED`` error
  beside it (:func:`late_errors`, added by ``ApiSchema.execute``).
* **A read at or after a position.** A request with ``X-Min-Position: P`` is executed once every
  read model reflects the log up to P (the HTTP endpoint calls :meth:`Consistency.at_least`);
  past the bound it gets ``POSITION_NOT_REACHED`` instead of an answer that may be older.

Where the read models stand comes from the process's
:class:`~eventstore.watcher.CheckpointWatcher`. The app puts a :class:`Consistency` in
``context.consistency``; without one (tests of the schema alone) nothing waits.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Final

from graphql import GraphQLError

from eventstore.watcher import CheckpointWatcher, WaitResult
from graphql_api.errors import POSITION_NOT_REACHED
from graphql_api.service_layer.eventlog import Writes, recording_writes

#: The request header asking for a read at or after a log position (lower case, as in ASGI).
MIN_POSITION_HEADER: Final = "x-min-position"
DEFAULT_WAIT_SECONDS: Final = 5.0

_POSITION: Final = re.compile(r"\s*[0-9]{1,18}\s*")


@dataclass(frozen=True, slots=True)
class Consistency:
    """The process's watcher and how long a request may wait for the read models."""

    watcher: CheckpointWatcher
    timeout: float = DEFAULT_WAIT_SECONDS

    async def after(self, writes: Writes) -> WaitResult | None:
        """Wait until the read models affected by ``writes`` show them; None if none are, or
        if waiting is off (a timeout of 0: clients then read with X-Min-Position)."""
        if self.timeout <= 0:
            return None
        targets: dict[str, int] = {}
        for type_, position in writes.last_of_each_type().items():
            for name in self.watcher.affected((type_,)):
                targets[name] = max(position, targets.get(name, 0))
        if not targets:
            return None
        # Each waited-for projection has an event at its target: no need to scan the log.
        result = await self.watcher.wait_each(targets, self.timeout, scan=False)
        last = writes.position
        if result.ok or last is None:
            return result
        # Report against the payload's position, the one the client has.
        return WaitResult(
            ok=False,
            position=last,
            reached=result.reached,
            behind=result.behind,
            failed=result.failed,
        )

    async def at_least(self, position: int) -> WaitResult:
        """Wait until every read model reflects the log up to ``position``."""
        return await self.watcher.wait(position, timeout=self.timeout)


def parse_min_position(value: str | None) -> int | None:
    """The position an ``X-Min-Position`` header asks for; ValueError if it is not one."""
    if value is None or not value.strip():
        return None
    if not _POSITION.fullmatch(value):
        raise ValueError(
            "X-Min-Position must be a log position (a whole number >= 0, such as the "
            "`position` of a mutation's payload)"
        )
    return int(value)


def not_reached(result: WaitResult, path: list[str | int] | None = None) -> GraphQLError:
    """The ``POSITION_NOT_REACHED`` error for a wait that ended short of its position."""
    if result.failed:
        why = "a read model is stopped on an event and needs an operator to retry it"
    else:
        why = "the read models are still catching up"
    return GraphQLError(
        f"The read models have not reached log position {result.position} yet "
        f"(they are at {result.reached}): {why}. Retry with X-Min-Position: {result.position}.",
        path=path,
        extensions={
            "code": POSITION_NOT_REACHED,
            "retryable": True,
            "position": result.position,
            "reached": result.reached,
        },
    )


@dataclass(slots=True)
class Written:
    """What :func:`read_your_writes` saw: the writes, and whether the read models show them
    (None when nothing was waited for: nothing written, no read model affected, waiting off)."""

    writes: Writes = field(default_factory=Writes)
    reached: bool | None = None


@contextlib.asynccontextmanager
async def read_your_writes(info: Any) -> AsyncIterator[Written]:
    """Run a mutation's commands in the block; on leaving it, wait for the read models.

    ``info`` is the resolver's ``strawberry.Info``. When the wait ends short, the error is
    added to the response beside the field's data (the write itself stands).
    """
    written = Written()
    with recording_writes() as writes:
        written.writes = writes
        yield written
    context = info.context
    consistency = context.consistency
    if consistency is None or writes.position is None:
        return
    result = await consistency.after(writes)
    if result is None:
        return
    written.reached = result.ok
    if not result.ok:
        path = list(info.path.as_list()) if info.path is not None else None
        context.late_errors.append(not_reached(result, path))


def late_errors(context: Any) -> list[GraphQLError]:
    """Take the errors :func:`read_your_writes` left in a context (a websocket's context
    serves many operations: each reports its own)."""
    errors = getattr(context, "late_errors", None)
    if not isinstance(errors, list) or not errors:
        return []
    taken = list(errors)
    errors.clear()
    return taken
