"""The row cache on its own: bounded by rows, dropped per read model, and never keeping rows
that a statement read before a drop."""

from __future__ import annotations

import pytest

from eventstore.read_cache import RowCache, min_position, models_of, table_owners


def _key(n: int) -> tuple[str, tuple[int]]:
    return ("SELECT ?", (n,))


def test_a_move_drops_only_the_entries_read_from_that_model() -> None:
    cache = RowCache(100)
    cache.put(_key(1), [(1,)], frozenset({"statements", "views"}))
    cache.put(_key(2), [(2,)], frozenset({"topics"}))
    cache.moved("views", 10)
    assert cache.get(_key(1)) is None
    assert cache.get(_key(2)) == [(2,)]
    assert cache.rows == 1 and len(cache) == 1
    assert cache.positions() == {"views": 10}


def test_rows_read_before_a_drop_are_not_kept() -> None:
    cache = RowCache(100)
    generation = cache.generation
    cache.moved("statements", 5)  # while the statement ran
    cache.put(_key(1), [(1,)], frozenset({"statements"}), generation)
    assert cache.get(_key(1)) is None
    cache.put(_key(1), [(1,)], frozenset({"statements"}), cache.generation)
    assert cache.get(_key(1)) == [(1,)]


def test_bounded_by_rows_oldest_first_and_big_results_not_kept() -> None:
    cache = RowCache(16)
    for n in range(10):
        cache.put(_key(n), [(n,), (n,)], frozenset({"m"}))
    assert cache.rows <= 16
    assert cache.get(_key(9)) == [(9,), (9,)]
    assert cache.get(_key(0)) is None
    cache.put(_key(99), [(1,), (2,), (3,)], frozenset({"m"}))  # over 16 / 8 rows
    assert cache.get(_key(99)) is None
    # Evicted entries leave the per-model index too: dropping the model empties the cache.
    cache.moved("m", 1)
    assert cache.rows == 0 and len(cache) == 0


def test_a_suspended_cache_neither_serves_nor_keeps() -> None:
    cache = RowCache(100)
    cache.put(_key(1), [(1,)], frozenset({"m"}))
    cache.suspend()
    assert not cache.active and len(cache) == 0
    cache.put(_key(1), [(1,)], frozenset({"m"}))
    assert len(cache) == 0
    cache.resume({"m": 7})
    cache.put(_key(1), [(1,)], frozenset({"m"}))
    assert cache.get(_key(1)) == [(1,)]


def test_a_minimum_position_is_served_only_by_entries_known_at_or_after_it() -> None:
    cache = RowCache(100)
    cache.resume({"statements": 7, "views": 9})
    cache.put(_key(1), [(1,)], frozenset({"statements", "views"}))
    token = min_position.set(8)
    try:
        assert cache.get(_key(1)) is None  # statements are known only up to 7
        cache.moved("statements", 8)
        cache.put(_key(1), [(1,)], frozenset({"statements", "views"}))
        assert cache.get(_key(1)) == [(1,)]
    finally:
        min_position.reset(token)
    assert cache.hits == 1 and cache.misses == 1


def test_models_are_found_by_their_tables_names() -> None:
    owners = table_owners(
        [("statements", ("statements", "statement_topics")), ("views", ("view_totals",))]
    )
    sql = "SELECT s.id FROM statements s LEFT JOIN view_totals v ON v.statement_id = s.id"
    assert models_of(sql, owners) == {"statements", "views"}
    assert models_of("SELECT name FROM projection_checkpoints", owners) == frozenset()


def test_a_negative_size_is_refused() -> None:
    with pytest.raises(ValueError, match="max_rows"):
        RowCache(-1)
