"""An in-memory event store with the same contract as the SQL ones: the only fake in the tests."""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Sequence

from eventstore.chain import GENESIS_HASH
from eventstore.errors import InvalidAppendError
from eventstore.merkle import TreeBuilder
from eventstore.planning import NeedsLookup, Outcome, PendingAppend, Row, plan_batch
from eventstore.records import Checkpoint, RecordedEvent
from eventstore.sql import record_from_row
from eventstore.store import EventStore, now_us


class MemoryEventStore(EventStore):
    """Keeps the log in lists; data is stored as the same canonical JSON the SQL stores keep."""

    def __init__(
        self, *, poll_interval: float = 1.0, max_batch_events: int = 10_000, merkle: bool = True
    ) -> None:
        super().__init__(
            poll_interval=poll_interval, max_batch_events=max_batch_events, merkle=merkle
        )
        self._rows: list[Row] = []
        self._streams: dict[str, list[Row]] = {}
        self._by_id: dict[str, Row] = {}
        # The Merkle node blob of each position (index position - 1), None where none was kept.
        self._trees: list[bytes | None] = []
        self._frontier: list[bytes] | None = []
        self._checkpoints: list[Checkpoint] = []

    @property
    def trees(self) -> list[bytes | None]:
        """The stored Merkle node blobs, for tests that tamper with them."""
        return self._trees

    @property
    def rows(self) -> list[Row]:
        """The stored rows, for tests that tamper with or inspect them."""
        return self._rows

    async def _write_batch(self, batch: list[PendingAppend]) -> list[Outcome]:
        head_position = self._rows[-1].position if self._rows else 0
        head_hash = self._rows[-1].hash if self._rows else GENESIS_HASH
        versions = {r.stream_id: len(self._streams.get(r.stream_id, ())) for r in batch}
        stamp = now_us()
        frontier = self._tree_frontier() if self.merkle else None
        try:
            planned = plan_batch(batch, head_position, head_hash, versions, stamp, None, frontier)
            # Like a unique index: a stored id sends the batch down the careful path.
            if any(row.event_id in self._by_id for row in planned.rows):
                raise NeedsLookup
        except NeedsLookup:
            ids = {e.event_id for r in batch for e in r.events}
            existing = {i: self._by_id[i] for i in ids if i in self._by_id}
            planned = plan_batch(
                batch, head_position, head_hash, versions, stamp, existing, frontier
            )
        for row in planned.rows:
            self._rows.append(row)
            self._streams.setdefault(row.stream_id, []).append(row)
            self._by_id[row.event_id] = row
        if planned.nodes is None:
            self._trees.extend([None] * len(planned.rows))
            self._frontier = None
        else:
            self._trees.extend(planned.nodes)
            self._frontier = planned.frontier
        return planned.outcomes

    def _tree_frontier(self) -> list[bytes]:
        if self._frontier is None:
            # Events were appended without the tree: build it, as setup does on disk.
            self._build_tree()
        assert self._frontier is not None
        return self._frontier

    def _build_tree(self) -> None:
        from eventstore.tree import tree_blobs

        builder = TreeBuilder()
        self._trees = list(tree_blobs(self._rows, builder))
        self._frontier = builder.frontier

    async def stream_version(self, stream_id: str) -> int:
        return len(self._streams.get(stream_id, ()))

    async def head_position(self) -> int:
        return self._rows[-1].position if self._rows else 0

    async def head(self) -> RecordedEvent | None:
        return record_from_row(self._rows[-1]) if self._rows else None

    async def restore(self, rows: Callable[[], Iterable[Row]]) -> int:
        if self._rows:
            raise InvalidAppendError("restore needs an empty log")
        restored = list(rows())
        for row in restored:
            self._rows.append(row)
            self._streams.setdefault(row.stream_id, []).append(row)
            self._by_id[row.event_id] = row
        self._build_tree()
        if restored:
            self._notifier.notify()
        return len(restored)

    async def _read_rows_page(self, after_position: int, limit: int) -> list[Row]:
        start = max(after_position, 0)
        return self._rows[start : start + limit]

    async def _read_all_page(
        self,
        after_position: int,
        limit: int,
        types: Collection[str] | None,
        stream_prefix: str | None,
        to_position: int | None = None,
    ) -> list[RecordedEvent]:
        # Positions are gapless from 1, so a position is also an index.
        start = max(after_position, 0)
        page: list[RecordedEvent] = []
        for row in self._rows[start:]:
            if to_position is not None and row.position > to_position:
                break
            if types is not None and row.type not in types:
                continue
            if stream_prefix is not None and not row.stream_id.startswith(stream_prefix):
                continue
            page.append(record_from_row(row))
            if len(page) >= limit:
                break
        return page

    async def _read_stream_page(
        self, stream_id: str, from_version: int, to_version: int | None, backwards: bool, limit: int
    ) -> list[RecordedEvent]:
        rows = self._streams.get(stream_id, [])
        low = max(from_version, 1)
        high = len(rows) if to_version is None else min(to_version, len(rows))
        if low > high:
            return []
        selected = rows[low - 1 : high]
        if backwards:
            selected = selected[::-1]
        return [record_from_row(row) for row in selected[:limit]]

    async def read_tree_nodes(self, positions: Sequence[int]) -> dict[int, bytes]:
        trees = self._trees
        found: dict[int, bytes] = {}
        for position in positions:
            if 1 <= position <= len(trees):
                blob = trees[position - 1]
                if blob is not None:
                    found[position] = blob
        return found

    async def read_tree_range(self, first: int, last: int) -> dict[int, bytes]:
        return await self.read_tree_nodes(range(max(first, 1), min(last, len(self._trees)) + 1))

    async def save_checkpoint(self, checkpoint: Checkpoint) -> None:
        self._checkpoints.append(checkpoint)

    async def checkpoints_at(self, tree_size: int) -> list[Checkpoint]:
        return [c for c in self._checkpoints if c.tree_size == tree_size]
