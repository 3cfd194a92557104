"""The domain's statement directory, answered by the statements read model."""

from __future__ import annotations

from collections.abc import Collection, Mapping

from projections.queries import ReadModels


class ReadModelStatements:
    """The domain's StatementDirectory over the statements read model: one query per batch.

    A statement published moments ago may not be there yet; the handler then reads its stream.
    One withdrawn moments ago may still take a batch's views until the read model shows it, as
    a lone recordView racing a withdrawal may.
    """

    def __init__(self, read_models: ReadModels) -> None:
        self._read_models = read_models

    async def withdrawn(self, statement_ids: Collection[str]) -> Mapping[str, bool]:
        return await self._read_models.withdrawn(statement_ids)
