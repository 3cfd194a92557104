"""The Merkle tree and its proofs against what we did not write, and our verifiers against
forged proofs.

- transparency-dev/merkle (Go, used by Trillian and Sigsum): the roots and proofs of its test
  tree, and every probe of its testdata, honest or forged, each verifier must answer as Go does.
- pymerkle 7 from PyPI: its roots are RFC 9162's and its inclusion path is the leaf followed by
  the RFC's audit path, so both are compared with ours. Its consistency proofs are a format of
  its own (the old tree's subroots with combination rules), not §2.1.4's: for those, our proofs
  are verified against pymerkle's roots, and compared with Go's in the probes above.
"""

from __future__ import annotations

import base64
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

FIXTURES = Path(__file__).parent / "fixtures"
VECTORS: dict[str, Any] = json.loads((FIXTURES / "rfc6962_vectors.json").read_text())
#: Every inclusion and consistency probe of transparency-dev/merkle's testdata (its source and
#: commit are in the file): honest proofs, and forged ones each verifier must refuse.
PROBES: dict[str, Any] = json.loads((FIXTURES / "transparency_dev_proofs.json").read_text())


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


def _b64(value: str | None) -> bytes:
    return base64.b64decode(value or "")


def _b64s(values: list[str] | None) -> list[bytes]:
    return [_b64(value) for value in values or []]


def _probe_id(case: dict[str, Any]) -> str:
    return str(case["file"]).removeprefix("testdata/").removesuffix(".json")


@pytest.mark.parametrize("case", PROBES["inclusion"], ids=_probe_id)
def test_the_inclusion_verifier_answers_every_published_probe(case: dict[str, Any]) -> None:
    args = (case["leafIdx"], case["treeSize"], _b64(case["leafHash"]), _b64s(case["proof"]))
    if case["wantErr"]:
        with pytest.raises(ProofError):
            our_verify_inclusion(*args, _b64(case["root"]))
    else:
        our_verify_inclusion(*args, _b64(case["root"]))


@pytest.mark.parametrize("case", PROBES["consistency"], ids=_probe_id)
def test_the_consistency_verifier_answers_every_published_probe(case: dict[str, Any]) -> None:
    args = (case["size1"], case["size2"], _b64(case["root1"]), _b64(case["root2"]))
    # Go's verifier compares roots of any length; ours also refuses a "root" that cannot be a
    # SHA-256 (one probe passes two equal 12-byte strings).
    sized = all(len(value) == 32 for value in args[2:])
    if case["wantErr"] or not sized:
        with pytest.raises(ProofError):
            verify_consistency(*args, _b64s(case["proof"]))
    else:
        verify_consistency(*args, _b64s(case["proof"]))


def test_our_proofs_are_the_published_honest_ones() -> None:
    """Every honest probe over the tree of testonly/constants.go is the proof we make."""
    blobs = build(vector_leaves())
    honest = [c for c in PROBES["inclusion"] if not c["wantErr"] and "/additional" not in c["file"]]
    compared = 0
    for case in honest:
        if _b64(case["root"]) != root(blobs, case["treeSize"]):
            continue  # a single-entry probe over a leaf of its own
        proof = inclusion_plan(case["leafIdx"], case["treeSize"]).hashes(blobs)
        assert proof == _b64s(case["proof"]), case["file"]
        compared += 1
    for case in PROBES["consistency"]:
        if case["wantErr"] or "/additional" in case["file"]:
            continue
        old, new = case["size1"], case["size2"]
        assert _b64(case["root1"]) == root(blobs, old), case["file"]
        assert _b64(case["root2"]) == root(blobs, new), case["file"]
        assert consistency_plan(old, new).hashes(blobs) == _b64s(case["proof"]), case["file"]
        compared += 1
    assert compared >= 9


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
