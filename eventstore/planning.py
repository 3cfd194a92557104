"""Deciding what one group-committed batch of appends writes; shared by every backend.

Backends fetch the head of the log, the current versions of the streams involved and, when
needed, the stored events that share ids with the batch; this module turns that into rows to
insert and one outcome per request. Keeping it in one place gives all backends the same rules.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from hashlib import sha256
from typing import NamedTuple

from eventstore.chain import record_encoding
from eventstore.errors import ConcurrencyError, DuplicateEventError
from eventstore.records import (
    ANY,
    NO_STREAM,
    STREAM_EXISTS,
    AppendResult,
    ExpectedVersion,
)


class EncodedEvent(NamedTuple):
    event_id: str
    type: str
    schema_version: int
    data: str
    metadata: str


class Row(NamedTuple):
    position: int
    stream_id: str
    version: int
    event_id: str
    type: str
    schema_version: int
    data: str
    metadata: str
    recorded_at_us: int
    hash: bytes


@dataclass(eq=False)
class PendingAppend:
    stream_id: str
    events: list[EncodedEvent]
    expected: ExpectedVersion
    future: asyncio.Future[AppendResult] | None = field(default=None, repr=False)


Outcome = AppendResult | Exception


class Planned(NamedTuple):
    """What a batch writes: rows, one outcome per request and, when the store keeps the Merkle
    tree, each row's node blob (``eventstore.merkle``) and the tree's frontier after them."""

    rows: list[Row]
    outcomes: list[Outcome]
    nodes: list[bytes] | None
    frontier: list[bytes] | None


class NeedsLookup(Exception):
    """Raised by the fast path when a request may be a retry; the backend looks ids up."""


def version_matches(expected: ExpectedVersion, actual: int) -> bool:
    if expected is ANY:
        return True
    if expected is NO_STREAM:
        return actual == 0
    if expected is STREAM_EXISTS:
        return actual > 0
    return expected == actual


def plan_batch(
    requests: list[PendingAppend],
    head_position: int,
    head_hash: bytes,
    versions: dict[str, int],
    recorded_at_us: int,
    existing: dict[str, Row] | None,
    frontier: list[bytes] | None = None,
) -> Planned:
    """Return the rows to insert and each request's outcome, in request order.

    ``frontier`` is the Merkle tree's frontier at ``head_position`` (``eventstore.merkle``), or
    None when the store keeps no tree; it is copied, never changed.

    ``existing`` maps event ids already in the store to their rows. ``None`` means "not looked
    up": any request that could be a retry then raises NeedsLookup, so that the common case
    costs no id lookup at all.
    """
    rows: list[Row] = []
    outcomes: list[Outcome] = []
    in_batch: dict[str, Row] = {}
    current = dict(versions)
    position, prev = head_position, head_hash
    nodes: list[bytes] | None = None
    tip: list[bytes] | None = None
    if frontier is not None:
        nodes, tip = [], list(frontier)
    for request in requests:
        stream = request.stream_id
        ids = [e.event_id for e in request.events]
        known = {}
        if existing is not None:
            for event_id in ids:
                row = in_batch.get(event_id) or existing.get(event_id)
                if row is not None:
                    known[event_id] = row
        else:
            if any(event_id in in_batch for event_id in ids):
                raise NeedsLookup
        if known:
            outcomes.append(_replay_outcome(request, known))
            continue
        actual = current.get(stream, 0)
        if not version_matches(request.expected, actual):
            if existing is None:
                raise NeedsLookup
            outcomes.append(ConcurrencyError(stream, request.expected, actual))
            continue
        version = actual
        first_position = position + 1
        for event in request.events:
            position += 1
            version += 1
            record = record_encoding(
                position,
                stream,
                version,
                event.event_id,
                event.type,
                event.schema_version,
                event.data,
                event.metadata,
                recorded_at_us,
            )
            digest = sha256(prev + record).digest()
            if tip is not None:
                assert nodes is not None
                # append_leaf, inlined: this runs for every appended event, and half of them
                # (even leaf indexes) complete no subtree, so their blob is the leaf alone.
                node = sha256(b"\x00" + record).digest()
                index = position - 1
                if index & 1:
                    blob = [node]
                    while index & 1:
                        node = sha256(b"\x01" + tip.pop() + node).digest()
                        blob.append(node)
                        index >>= 1
                    nodes.append(b"".join(blob))
                else:
                    nodes.append(node)
                tip.append(node)
            row = Row(
                position,
                stream,
                version,
                event.event_id,
                event.type,
                event.schema_version,
                event.data,
                event.metadata,
                recorded_at_us,
                digest,
            )
            rows.append(row)
            in_batch[event.event_id] = row
            prev = digest
        current[stream] = version
        outcomes.append(AppendResult(stream, actual + 1, version, first_position, position))
    return Planned(rows, outcomes, nodes, tip)


def _replay_outcome(request: PendingAppend, known: dict[str, Row]) -> Outcome:
    """A faithful retry gets the original result; any other reuse of ids is refused."""
    stream = request.stream_id
    if len(known) != len(request.events):
        return DuplicateEventError(
            stream,
            f"{len(known)} of {len(request.events)} event ids were already appended "
            "(a partial overlap is not a retry)",
        )
    stored = [known[e.event_id] for e in request.events]
    for event, row in zip(request.events, stored, strict=True):
        if row.stream_id != stream:
            return DuplicateEventError(
                stream, f"event id {event.event_id} was already appended to {row.stream_id!r}"
            )
        if (row.type, row.schema_version, row.data, row.metadata) != (
            event.type,
            event.schema_version,
            event.data,
            event.metadata,
        ):
            return DuplicateEventError(
                stream, f"event id {event.event_id} was already appended with other content"
            )
    versions = [row.version for row in stored]
    if versions != list(range(versions[0], versions[0] + len(versions))):
        return DuplicateEventError(stream, "event ids were appended in another order")
    return AppendResult(stream, versions[0], versions[-1], stored[0].position, stored[-1].position)
