"""The Merkle tree of RFC 9162 §2.1 over the log, its proofs and their verification.

Pure functions on hashes, no I/O (docs/AUDIT.md has the rules). Leaf ``i`` (0-based) is the
event at position ``i + 1``; a tree of size ``n`` holds positions 1..n.

What a store keeps: for every leaf, the roots of the perfect subtrees that *end* at it. For
leaf ``i`` those are the subtrees of size 2^j for every 2^j dividing ``i + 1`` (one on average
besides the leaf itself), written as one blob with the event: ``nodes(i)[j]`` is the root of
leaves ``[i + 1 - 2^j, i + 1)``. Any aligned perfect subtree is then one read, and the root of
any size, an inclusion proof or a consistency proof is O(log n) of them, known in advance
(:func:`perfect_nodes`), so a backend fetches them in one statement.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from hashlib import sha256
from typing import Final

HASH_SIZE: Final = 32
#: The root of the empty tree: SHA-256 of nothing (RFC 9162 §2.1.1).
EMPTY_ROOT: Final = sha256(b"").digest()

#: A perfect subtree, named by the position of its last leaf and its level (size 2^level).
Node = tuple[int, int]
#: Where a proof's hashes come from: the stored node blobs, by the position they end at.
NodeBlobs = Mapping[int, bytes]


class ProofError(ValueError):
    """A proof or a checkpoint does not verify; the message names the check that failed."""


def leaf_hash(record: bytes) -> bytes:
    return sha256(b"\x00" + record).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return sha256(b"\x01" + left + right).digest()


def append_leaf(frontier: list[bytes], size: int, leaf: bytes) -> bytes:
    """Add leaf number ``size`` (0-based) to ``frontier``; return the node blob ending at it.

    ``frontier`` holds the roots of the perfect subtrees of the tree of ``size`` leaves, largest
    first (one per set bit of ``size``); it becomes that of ``size + 1``.
    """
    nodes = [leaf]
    current = leaf
    n = size
    while n & 1:
        current = sha256(b"\x01" + frontier.pop() + current).digest()
        nodes.append(current)
        n >>= 1
    frontier.append(current)
    return b"".join(nodes)


def frontier_nodes(size: int) -> list[Node]:
    """The perfect subtrees whose roots make the frontier of a tree of ``size``, largest first."""
    return _decompose(0, size)


def frontier_from(size: int, blobs: NodeBlobs) -> list[bytes]:
    return [node_of(blobs, node) for node in frontier_nodes(size)]


def root_of_frontier(frontier: Sequence[bytes]) -> bytes:
    """The root of the tree whose frontier this is (RFC 9162 splits the largest subtree first)."""
    if not frontier:
        return EMPTY_ROOT
    current = frontier[-1]
    for left in reversed(frontier[:-1]):
        current = sha256(b"\x01" + left + current).digest()
    return current


def node_of(blobs: NodeBlobs, node: Node) -> bytes:
    end, level = node
    blob = blobs.get(end)
    start = level * HASH_SIZE
    if blob is None or len(blob) < start + HASH_SIZE:
        raise LookupError(f"no stored Merkle node of level {level} ending at position {end}")
    return blob[start : start + HASH_SIZE]


def _decompose(start: int, end: int) -> list[Node]:
    """The aligned perfect subtrees that make up leaves [start, end), largest first.

    Every range RFC 9162's recursion visits starts at a multiple of its largest power of two,
    so this is exact for them.
    """
    nodes: list[Node] = []
    width = end - start
    position = start
    for level in range(width.bit_length() - 1, -1, -1):
        if width >> level & 1:
            position += 1 << level
            nodes.append((position, level))
    return nodes


def _split(n: int) -> int:
    """The largest power of two smaller than n (n >= 2)."""
    return 1 << ((n - 1).bit_length() - 1)


def _inclusion_ranges(index: int, size: int) -> list[tuple[int, int]]:
    """The subtrees whose roots make the inclusion proof of leaf ``index``, bottom up."""
    ranges: list[tuple[int, int]] = []
    start, end = 0, size
    while end - start > 1:
        k = _split(end - start)
        if index < start + k:
            ranges.append((start + k, end))
            end = start + k
        else:
            ranges.append((start, start + k))
            start += k
    ranges.reverse()
    return ranges


def _consistency_ranges(old: int, new: int) -> list[tuple[int, int]]:
    """The subtrees whose roots make the consistency proof from ``old`` to ``new`` (RFC 9162
    §2.1.4.1, SUBPROOF), in proof order."""
    ranges: list[tuple[int, int]] = []
    if old == 0 or old == new:
        return ranges
    start, end, m, whole = 0, new, old, True
    while m != end - start:
        k = _split(end - start)
        if m <= k:
            ranges.append((start + k, end))
            end = start + k
        else:
            ranges.append((start, start + k))
            start += k
            m -= k
            whole = False
    if not whole:
        ranges.append((start, end))
    ranges.reverse()
    return ranges


def perfect_nodes(ranges: Iterable[tuple[int, int]]) -> set[int]:
    """The positions whose stored node blobs the subtree roots of ``ranges`` need."""
    return {end for start, stop in ranges for end, _level in _decompose(start, stop)}


def subtree_root(blobs: NodeBlobs, start: int, end: int) -> bytes:
    nodes = [node_of(blobs, node) for node in _decompose(start, end)]
    return root_of_frontier(nodes)


class ProofPlan:
    """What a proof needs from the store (``positions``), then the proof from those blobs."""

    def __init__(self, ranges: list[tuple[int, int]]) -> None:
        self.ranges = ranges
        self.positions = perfect_nodes(ranges)

    def hashes(self, blobs: NodeBlobs) -> list[bytes]:
        return [subtree_root(blobs, start, end) for start, end in self.ranges]


def root_plan(size: int) -> ProofPlan:
    return ProofPlan([(0, size)] if size else [])


def inclusion_plan(index: int, size: int) -> ProofPlan:
    if not 0 <= index < size:
        raise ValueError(f"leaf index {index} is outside a tree of size {size}")
    return ProofPlan(_inclusion_ranges(index, size))


def consistency_plan(old: int, new: int) -> ProofPlan:
    if not 0 <= old <= new:
        raise ValueError(f"no consistency proof from size {old} to size {new}")
    return ProofPlan(_consistency_ranges(old, new))


# -- verification (RFC 9162 §2.1.3.2 and §2.1.4.2) -----------------------------------------


def root_from_inclusion_proof(index: int, size: int, leaf: bytes, proof: Sequence[bytes]) -> bytes:
    """The root that an inclusion proof of ``leaf`` at ``index`` leads to; raises ProofError."""
    if not 0 <= index < size:
        raise ProofError(f"leaf index {index} is outside a tree of size {size}")
    _check_hashes([leaf, *proof])
    fn, sn = index, size - 1
    result = leaf
    for sibling in proof:
        if sn == 0:
            raise ProofError("the inclusion proof has more hashes than the tree is deep")
        if fn & 1 or fn == sn:
            result = node_hash(sibling, result)
            while not fn & 1 and fn:
                fn >>= 1
                sn >>= 1
        else:
            result = node_hash(result, sibling)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError("the inclusion proof has fewer hashes than the tree is deep")
    return result


def verify_inclusion(
    index: int, size: int, leaf: bytes, proof: Sequence[bytes], root: bytes
) -> None:
    if root_from_inclusion_proof(index, size, leaf, proof) != root:
        raise ProofError(f"the inclusion proof of leaf {index} does not lead to the root")


def verify_consistency(
    old_size: int, new_size: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]
) -> None:
    """Check that the tree of ``old_size`` is a prefix of that of ``new_size`` (or ProofError)."""
    if not 0 <= old_size <= new_size:
        raise ProofError(f"a tree of size {new_size} cannot extend one of size {old_size}")
    _check_hashes([old_root, new_root, *proof])
    if old_size == new_size:
        if proof:
            raise ProofError("a consistency proof between equal sizes must be empty")
        if old_root != new_root:
            raise ProofError("the two roots of the same size differ")
        return
    if old_size == 0:
        if proof:
            raise ProofError("a consistency proof from the empty tree must be empty")
        return
    if not proof:
        raise ProofError("the consistency proof is empty")
    path = list(proof)
    if old_size & (old_size - 1) == 0:
        path.insert(0, old_root)  # the old tree is a complete left subtree
    fn, sn = old_size - 1, new_size - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            raise ProofError("the consistency proof has more hashes than needed")
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            while not fn & 1 and fn:
                fn >>= 1
                sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError("the consistency proof has fewer hashes than needed")
    if fr != old_root:
        raise ProofError(f"the consistency proof does not lead to the root of size {old_size}")
    if sr != new_root:
        raise ProofError(f"the consistency proof does not lead to the root of size {new_size}")


def _check_hashes(hashes: Iterable[bytes]) -> None:
    for value in hashes:
        if len(value) != HASH_SIZE:
            raise ProofError(f"a hash of {len(value)} bytes where SHA-256 has {HASH_SIZE}")


# -- building from rows --------------------------------------------------------------------


class TreeBuilder:
    """Feeds leaves in order and yields each position's node blob; for upgrades and audits."""

    def __init__(self, size: int = 0, frontier: list[bytes] | None = None) -> None:
        self.size = size
        self.frontier = list(frontier or [])

    def add(self, leaf: bytes) -> bytes:
        blob = append_leaf(self.frontier, self.size, leaf)
        self.size += 1
        return blob

    def root(self) -> bytes:
        return root_of_frontier(self.frontier)


def root_of_leaves(leaves: Iterable[bytes]) -> bytes:
    builder = TreeBuilder()
    for leaf in leaves:
        builder.add(leaf)
    return builder.root()


# -- building in parallel ------------------------------------------------------------------

#: A perfect subtree met while building: (first leaf, level, root).
Piece = tuple[int, int, bytes]


def push_piece(stack: list[Piece], piece: Piece) -> None:
    """Add the next aligned perfect subtree after those on ``stack``, merging siblings.

    Pushing the aligned pieces of a range in order leaves its coarsest decomposition; pushing
    the stacks of adjacent ranges, one after the other, leaves that of their union. So ranges
    can be built apart (in other processes) and joined.
    """
    start, level, digest = piece
    while stack:
        left_start, left_level, left = stack[-1]
        if left_level != level or left_start + (1 << level) != start or left_start >> level & 1:
            break
        stack.pop()
        start, level, digest = left_start, level + 1, node_hash(left, digest)
    stack.append((start, level, digest))


def root_of_pieces(stack: Sequence[Piece]) -> bytes:
    """The root of leaves [0, n) from the coarsest decomposition ``push_piece`` left."""
    return root_of_frontier([digest for _start, _level, digest in stack])
