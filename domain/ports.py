"""The port the handlers use to read and write events; the composition root implements it."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from domain.errors import DomainError


@dataclass(frozen=True, slots=True)
class Appended:
    """Where an append put its events: the stream's new version and the last event's position."""

    stream_id: str
    version: int
    position: int


@dataclass(frozen=True, slots=True)
class StreamAppend:
    """One stream's append in a bulk write: the arguments of ``EventLog.append``."""

    stream_id: str
    events: Sequence[object]
    expected_version: int | None
    metadata: Mapping[str, str | None]
    event_ids: Sequence[str] | None = None


class EventLog(Protocol):
    """Streams of decoded domain events with optimistic concurrency and idempotent appends."""

    async def load(self, stream_id: str) -> tuple[int, list[object]]:
        """The stream's current version and its events in order; (0, []) if it does not exist."""
        ...

    async def append(
        self,
        stream_id: str,
        events: Sequence[object],
        expected_version: int | None,
        metadata: Mapping[str, str | None],
        event_ids: Sequence[str] | None = None,
    ) -> Appended:
        """Append ``events`` atomically, with ``metadata`` stored on each of them.

        ``expected_version``: None accepts any version, 0 requires that the stream does not
        exist, n requires exactly version n; a mismatch raises ``ConcurrencyConflict``.
        ``event_ids`` (UUID strings, one per event) make a retry idempotent: re-appending the
        same ids with the same events and metadata writes nothing and returns the original
        result; reusing them for anything else raises ``DuplicateEventId``.
        """
        ...

    async def load_many(self, stream_ids: Collection[str]) -> dict[str, tuple[int, list[object]]]:
        """``load`` for many streams at once, in a few reads; streams that do not exist are
        absent from the answer."""
        ...

    async def append_many(self, appends: Sequence[StreamAppend]) -> list[Appended | DomainError]:
        """Many streams' appends, each atomic and decided on its own as ``append`` decides it,
        written together. Each gets its ``Appended``, or in its place the ``ConcurrencyConflict``
        or ``DuplicateEventId`` that ``append`` would raise: one failing append never fails
        another."""
        ...


class TopicDirectory(Protocol):
    """Which topics exist: statements' tags create them, so only the whole log knows them all.

    The composition root implements it over the topics read model, which holds exactly this
    answer; the log itself could only answer it by reading every ``Tagged`` event.
    """

    async def topic_name(self, topic_slug: str) -> str | None:
        """The display name of the topic with this slug; None if no statement was tagged so."""
        ...


class StatementDirectory(Protocol):
    """Which statements exist and which were withdrawn, many at once.

    A batch of views names up to a thousand statements; loading each one's stream would cost a
    read per statement. The composition root implements it over the statements read model.
    """

    async def withdrawn(self, statement_ids: Collection[str]) -> Mapping[str, bool]:
        """For each of ``statement_ids`` the read model knows: whether it was withdrawn. Ids it
        does not know (never published, or published moments ago) are left out."""
        ...
