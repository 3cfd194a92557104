"""Verifying the hash chain, and exporting and restoring the log byte for byte."""

from __future__ import annotations

import gzip
import io
import json
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from hashlib import sha256
from pathlib import Path
from typing import IO, Any, Literal

from eventstore.chain import GENESIS_HASH, record_encoding, record_hash
from eventstore.errors import EventStoreError
from eventstore.merkle import root_of_frontier
from eventstore.planning import Row
from eventstore.store import EventStore
from eventstore.tree import TreeIncompleteError, frontier_of, frontier_positions

#: "tree": the event matches its chain, but the Merkle nodes stored with it do not match it.
Problem = Literal["altered", "missing", "reordered", "truncated", "tree"]


@dataclass(frozen=True)
class Anchor:
    """A position and the hash an auditor trusts for it (``POSITION:HEXHASH``)."""

    position: int
    hash: bytes

    @classmethod
    def parse(cls, text: str) -> Anchor:
        position, _, digest = text.partition(":")
        try:
            value = bytes.fromhex(digest)
            number = int(position)
        except ValueError:
            raise ValueError(f"expected POSITION:HASH (hex), got {text!r}") from None
        if len(value) != 32 or number < 0:
            raise ValueError(f"expected POSITION:HASH with a 64-digit SHA-256, got {text!r}")
        return cls(number, value)

    def __str__(self) -> str:
        return f"{self.position}:{self.hash.hex()}"


@dataclass(frozen=True)
class Verification:
    """The result of recomputing the chain: sound, or the first bad position and what is wrong."""

    ok: bool
    checked: int
    head: Anchor
    position: int | None = None
    problem: Problem | None = None
    detail: str = ""
    #: The Merkle root of the events up to ``head`` (a sound range from position 1).
    root: bytes = b""

    def describe(self) -> str:
        if self.ok:
            return f"chain sound: {self.checked:,} events checked, head {self.head}"
        what = "tree" if self.problem == "tree" else "chain"
        return f"{what} broken at position {self.position}: {self.problem}: {self.detail}"


def row_hash(previous: bytes, row: Row) -> bytes:
    return record_hash(
        previous,
        row.position,
        row.stream_id,
        row.version,
        row.event_id,
        row.type,
        row.schema_version,
        row.data,
        row.metadata,
        row.recorded_at_us,
    )


class _Window:
    """The last rows seen, to tell a row that moved from a row that was altered."""

    def __init__(self, size: int = 256) -> None:
        self.size = size
        self.rows: list[Row] = []

    def add(self, row: Row) -> None:
        self.rows.append(row)
        if len(self.rows) > 2 * self.size:
            del self.rows[: self.size]


