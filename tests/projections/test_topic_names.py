"""Topic names: the first tag names a topic, tagging never renames it, a rename does.

On SQLite and PostgreSQL, live (one event per batch and many) and rebuilt, and for read models
that version 1 of the topics projection built with the latest tag's name.
"""

from __future__ import annotations

import asyncio

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from domain import events as E
from domain.streams import topic_stream
from eventstore.memory import MemoryEventStore
from eventstore.projection_checkpoints import ProjectionStatus
from eventstore.projection_runner import ProjectionRunner
from projections import all_projections
from projections.read_models import ReadModels
from projections.rows import TopicRow
from projections.topics import TopicsProjection
from tests.projections.conftest import LAVROV, RYABKOV, Log, Project, catch_up, rebuild_all


async def names_everywhere(models: ReadModels, statement_ids: list[str], slug: str) -> set[str]:
    """Every name the read models give the topic ``slug``: alone, in lists, under statements
    and under ministers."""
    names = {row.name for row in (await models.topics_by_slugs([slug])).values()}
    names |= {row.name for row in (await models.topics(first=100)).items if row.slug == slug}
    for rows in (await models.topics_of(statement_ids)).values():
        names |= {row.name for row in rows if row.slug == slug}
    for entries in (await models.minister_topics([LAVROV.id, RYABKOV.id], 10)).values():
        names |= {e.topic.name for e in entries if e.topic.slug == slug}
    return names


async def rename(log: Log, slug: str, name: str) -> int:
    return await log.append(topic_stream(slug), E.TopicRenamed(topic_slug=slug, name=name))


@pytest.mark.parametrize("batch_size", [1, 500])
async def test_a_later_tag_with_another_spelling_does_not_rename_the_topic(
    log: Log, project: Project, models: ReadModels, batch_size: int
) -> None:
    first = await log.publish(minister=LAVROV)
    second = await log.publish(minister=RYABKOV)
    await log.tag(first, "NATO")
    await log.tag(second, "nato")
    await project(batch_size=batch_size)
    assert await models.topics_by_slugs(["nato"]) == {"nato": TopicRow("nato", "NATO", 2)}
    assert await names_everywhere(models, [first, second], "nato") == {"NATO"}


@pytest.mark.parametrize("batch_size", [1, 500])
async def test_a_rename_names_the_topic_and_later_tags_keep_it(
    log: Log, project: Project, models: ReadModels, batch_size: int
) -> None:
    first = await log.publish(minister=LAVROV)
    await log.tag(first, "nato")
    await rename(log, "nato", "NATO")
    second = await log.publish(minister=RYABKOV)
    await log.tag(second, "Nato")
    await project(batch_size=batch_size)
    assert await models.topics_by_slugs(["nato"]) == {"nato": TopicRow("nato", "NATO", 2)}
    assert await names_everywhere(models, [first, second], "nato") == {"NATO"}

    await rename(log, "nato", "N.A.T.O.")
    await project(batch_size=batch_size)
    assert await names_everywhere(models, [first, second], "nato") == {"N.A.T.O."}


async def test_a_rename_of_a_topic_without_live_statements_still_names_it(
    log: Log, project: Project, models: ReadModels
) -> None:
    sid = await log.publish()
    await log.tag(sid, "arms control")
    await log.withdraw(sid)
    await rename(log, "arms-control", "Arms Control")
    await project()
    assert await models.topics_by_slugs(["arms-control"]) == {
        "arms-control": TopicRow("arms-control", "Arms Control", 0)
    }


async def test_read_models_built_by_version_1_are_rebuilt_with_first_names(
    store: MemoryEventStore, engine: AsyncEngine, log: Log, models: ReadModels
) -> None:
    first = await log.publish(minister=LAVROV)
    second = await log.publish(minister=LAVROV)
    await log.tag(first, "NATO")
    await log.tag(second, "nato")
    await catch_up(store, engine)
    # What version 1 left behind: the latest tag's name, and its version in the checkpoint.
    async with engine.begin() as conn:
        await conn.execute(sa.text("UPDATE topics SET name = 'nato'"))
        await conn.execute(
            sa.text("UPDATE projection_checkpoints SET version = 1 WHERE name = 'topics'")
        )
    assert TopicsProjection.version > 1
    assert await names_everywhere(models, [first, second], "nato") == {"nato"}

    # A runner of this version sees the old version in the checkpoint and rebuilds; the old
    # tables serve until the new ones are swapped in.
    async with ProjectionRunner(store, engine, all_projections()) as runner:
        deadline = asyncio.get_running_loop().time() + 30
        while (await topics_status(runner)).version != TopicsProjection.version:
            assert asyncio.get_running_loop().time() < deadline, await topics_status(runner)
            await asyncio.sleep(0.02)
        assert await runner.wait_for(await store.head_position(), timeout=30)
    assert await names_everywhere(models, [first, second], "nato") == {"NATO"}


async def topics_status(runner: ProjectionRunner) -> ProjectionStatus:
    (status,) = [s for s in await runner.status() if s.name == TopicsProjection.name]
    return status


async def test_a_rebuild_gives_the_names_the_live_run_gave(
    store: MemoryEventStore, engine: AsyncEngine, log: Log, models: ReadModels
) -> None:
    first = await log.publish(minister=LAVROV)
    await log.tag(first, "Middle east")
    second = await log.publish(minister=RYABKOV)
    await log.tag(second, "middle east", "NATO")
    await rename(log, "middle-east", "Middle East")
    await log.tag(first, "MIDDLE EAST", "nato")
    await catch_up(store, engine, batch_size=1)
    live = await models.topics(first=10)
    await rebuild_all(store, engine)
    assert await models.topics(first=10) == live
    assert {row.slug: row.name for row in live.items} == {
        "middle-east": "Middle East",
        "nato": "NATO",
    }
