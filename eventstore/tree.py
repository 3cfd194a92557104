"""The store's Merkle tree: roots and proofs read from its stored nodes, and building them.

Every backend stores, with each event, the node blob of :mod:`eventstore.merkle` (the leaf and
the perfect subtrees it completes) and answers :meth:`EventStore.read_tree_nodes`. A root or a
proof is then one read of O(log n) blobs, whatever the size of the log.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from eventstore.chain import record_encoding
from eventstore.errors import EventStoreError
from eventstore.merkle import (
    EMPTY_ROOT,
    ProofPlan,
    TreeBuilder,
    consistency_plan,
    frontier_from,
    frontier_nodes,
    inclusion_plan,
    leaf_hash,
    node_of,
    root_plan,
)
from eventstore.planning import Row
from eventstore.records import RecordedEvent

if TYPE_CHECKING:
    from eventstore.store import EventStore


class TreeIncompleteError(EventStoreError):
    """The stored tree lacks nodes it should have (written by a store that kept no tree)."""


def row_of(record: RecordedEvent) -> Row:
    """A read event as the row it was stored as (its JSON as the stored text)."""
    return Row(
        record.position,
        record.stream_id,
        record.version,
        str(record.event_id),
        record.type,
        record.schema_version,
        record.raw_data,
        record.raw_metadata,
        record.recorded_at_us,
        record.hash,
    )


def row_leaf(row: Row) -> bytes:
    """The Merkle leaf of a stored row: SHA-256(0x00 ‖ record(P))."""
    return leaf_hash(record_encoding(*row[:9]))


def tree_blobs(rows: Iterable[Row], builder: TreeBuilder) -> Iterator[bytes]:
    """Each row's node blob, the rows following the tree that ``builder`` holds."""
    for row in rows:
        if row.position != builder.size + 1:
            raise EventStoreError(
                f"position {row.position} follows a tree of size {builder.size}: the log has a gap"
            )
        yield builder.add(row_leaf(row))


def frontier_positions(size: int) -> list[int]:
    return [end for end, _level in frontier_nodes(size)]


def frontier_of(size: int, blobs: dict[int, bytes]) -> list[bytes]:
    try:
        return frontier_from(size, blobs)
    except LookupError as exc:
        raise TreeIncompleteError(
            f"the Merkle tree is incomplete ({exc}); open the store with the tree kept "
            "(its setup builds the missing nodes)"
        ) from exc


@dataclass(frozen=True, slots=True)
class InclusionProof:
    """RFC 9162 §2.1.3: leaf ``leaf_index`` (position - 1) in the tree of ``tree_size``."""

    leaf_index: int
    tree_size: int
    leaf_hash: bytes
    hashes: list[bytes]


async def _run(store: EventStore, plan: ProofPlan, extra: Iterable[int] = ()) -> dict[int, bytes]:
    positions = plan.positions | set(extra)
    blobs = await store.read_tree_nodes(sorted(positions))
    missing = positions - blobs.keys()
    if missing:
        raise TreeIncompleteError(
            f"the Merkle tree has no nodes stored for position {min(missing)}; open the store "
            "with the tree kept (its setup builds the missing nodes)"
        )
    return blobs


async def tree_root(store: EventStore, size: int) -> bytes:
    """The root of the tree of the first ``size`` events (``size`` <= the head)."""
    if size == 0:
        return EMPTY_ROOT
    plan = root_plan(size)
    return plan.hashes(await _run(store, plan))[0]


async def inclusion_proof(store: EventStore, position: int, size: int) -> InclusionProof:
    """The proof that the event at ``position`` is in the tree of ``size`` events."""
    plan = inclusion_plan(position - 1, size)
    blobs = await _run(store, plan, (position,))
    return InclusionProof(position - 1, size, node_of(blobs, (position, 0)), plan.hashes(blobs))


async def consistency_proof(store: EventStore, old_size: int, new_size: int) -> list[bytes]:
    """The proof that the tree of ``old_size`` events is a prefix of that of ``new_size``."""
    plan = consistency_plan(old_size, new_size)
    return plan.hashes(await _run(store, plan))
