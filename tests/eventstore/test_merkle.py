"""The Merkle tree and its proofs against what we did not write: published RFC 6962 test vectors
and pymerkle, an RFC 9162 tree from PyPI; and our verifiers against forged proofs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from pymerkle import InmemoryTree, verify_inclusion
from pymerkle.core import _inclusion_path_layout
from pymerkle.proof import InclusionProof

from eventstore.merkle import (
    EMPTY_ROOT,
    ProofError,
    TreeBuilder,
    consistency_plan,
    inclusion_plan,
    leaf_hash,
    root_from_inclusion_proof,
    root_plan,
    verify_consistency,
)
from eventstore.merkle import (
    verify_inclusion as our_verify_inclusion,
)

VECTORS: dict[str, Any] = json.loads(
    (Path(__file__).parent / "fixtures" / "rfc6962_vectors.json").read_text()
)


def build(leaves: list[bytes]) -> dict[int, bytes]:
    """The node blobs a store keeps, by position (leaf index + 1)."""
    builder = TreeBuilder()
    return {index + 1: builder.add(leaf_hash(data)) for index, data in enumerate(leaves)}


def vector_leaves() -> list[bytes]:
    return [bytes.fromhex(value) for value in VECTORS["leaves"]]


def root(blobs: dict[int, bytes], size: int) -> bytes:
    plan = root_plan(size)
    return plan.hashes(blobs)[0] if size else EMPTY_ROOT


def test_roots_match_the_published_vectors() -> None:
    blobs = build(vector_leaves())
    for size, expected in enumerate(VECTORS["roots"]):
        assert root(blobs, size).hex() == expected, size


@pytest.mark.parametrize("case", VECTORS["inclusion"], ids=lambda c: f"{c['leaf']}-of-{c['size']}")
def test_inclusion_proofs_match_the_published_vectors(case: dict[str, Any]) -> None:
    blobs = build(vector_leaves())
    index, size = case["leaf"] - 1, case["size"]
    proof = inclusion_plan(index, size).hashes(blobs)
    assert [h.hex() for h in proof] == case["proof"]
    leaf = leaf_hash(vector_leaves()[index])
    assert root_from_inclusion_proof(index, size, leaf, proof).hex() == VECTORS["roots"][size]


@pytest.mark.parametrize(
    "case", VECTORS["consistency"], ids=lambda c: f"{c['size1']}-to-{c['size2']}"
)
def test_consistency_proofs_match_the_published_vectors(case: dict[str, Any]) -> None:
    blobs = build(vector_leaves())
    old, new = case["size1"], case["size2"]
    proof = consistency_plan(old, new).hashes(blobs)
    assert [h.hex() for h in proof] == case["proof"]
    roots = [bytes.fromhex(r) for r in VECTORS["roots"]]
    verify_consistency(old, new, roots[old], roots[new], proof)


def test_roots_and_inclusion_proofs_agree_with_pymerkle() -> None:
    entries = [f"event {i}".encode() * (i % 5 + 1) for i in range(70)]
    theirs = InmemoryTree(algorithm="sha256")
    for entry in entries:
        theirs.append_entry(entry)
    blobs = build(entries)
    for size in range(1, len(entries) + 1):
        their_root = theirs.get_root(size)
        assert root(blobs, size) == their_root, size
        for index in range(size):
            hashes = inclusion_plan(index, size).hashes(blobs)
            leaf = blobs[index + 1][:32]
            # Their verifier, given our hashes in their proof's shape (the leaf, then the path).
            rule, _ranges = _inclusion_path_layout(index + 1, size)
            proof = InclusionProof("sha256", True, size, index + 1, rule, [leaf, *hashes])
            verify_inclusion(leaf, their_root, proof, index=index + 1, size=size)
            assert theirs.prove_inclusion(index + 1, size).path[1:] == hashes


def test_consistency_proofs_between_every_pair_of_sizes_verify_against_pymerkle_roots() -> None:
    entries = [f"e{i}".encode() for i in range(40)]
    theirs = InmemoryTree(algorithm="sha256")
    for entry in entries:
        theirs.append_entry(entry)
    blobs = build(entries)
    for new in range(1, len(entries) + 1):
        for old in range(0, new + 1):
            proof = consistency_plan(old, new).hashes(blobs)
            old_root = theirs.get_root(old) if old else EMPTY_ROOT
            verify_consistency(old, new, old_root, theirs.get_root(new), proof)


# -- forged proofs (the lesson of immudb's GHSA-672p-m5jq-mrh8) ---------------------------


def _flip(value: bytes) -> bytes:
    return bytes([value[0] ^ 8]) + value[1:]


def test_inclusion_verifier_rejects_every_corruption() -> None:
    leaves = [f"x{i}".encode() for i in range(21)]
    blobs = build(leaves)
    size = 21
    good_root = root(blobs, size)
    for index in range(size):
        proof = inclusion_plan(index, size).hashes(blobs)
        leaf = leaf_hash(leaves[index])
        our_verify_inclusion(index, size, leaf, proof, good_root)
        forged: list[tuple[int, int, bytes, list[bytes]]] = [
            (index + 1, size, leaf, proof),
            # Another depth (a size of the same depth is bound by the root, not the path).
            (index, size * 2, leaf, proof),
            (index, size, _flip(leaf), proof),
            (index, size, leaf, [*proof, good_root]),
            (index, size, leaf, [good_root, *proof]),
            (index, size, leaf, proof[:-1]),
        ]
        if index:
            forged.append((index - 1, size, leaf, proof))
        if index < size // 2:
            forged.append((index, size // 2, leaf, proof))
        forged += [
            (index, size, leaf, [*proof[:i], _flip(proof[i]), *proof[i + 1 :]])
            for i in range(len(proof))
        ]
        for f_index, f_size, f_leaf, f_proof in forged:
            with pytest.raises(ProofError):
                our_verify_inclusion(f_index, f_size, f_leaf, f_proof, good_root)


def test_consistency_verifier_rejects_every_corruption() -> None:
    blobs = build([f"y{i}".encode() for i in range(19)])
    roots = [root(blobs, n) for n in range(20)]
    for new in range(2, 20):
        for old in range(1, new):
            proof = consistency_plan(old, new).hashes(blobs)
            verify_consistency(old, new, roots[old], roots[new], proof)
            forged = [
                (old - 1, new, roots[old], roots[new], proof),
                (old + 1, new, roots[old], roots[new], proof),
                (old, new * 2, roots[old], roots[new], proof),
                (old, new, roots[new], roots[old], proof),
                (old, new, _flip(roots[old]), roots[new], proof),
                (old, new, roots[old], _flip(roots[new]), proof),
                (old, new, roots[old], roots[new], []),
                (old, new, roots[old], roots[new], [*proof, roots[old]]),
                (old, new, roots[old], roots[new], [roots[new], *proof]),
                (old, new, roots[old], roots[new], proof[:-1]),
            ]
            forged += [
                (old, new, roots[old], roots[new], [*proof[:i], _flip(proof[i]), *proof[i + 1 :]])
                for i in range(len(proof))
            ]
            for f_old, f_new, f_root1, f_root2, f_proof in forged:
                if f_old == 0 and not f_proof:
                    continue  # the empty tree is a prefix of every tree: nothing to forge
                with pytest.raises(ProofError):
                    verify_consistency(f_old, f_new, f_root1, f_root2, f_proof)


def test_proof_sizes_are_logarithmic() -> None:
    size = 1_000_003
    for index in (0, 1, size // 2, size - 1):
        plan = inclusion_plan(index, size)
        assert len(plan.ranges) <= 21
        assert len(plan.positions) <= 2 * 21
    plan = consistency_plan(999_999, size)
    assert len(plan.ranges) <= 2 * 21
    assert len(plan.positions) <= 3 * 21
