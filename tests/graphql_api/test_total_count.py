"""``totalCount`` is counted only when a query asks for it, wherever it asks: the pages are
the same either way, and a ``totalCount`` behind a fragment is still answered."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.graphql_api.query_support import READ_MODEL_BACKENDS, World, open_world

LISTS = """
query Lists($first: Int!) {
  statements(first: $first) { TOTAL edges { cursor node { statementId } } }
  filtered: statements(first: $first, filter: {from: "2000-01-01"}) {
    TOTAL edges { cursor node { statementId } } }
  unmatched: statements(first: $first, filter: {search: "2024-13-45"}) {
    TOTAL nodes { statementId } }
  ministers { statements(first: $first) { TOTAL nodes { statementId } } }
  topics(first: 10) { nodes { statements(first: $first) { TOTAL nodes { statementId } } } }
  archive { statements(first: $first) { TOTAL nodes { statementId } } }
}
"""


@pytest.fixture(params=READ_MODEL_BACKENDS)
async def world(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[World]:
    if request.param == "postgresql":
        database: tuple[str, str] = request.getfixturevalue("pg_schema")
    else:
        database = (f"sqlite:///{tmp_path / 'read.db'}", "")
    async with open_world(database) as world:
        await world.demo(30, 60, seed=3)
        await world.project()
        yield world


def _without_totals(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_totals(v) for k, v in value.items() if k != "totalCount"}
    if isinstance(value, list):
        return [_without_totals(v) for v in value]
    return value


def _totals(value: Any) -> list[int]:
    if isinstance(value, dict):
        found = [value["totalCount"]] if "totalCount" in value else []
        return found + [t for v in value.values() for t in _totals(v)]
    if isinstance(value, list):
        return [t for v in value for t in _totals(v)]
    return []


async def test_pages_are_the_same_with_and_without_total(world: World) -> None:
    counted = (await world.query(LISTS.replace("TOTAL", "totalCount"), {"first": 3})).ok()
    plain = (await world.query(LISTS.replace("TOTAL", ""), {"first": 3})).ok()
    behind_fragment = (
        await world.query(
            LISTS.replace("TOTAL", "...T") + " fragment T on StatementConnection { totalCount }",
            {"first": 3},
        )
    ).ok()
    assert _without_totals(counted) == plain == _without_totals(behind_fragment)
    totals = _totals(counted)
    assert totals and all(t >= 0 for t in totals)
    live = (await world.models.statements(first=1)).total_count
    assert totals[0] == live > 0
    assert _totals(behind_fragment) == totals
    assert _totals(plain) == []