async def verify(
    store: EventStore,
    from_position: int = 1,
    to_position: int | None = None,
    expect_head: Anchor | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> Verification:
    """Recompute the chain and the Merkle tree over [from_position, to_position]; stop at the
    first bad record.

    A range that starts after position 1 trusts the hash stored at from_position - 1, and the
    tree's nodes stored before from_position.
    """
    from_position = max(from_position, 1)
    previous = GENESIS_HASH
    try:
        size = from_position - 1
        positions = frontier_positions(size)
        frontier = frontier_of(size, await store.read_tree_nodes(positions))
    except TreeIncompleteError as exc:
        return Verification(False, 0, Anchor(0, GENESIS_HASH), from_position - 1, "tree", str(exc))
    if from_position > 1:
        anchor = [r async for r in store.read_rows(from_position - 2, from_position - 1)]
        if not anchor or anchor[0].position != from_position - 1:
            return Verification(
                False,
                0,
                Anchor(0, GENESIS_HASH),
                from_position - 1,
                "missing",
                f"position {from_position - 1}, where the range is anchored, is absent",
            )
        previous = anchor[0].hash
    expected_position = from_position
    checked = 0
    head = Anchor(from_position - 1, previous)
    pages = store.read_row_pages(from_position - 1, to_position)
    # The loop runs once per event of the log: names are bound locally, and the Merkle nodes
    # are compared in place rather than built into a blob (append_leaf's work, inlined).
    encode, hash_ = record_encoding, sha256
    async for page in pages:
        trees = await store.read_tree_range(page[0].position, page[-1].position)
        for index, row in enumerate(page):
            if row.position != expected_position:
                if row.position < expected_position:
                    return _broken(
                        checked,
                        Anchor(expected_position - 1, previous),
                        row.position,
                        "reordered",
                        f"position {row.position} appears after {expected_position - 1}",
                    )
                return _broken(
                    checked,
                    Anchor(expected_position - 1, previous),
                    expected_position,
                    "missing",
                    f"position {expected_position} is absent; the next is {row.position}",
                )
            record = encode(*row[:9])
            digest = hash_(previous + record).digest()
            if digest != row[9]:
                # Read a little further: a row that verifies at another position was moved.
                upcoming = page[index : index + 65]
                if len(upcoming) < 65:
                    async for later in pages:
                        upcoming.extend(later[: 65 - len(upcoming)])
                        break
                last_good = Anchor(expected_position - 1, previous)
                moved = _moved(previous, upcoming, last_good)
                if moved is not None:
                    return _broken(checked, last_good, row.position, "reordered", moved)
                return _broken(
                    checked,
                    Anchor(expected_position - 1, previous),
                    row.position,
                    "altered",
                    "its stored fields do not hash to its recorded hash",
                )
            stored = trees.get(expected_position)
            leaf = hash_(b"\x00" + record).digest()
            if not _nodes_match(frontier, expected_position - 1, leaf, stored):
                return _broken(
                    checked,
                    Anchor(expected_position - 1, previous),
                    row.position,
                    "tree",
                    "it has no stored Merkle nodes"
                    if stored is None
                    else "its stored Merkle nodes do not match its event and those before it",
                )
            previous = digest
            expected_position += 1
            checked += 1
        head = Anchor(expected_position - 1, previous)

        if progress is not None:
            progress(checked, head.position)
    if expect_head is not None and (to_position is None or to_position >= expect_head.position):
        if head.position < expect_head.position:
            return _broken(
                checked,
                head,
                head.position + 1,
                "truncated",
                f"the log ends at {head.position}, but the expected head is {expect_head.position}",
            )
        trusted = [r async for r in store.read_rows(expect_head.position - 1, expect_head.position)]
        if not trusted or trusted[0].hash != expect_head.hash:
            return _broken(
                checked,
                head,
                expect_head.position,
                "altered",
                "the hash at the expected head differs from the one trusted",
            )
    return Verification(True, checked, head, root=root_of_frontier(frontier))


def _nodes_match(frontier: list[bytes], index: int, leaf: bytes, stored: bytes | None) -> bool:
    """Add leaf ``index`` to ``frontier`` (as :func:`eventstore.merkle.append_leaf`) and say
    whether ``stored``, the node blob kept with the event, holds exactly the nodes it makes."""
    if stored is None or stored[:32] != leaf:
        return False
    current, offset = leaf, 32
    while index & 1:
        current = sha256(b"\x01" + frontier.pop() + current).digest()
        if stored[offset : offset + 32] != current:
            return False
        offset += 32
        index >>= 1
    frontier.append(current)
    return len(stored) == offset


def _moved(previous: bytes, rows: list[Row], head: Anchor) -> str | None:
    """Describe a swap when the first row's content belongs at another nearby position."""
    first = rows[0]
    # Does some later row hold the content that belongs here?
    for candidate in rows[1:]:
        if row_hash(previous, candidate._replace(position=first.position)) == candidate.hash:
            return (
                f"the event stored at position {candidate.position} belongs at position "
                f"{first.position}"
            )
    hashes = {r.position: r.hash for r in rows}
    for candidate in rows[1:]:
        prior = hashes.get(candidate.position - 1)
        if prior is not None and row_hash(prior, first._replace(position=candidate.position)) == (
            first.hash
        ):
            return (
                f"the event stored at position {first.position} belongs at position "
                f"{candidate.position}"
            )
    return None


def _broken(
    checked: int, head: Anchor, position: int, problem: Problem, detail: str
) -> Verification:
    return Verification(False, checked, head, position, problem, detail)


# -- export and restore --------------------------------------------------------------------


def _line(row: Row) -> str:
    record = {
        "position": row.position,
        "stream_id": row.stream_id,
        "version": row.version,
        "event_id": row.event_id,
        "type": row.type,
        "schema_version": row.schema_version,
        # The stored JSON text itself, so that a re-export reproduces it byte for byte.
        "data": row.data,
        "metadata": row.metadata,
        "recorded_at": row.recorded_at_us,
        "hash": row.hash.hex(),
    }
    return json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n"


async def export_rows(rows: AsyncIterator[Row], out: IO[bytes] | gzip.GzipFile) -> int:
    """Write rows as JSON lines; returns how many."""
    count = 0
    async for row in rows:
        out.write(_line(row).encode("utf-8"))
        count += 1
    return count


async def export_file(store: EventStore, path: Path | None, from_position: int = 1) -> int:
    """Stream the log to a .jsonl or .jsonl.gz file (or stdout), in constant memory."""
    rows = store.read_rows(max(from_position, 1) - 1)
    if path is None:
        import sys

        out = sys.stdout.buffer
        count = await export_rows(rows, out)
        out.flush()
        return count
    with path.open("wb") as raw:
        if path.suffix != ".gz":
            return await export_rows(rows, raw)
        # mtime=0 and no file name keep the archive byte-identical from one export to the next.
        with gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as packed:
            return await export_rows(rows, packed)


class RestoreError(EventStoreError):
    """An export file cannot be restored: it is malformed or its chain is broken."""


def _parse(line: str, number: int) -> Row:
    try:
        item: dict[str, Any] = json.loads(line)
        return Row(
            int(item["position"]),
            str(item["stream_id"]),
            int(item["version"]),
            str(item["event_id"]),
            str(item["type"]),
            int(item["schema_version"]),
            str(item["data"]),
            str(item["metadata"]),
            int(item["recorded_at"]),
            bytes.fromhex(item["hash"]),
        )
    except (ValueError, KeyError, TypeError) as exc:
        raise RestoreError(f"line {number}: not an exported event: {exc}") from exc


def read_export(path: Path) -> Iterator[Row]:
    """The rows of an export file, checked for order and chain as they are read."""
    opener: Any = gzip.open if path.suffix == ".gz" else open
    previous = GENESIS_HASH
    expected = 1
    with opener(path, "rb") as raw, io.TextIOWrapper(raw, encoding="utf-8") as text:
        for number, line in enumerate(text, start=1):
            if not line.strip():
                continue
            row = _parse(line, number)
            if row.position != expected:
                raise RestoreError(
                    f"line {number}: position {row.position} where {expected} was expected"
                )
            if row_hash(previous, row) != row.hash:
                raise RestoreError(f"line {number}: position {row.position}: hash mismatch")
            previous = row.hash
            expected += 1
            yield row


async def restore_file(store: EventStore, path: Path) -> int:
    """Restore an export into an empty store, in one transaction; a broken file writes nothing."""
    if await store.head_position() != 0:
        raise RestoreError("the database already holds events: restore needs an empty log")
    return await store.restore(lambda: read_export(path))
