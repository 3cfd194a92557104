"""Incremental processing, in any batch sizes, equals a full rebuild and a pure in-memory fold."""

from __future__ import annotations

import random
import tempfile
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy.ext.asyncio import AsyncEngine

from eventstore import EventStore, open_store
from eventstore.memory import MemoryEventStore
from eventstore.rebuild import rebuild, rebuild_many
from eventstore.urls import create_engine
from projections import all_projections
from projections.read_models import ReadModels
from tests.conftest import run_pg
from tests.projections.conftest import catch_up, rebuild_all, table_contents
from tests.projections.scenario import MINISTERS, Model, fold, random_log


async def assert_matches_model(models: ReadModels, model: Model) -> None:
    """The read models say what the in-memory fold says."""
    assert await models.archive() == model.archive()
    topics = await models.topics(first=100)
    assert topics.items == model.topic_rows()
    assert await models.ministers() == model.ministers()
    minister_ids = sorted({m.id for m in MINISTERS})
    assert await models.minister_topics(minister_ids, 100) == {
        m: model.minister_topics(m) for m in minister_ids
    }
    pairs = sorted({(m, slug) for m in minister_ids for slug in model.topic_names})
    pages = await models.statements_for_minister_topics(pairs, first=100)
    for pair in pairs:
        expected = model.minister_topic_statements(*pair)
        assert [r.id for r in pages[pair].items] == expected, pair
        assert pages[pair].total_count == len(expected), pair
    ids = list(model.statements)
    if not ids:
        return
    assert await models.view_counts(ids) == {i: model.views[i] for i in ids}
    assert await models.related_of(ids) == {i: model.related_of(i) for i in ids}
    related_rows = await models.related_statements_of(ids)
    every_row = await models.statements_by_ids(ids)
    assert related_rows == {i: [every_row[r] for r in model.related_of(i)] for i in ids}
    assert await models.topics_of(ids) == {i: model.topics_of(i) for i in ids}
    rows = await models.statements_by_ids(ids)
    for i in ids:
        expected = model.statements[i]
        row = rows[i]
        assert (row.title, row.minister_id, row.paragraphs) == (
            expected.title,
            expected.minister.id,
            expected.paragraphs,
        )
        assert row.withdrawn == (i in model.withdrawn)
        assert row.version == model.versions[i]
    listed = await models.statements(first=100)
    assert [r.id for r in listed.items] == model.newest_first()[:100]
    assert listed.total_count == len(model.live())


@pytest.fixture
async def second_engine(
    backend: str, database: tuple[str, str], tmp_path: Path
) -> AsyncIterator[AsyncEngine]:
    """Another, empty, read-model database of the same backend."""
    url, _schema = database
    if backend == "sqlite":
        engine = create_engine(f"sqlite:///{tmp_path / 'second.db'}")
    else:
        other = f"t_{uuid.uuid4().hex[:12]}"
        run_pg(url, f'CREATE SCHEMA "{other}"')
        engine = create_engine(url, schema=other)
    yield engine
    await engine.dispose()


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_incremental_equals_rebuild_and_model(
    seed: int,
    store: MemoryEventStore,
    engine: AsyncEngine,
    second_engine: AsyncEngine,
) -> None:
    rng = random.Random(seed)
    # Incremental: the runner follows the log while it grows, in small and odd batch sizes.
    for _ in range(4):
        await random_log(store, rng, 60)
        await catch_up(store, engine, batch_size=rng.choice([1, 3, 7, 50]))
    incremental = await table_contents(engine)
    model = await fold(store)
    await assert_matches_model(ReadModels(engine), model)

    # A full rebuild of every projection, in big batches, into another database.
    await rebuild_all(store, second_engine)
    assert await table_contents(second_engine) == incremental
    # And rebuilding in place (aside, then swapped in) changes nothing either.
    await rebuild_all(store, engine, batch_size=11)
    assert await table_contents(engine) == incremental
    await assert_matches_model(ReadModels(engine), model)
    # All of them in one pass over the log, as the CLI rebuilds them: the same tables.
    await rebuild_many(store, engine, all_projections(), batch_size=rng.choice([9, 64, 5000]))
    assert await table_contents(engine) == incremental


async def test_log_and_read_models_in_one_database(backend: str, database: tuple[str, str]) -> None:
    """The default deployment: the store and the read models share a database."""
    url, schema = database
    options = {"schema": schema} if backend == "postgresql" else {}
    store: EventStore = open_store(url, **options)
    await store.setup()
    engine = create_engine(url, schema=schema or None)
    try:
        await random_log(store, random.Random(7), 120)
        await catch_up(store, engine, batch_size=13)
        await assert_matches_model(ReadModels(engine), await fold(store))
    finally:
        await engine.dispose()
        await store.close()


@settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(seed=st.integers(0, 2**32 - 1), batch=st.integers(1, 40), steps=st.integers(0, 150))
async def test_random_logs_in_any_batches_match_the_model(
    seed: int, batch: int, steps: int
) -> None:
    """Hypothesis: any domain-valid log, folded in any batch size, gives the model's answers."""
    store = MemoryEventStore()
    await random_log(store, random.Random(seed), steps)
    with tempfile.TemporaryDirectory() as directory:
        engine = create_engine(f"sqlite:///{Path(directory) / 'models.db'}")
        try:
            for projection in all_projections():
                await rebuild(store, engine, projection, batch_size=batch)
            await assert_matches_model(ReadModels(engine), await fold(store))
        finally:
            await engine.dispose()
