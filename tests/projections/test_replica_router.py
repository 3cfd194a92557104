"""The replica router's judgement, without a database: which copy reaches a position, how its
lag is measured, and which read models a query gets (tests/graphql_api/test_replicas.py and
tests/multihost/test_replicas.py run it against databases)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from eventstore.urls import create_engine
from eventstore.watcher import Standing
from projections.read_models import ReadModels
from projections.replicas import PRIMARY, ReplicaRouter


class FakeWatcher:
    """The primary's standing, as the test sets it."""

    def __init__(self) -> None:
        self.now: dict[str, Standing] = {}

    def standing(self) -> dict[str, Standing]:
        return dict(self.now)


@pytest.fixture
def setup(tmp_path: Path) -> Iterator[tuple[ReplicaRouter, FakeWatcher]]:
    # Engines that are never connected: the router is driven by hand.
    primary = ReadModels(create_engine(f"sqlite:///{tmp_path / 'primary.db'}"))
    watcher = FakeWatcher()
    # The primary's statements reach 14 (nothing they apply lies in (10, 14]), its views 12.
    watcher.now = {"statements": Standing(10, 10, 14), "views": Standing(8, 9, 12)}
    router = ReplicaRouter(
        primary,
        watcher,  # type: ignore[arg-type]
        [
            ("one", create_engine(f"sqlite:///{tmp_path / 'one.db'}")),
            ("two", create_engine(f"sqlite:///{tmp_path / 'two.db'}")),
        ],
        max_lag=2.0,
    )
    router._sample()
    yield router, watcher


def test_a_copy_reaches_as_far_as_the_primary_once_its_row_is_at_the_known_position() -> None:
    standing = Standing(row=5, known=7, reach=12)
    assert standing.reach_of_copy(7) == 12  # nothing the projection applies lies in (7, 12]
    assert standing.reach_of_copy(15) == 15
    assert standing.reach_of_copy(6) == 6  # it may lack what the primary applied up to 7
    assert standing.reach_of_copy(-1) == -1  # no tables at all


def test_queries_go_to_replicas_that_reach_their_position(
    setup: tuple[ReplicaRouter, FakeWatcher],
) -> None:
    router, _watcher = setup
    one, two = router.replicas
    assert router.choose(None) is router.primary  # nothing polled yet: nobody is in use
    one.healthy = two.healthy = True
    one.rows = {"statements": 10, "views": 9}  # level with the primary
    two.rows = {"statements": 6, "views": 9}
    assert router.reaches(one, 12) and not router.reaches(one, 13)
    assert not router.reaches(two, 7) and router.reaches(two, 6)
    assert router.choose(11) is one.read_models
    assert router.choose(13) is router.primary
    # Without a position, or with one both reach, they take turns.
    chosen = {id(router.choose(None)) for _ in range(4)} | {id(router.choose(5)) for _ in range(2)}
    assert chosen == {id(one.read_models), id(two.read_models)}
    two.healthy = False
    assert all(router.choose(None) is one.read_models for _ in range(3))
    assert router.reads() == {PRIMARY: 2, "one": 7, "two": 3}


def test_lag_is_how_long_ago_the_primary_went_past_the_replica(
    setup: tuple[ReplicaRouter, FakeWatcher],
) -> None:
    router, watcher = setup
    now = time.monotonic()
    assert router._lag({"statements": 10, "views": 8}, now) == (0.0, 0)
    # Behind what the primary had when the router started: how long ago is unknown, so it
    # counts as at least the horizon, past any bound.
    seconds, positions = router._lag({"statements": 9, "views": 8}, now)
    assert seconds >= 10.0 and positions == 1
    watcher.now = {"statements": Standing(20, 20, 20), "views": Standing(8, 9, 12)}
    router._sample()
    seconds, positions = router._lag({"statements": 10, "views": 8}, time.monotonic() + 3.0)
    assert 3.0 <= seconds < 4.0 and positions == 10
    assert router._lag({"statements": 20, "views": 8}, time.monotonic()) == (0.0, 0)
