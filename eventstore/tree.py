"""The store's Merkle tree: roots and proofs read from its stored nodes, and building them.

Every backend stores, with each event, the node blob of :mod:`eventstore.merkle` (the leaf and
the perfect subtrees it completes) and answers :meth:`EventStore.read_tree_nodes`. A root or a
proof is then one read of O(log n) blobs, whatever the size of the log.
"""

from __future__ import annotations

import concurrent.futures
import itertools
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from hashlib import sha256
from pathlib import Path
from typing import TYPE_CHECKING

import orjson

from eventstore.chain import record_encoding
from eventstore.errors import EventStoreError
from eventstore.merkle import (
    EMPTY_ROOT,
    Piece,
    ProofPlan,
    TreeBuilder,
    consistency_plan,
    frontier_from,
    frontier_nodes,
    inclusion_plan,
    leaf_hash,
    node_of,
    push_piece,
    root_of_pieces,
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
            f"the Merkle tree has no nodes stored for position {min(missing)}: the event was "
            "deleted, or written by a store that kept no tree (its next setup with the tree "
            "builds the nodes); `statements verify` tells which"
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


# -- the tree of an export file ------------------------------------------------------------


def _export_pieces(path: str, start: int, end: int) -> list[Piece]:
    """The tree pieces of the export lines in bytes [start, end) of ``path`` (a process's part)."""
    with open(path, "rb") as source:
        source.seek(start)
        data = source.read(end - start)
    loads = orjson.loads
    leaves: list[bytes] = []
    append = leaves.append
    first: int | None = None
    for line in data.split(b"\n"):
        if not line.strip():
            continue
        item = loads(line)
        position = item["position"]
        if first is None:
            first = position
        elif position != first + len(leaves):
            raise EventStoreError(f"position {position} where {first + len(leaves)} was expected")
        record = record_encoding(
            position,
            item["stream_id"],
            item["version"],
            item["event_id"],
            item["type"],
            item["schema_version"],
            item["data"],
            item["metadata"],
            item["recorded_at"],
        )
        append(sha256(b"\x00" + record).digest())
    stack: list[Piece] = []
    if first is None:
        return stack
    # The range's aligned perfect subtrees, each hashed a level at a time (a list per level
    # costs less than pushing every leaf).
    done, count = 0, len(leaves)
    while done < count:
        index = first - 1 + done
        level = (index & -index).bit_length() - 1 if index else count.bit_length()
        while 1 << level > count - done:
            level -= 1
        block = leaves[done : done + (1 << level)]
        while len(block) > 1:
            block = [
                sha256(b"\x01" + left + right).digest()
                for left, right in zip(block[::2], block[1::2], strict=True)
            ]
        push_piece(stack, (index, level, block[0]))
        done += 1 << level
    return stack


def _split(path: Path, parts: int) -> list[tuple[int, int]]:
    """Byte ranges of ``path`` that start and end at line boundaries."""
    size = path.stat().st_size
    bounds = [0]
    with path.open("rb") as source:
        for k in range(1, parts):
            source.seek(max(size * k // parts, bounds[-1]))
            source.readline()
            bounds.append(min(source.tell(), size))
    bounds.append(size)
    return [(a, b) for a, b in itertools.pairwise(bounds) if b > a]


def export_tree(path: Path, processes: int | None = None) -> tuple[int, bytes]:
    """The size and Merkle root of an export file (``statements events export``, not gzipped),
    hashed by ``processes`` processes (default: one per CPU) over parts of the file."""
    workers = processes or os.cpu_count() or 1
    ranges = _split(path, workers * 8)
    if workers == 1:
        stacks = [_export_pieces(str(path), a, b) for a, b in ranges]
    else:
        with concurrent.futures.ProcessPoolExecutor(workers) as pool:
            futures = [pool.submit(_export_pieces, str(path), a, b) for a, b in ranges]
            stacks = [future.result() for future in futures]
    stack: list[Piece] = []
    size = 0
    for part in stacks:
        if not part:
            continue
        if part[0][0] != size:
            raise EventStoreError(
                f"position {part[0][0] + 1} where {size + 1} was expected: the export has a gap"
            )
        for piece in part:
            push_piece(stack, piece)
        last_start, last_level, _ = part[-1]
        size = last_start + (1 << last_level)
    return size, root_of_pieces(stack)
