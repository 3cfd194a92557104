"""The verifiable log for auditors: checkpoints, inclusion and consistency proofs, and the proof
of a statement's events (role ``auditor``, like ``verifyLog``).

The store keeps the Merkle tree and its checkpoints (:mod:`eventstore.tree`,
:mod:`eventstore.checkpoints`); these resolvers check arguments against the log's size and
format the answers: hashes are lower-case hex. Positions are 1-based as everywhere in the API;
``leafIndex`` is the RFC's 0-based index, ``position - 1``. docs/AUDIT.md says how to verify.
"""

from __future__ import annotations

from typing import Any

import strawberry

from eventstore import RecordedEvent
from eventstore.checkpoints import Checkpointer
from eventstore.records import Checkpoint
from eventstore.tree import InclusionProof as StoreInclusionProof
from eventstore.tree import consistency_proof, inclusion_proof, row_of
from graphql_api.errors import BadUserInput
from graphql_api.schema.loaders import Info, store_of
from graphql_api.schema.types.audit import RawEvent
from graphql_api.security.auth import require_role
from graphql_api.service_layer.asof import history
from graphql_api.settings import Settings

AUDITOR = "auditor"


def checkpointer_of(info: Info) -> Checkpointer:
    """The app's checkpointer (``context.checkpointer``), else an unsigned one."""
    checkpointer = info.context.checkpointer
    if checkpointer is not None:
        return checkpointer
    return Checkpointer(store_of(info), None, Settings().log_origin)


@strawberry.type(
    description="A checkpoint: the log's Merkle tree head as a C2SP tlog-checkpoint, signed as "
    "a C2SP signed note (Ed25519) when the server has a signing key."
)
class LogCheckpoint:
    origin: str = strawberry.field(description="The log's name, the checkpoint's first line.")
    tree_size: int = strawberry.field(description="How many events the tree holds.")
    root_hash: str = strawberry.field(description="The tree's root, hex (RFC 9162 §2.1.1).")
    body: str = strawberry.field(
        description="The checkpoint's text: origin, tree size and base64 root, one per line."
    )
    signed: bool = strawberry.field(description="Whether the server signed it.")
    signed_note: str | None = strawberry.field(
        description="The signed note (body, blank line, signature line); null when the server "
        "has no signing key: its checkpoints are unsigned."
    )

    @classmethod
    def of(cls, checkpoint: Checkpoint) -> LogCheckpoint:
        from eventstore.checkpoints import checkpoint_body

        return cls(
            origin=checkpoint.origin,
            tree_size=checkpoint.tree_size,
            root_hash=checkpoint.root_hash.hex(),
            body=checkpoint_body(checkpoint.origin, checkpoint.tree_size, checkpoint.root_hash),
            signed=checkpoint.signed,
            signed_note=checkpoint.note if checkpoint.signed else None,
        )


@strawberry.type(description="An inclusion proof (RFC 9162 §2.1.3).")
class InclusionProof:
    position: int = strawberry.field(description="The event's position (leafIndex + 1).")
    leaf_index: int = strawberry.field(description="The leaf's 0-based index.")
    tree_size: int
    leaf_hash: str = strawberry.field(description="SHA-256(0x00 ‖ record), hex.")
    hashes: list[str] = strawberry.field(description="The audit path, bottom up, hex.")

    @classmethod
    def of(cls, proof: StoreInclusionProof) -> InclusionProof:
        return cls(
            position=proof.leaf_index + 1,
            leaf_index=proof.leaf_index,
            tree_size=proof.tree_size,
            leaf_hash=proof.leaf_hash.hex(),
            hashes=[h.hex() for h in proof.hashes],
        )


@strawberry.type(description="A consistency proof (RFC 9162 §2.1.4).")
class ConsistencyProof:
    from_size: int
    to_size: int
    hashes: list[str] = strawberry.field(description="The proof's hashes, hex.")


@strawberry.type(description="An event of the log with its inclusion proof.")
class ProvenEvent:
    event: RawEvent
    record: list[str] = strawberry.field(
        description="The nine fields of record(P) as the text that is hashed, in order: "
        "position, streamId, version, eventId, type, schemaVersion, data and metadata (the "
        "stored JSON text), recordedAt (microseconds): docs/AUDIT.md."
    )
    proof: InclusionProof

    @classmethod
    def of(cls, record: RecordedEvent, proof: StoreInclusionProof) -> ProvenEvent:
        row = row_of(record)
        texts = [str(value) for value in row[:9]]
        return cls(event=RawEvent.of(record), record=texts, proof=InclusionProof.of(proof))


@strawberry.type(
    description="The events a statement's state was folded from, each with its inclusion "
    "proof against one checkpoint: re-fold them offline to check the state."
)
class StatementProof:
    checkpoint: LogCheckpoint
    events: list[ProvenEvent]


async def _head(info: Info) -> int:
    return await store_of(info).head_position()


async def resolve_log_checkpoint(info: Info, tree_size: int | None = None) -> LogCheckpoint:
    require_role(info, AUDITOR)
    checkpointer = checkpointer_of(info)
    if tree_size is None:
        return LogCheckpoint.of(await checkpointer.latest())
    head = await _head(info)
    if not 0 <= tree_size <= head:
        raise BadUserInput(
            f"treeSize: must be between 0 and {head} (the log's size), got {tree_size}"
        )
    return LogCheckpoint.of(await checkpointer.at(tree_size))


async def resolve_inclusion_proof(info: Info, position: int, tree_size: int) -> InclusionProof:
    require_role(info, AUDITOR)
    head = await _head(info)
    if head == 0:
        raise BadUserInput("treeSize: the log is empty, so nothing can be proven yet")
    if not 1 <= tree_size <= head:
        raise BadUserInput(
            f"treeSize: must be between 1 and {head} (the log's size), got {tree_size}"
        )
    if not 1 <= position <= tree_size:
        raise BadUserInput(
            f"position: must be between 1 and {tree_size} (the treeSize), got {position}"
        )
    return InclusionProof.of(await inclusion_proof(store_of(info), position, tree_size))


async def resolve_consistency_proof(info: Info, from_size: int, to_size: int) -> ConsistencyProof:
    require_role(info, AUDITOR)
    head = await _head(info)
    if head == 0:
        raise BadUserInput("toSize: the log is empty, so nothing can be proven yet")
    if not 1 <= to_size <= head:
        raise BadUserInput(f"toSize: must be between 1 and {head} (the log's size), got {to_size}")
    if not 1 <= from_size <= to_size:
        raise BadUserInput(
            f"fromSize: must be between 1 and {to_size} (the toSize), got {from_size}"
        )
    hashes = await consistency_proof(store_of(info), from_size, to_size)
    return ConsistencyProof(from_size=from_size, to_size=to_size, hashes=[h.hex() for h in hashes])


async def resolve_statement_proof(root: Any, info: Info) -> StatementProof:
    """``Statement.proof``: its stream's events (up to its moment) with their proofs."""
    require_role(info, AUDITOR)
    store = store_of(info)
    moment = root.as_of.moment if root.as_of is not None else None
    records = await history(store, root.statement_id, moment)
    checkpoint = await checkpointer_of(info).latest()
    size = checkpoint.tree_size
    events = [
        ProvenEvent.of(record, await inclusion_proof(store, record.position, size))
        for record in records
        if record.position <= size
    ]
    return StatementProof(checkpoint=LogCheckpoint.of(checkpoint), events=events)
