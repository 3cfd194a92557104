"""Topic names through the API: tagging never renames a topic, renameTopic does (editor).

The whole app runs on SQLite and on PostgreSQL; requests go over HTTP.
"""

from __future__ import annotations

import base64
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime
from typing import Any

import pytest

from domain.commands import CommandMetadata, PublishStatement, RenameTopic, TagStatement
from domain.handlers import StatementHandlers
from domain.ministers import KNOWN_MINISTERS
from eventstore.memory import MemoryEventStore
from eventstore.projection_checkpoints import setup_checkpoints
from eventstore.urls import create_engine
from graphql_api.service_layer.eventlog import StoreEventLog
from graphql_api.service_layer.topic_directory import ReadModelTopics
from projections.read_models import ReadModels
from projections.registry import event_registry
from tests.graphql_api.app_client import Api, running_app
from tests.projections.conftest import catch_up

BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]

PUBLISH = """
mutation($input: PublishStatementInput!) {
  publishStatement(input: $input) { statementId statement { id } }
}"""
TAG = """
mutation($id: ID!, $topics: [String!]!) {
  tagStatement(input: {statementId: $id, topics: $topics}) { position statement { id } }
}"""
RENAME = """
mutation($topic: ID!, $name: String!) {
  renameTopic(input: {topic: $topic, name: $name}) {
    position
    topic { id slug name statementCount }
  }
}"""
NAMES = """
query($slug: String!) {
  topic(slug: $slug) { name }
  topics(first: 10) { nodes { slug name } }
  statements(first: 10) { nodes { topics { slug name } } }
  ministers { topics { topic { slug name } } }
}"""


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def api(database: tuple[str, str]) -> AsyncIterator[Api]:
    url, schema = database
    async with running_app(url, schema) as api:
        yield api


async def publish(api: Api, title: str, topics: list[str]) -> str:
    variables = {
        "input": {
            "title": title,
            "body": "A paragraph.",
            "kind": "comment",
            "ministerName": "Sergey Lavrov",
            "occurredOn": "2014-11-08",
            "publishedAt": "2014-11-17T16:58:00+03:00",
            "topics": topics,
        }
    }
    data = await api.data(PUBLISH, variables, role="editor")
    return str(data["publishStatement"]["statementId"])


async def names_of(api: Api, slug: str) -> set[str]:
    """Every name the API gives the topic ``slug``, wherever it appears."""
    data = await api.data(NAMES, {"slug": slug})
    names = {data["topic"]["name"]} if data["topic"] else set()
    found = [
        *data["topics"]["nodes"],
        *(t for s in data["statements"]["nodes"] for t in s["topics"]),
        *(t["topic"] for m in data["ministers"] for t in m["topics"]),
    ]
    return names | {t["name"] for t in found if t["slug"] == slug}


def error_of(result: dict[str, Any]) -> tuple[str, str]:
    (error,) = result["errors"]
    return error["extensions"]["code"], error["message"]


async def test_tagging_keeps_the_first_name_and_only_renaming_changes_it(api: Api) -> None:
    first = await publish(api, "Comment on the alliance", ["NATO"])
    second = await publish(api, "Comment on the summit", ["Syria"])
    await api.data(TAG, {"id": second, "topics": ["nato"]}, role="editor")
    assert await names_of(api, "nato") == {"NATO"}

    renamed = await api.data(RENAME, {"topic": "nato", "name": "Nato"}, role="editor")
    payload = renamed["renameTopic"]
    assert isinstance(payload["position"], int)
    global_id = base64.b64encode(b"Topic:nato").decode()
    assert payload["topic"] == {
        "id": global_id,
        "slug": "nato",
        "name": "Nato",
        "statementCount": 2,
    }
    assert await names_of(api, "nato") == {"Nato"}

    # By global id; the same name again writes nothing.
    again = await api.data(RENAME, {"topic": global_id, "name": " Nato "}, role="editor")
    assert again["renameTopic"]["position"] is None
    assert again["renameTopic"]["topic"]["name"] == "Nato"

    # Tagging with the first spelling again does not rename it back.
    await publish(api, "Interview on the alliance", ["NATO"])
    assert await names_of(api, "nato") == {"Nato"}
    assert (await api.data(NAMES, {"slug": "nato"}))["topic"]["name"] == "Nato"
    assert first != second


async def test_renaming_is_for_editors_and_follows_the_rules(api: Api) -> None:
    await publish(api, "Comment on the alliance", ["NATO"])
    variables = {"topic": "nato", "name": "Nato"}
    assert error_of(await api.post(RENAME, variables)) == (
        "UNAUTHENTICATED",
        "renameTopic: needs a token with the editor role (send 'Authorization: Bearer <token>')",
    )
    assert error_of(await api.post(RENAME, variables, role="auditor")) == (
        "FORBIDDEN",
        "renameTopic: needs the editor role; the token has the auditor role",
    )
    refused = {
        ("unknown", "Unknown"): (
            "NOT_FOUND",
            "topic: no topic has the slug 'unknown'",
        ),
        ("nato", "   "): ("BAD_USER_INPUT", "name: a topic name must not be empty"),
        ("nato", "!!!"): (
            "BAD_USER_INPUT",
            "name: '!!!' has no letters or digits to make a slug from",
        ),
        ("nato", "North Atlantic Treaty Organization"): (
            "BAD_USER_INPUT",
            "name: 'North Atlantic Treaty Organization' makes the slug "
            "'north-atlantic-treaty-organization'; a new name must keep the slug 'nato', "
            "which tagging finds the topic by",
        ),
        ("nato", "N.A.T.O."): (
            "BAD_USER_INPUT",
            "name: 'N.A.T.O.' makes the slug 'n-a-t-o'; a new name must keep the slug 'nato', "
            "which tagging finds the topic by",
        ),
        ("nato", "N" * 101): (
            "BAD_USER_INPUT",
            "name: a topic name has 101 characters; at most 100 are allowed",
        ),
    }
    for (topic, name), expected in refused.items():
        result = await api.post(RENAME, {"topic": topic, "name": name}, role="editor")
        assert error_of(result) == expected, (topic, name)
        assert result["data"] is None
    assert await names_of(api, "nato") == {"NATO"}


async def test_a_rename_reads_earlier_renames_from_the_log_not_the_lagging_read_model(
    database: tuple[str, str],
) -> None:
    # The read models caught up once, then stopped: they still say "NATO" after two renames.
    url, schema = database
    engine = create_engine(url, schema=schema or None)
    store = MemoryEventStore()
    try:
        await setup_checkpoints(engine)
        handlers = StatementHandlers(
            StoreEventLog(store, event_registry()), topics=ReadModelTopics(ReadModels(engine))
        )
        meta = CommandMetadata(actor="desk-editor", correlation_id="c-1")
        statement_id = str(uuid.uuid4())
        await handlers.publish_statement(
            PublishStatement(
                statement_id=statement_id,
                title="Comment on the alliance",
                kind="comment",
                minister=KNOWN_MINISTERS[0],
                occurred_on=date(2014, 11, 8),
                published_at=datetime(2014, 11, 17, 16, 58, tzinfo=UTC),
                paragraphs=("A paragraph.",),
                meta=meta,
            )
        )
        await handlers.tag_statement(
            TagStatement(statement_id=statement_id, topics=("NATO",), meta=meta)
        )
        await catch_up(store, engine)
        first = await handlers.rename_topic(RenameTopic(topic="nato", name="Nato", meta=meta))
        back = await handlers.rename_topic(RenameTopic(topic="nato", name="NATO", meta=meta))
        assert (first.version, back.version) == (1, 2)
        assert back.position is not None and first.position is not None
        assert back.position > first.position
        await catch_up(store, engine)
        rows = await ReadModels(engine).topics_by_slugs(["nato"])
        assert rows["nato"].name == "NATO"
    finally:
        await engine.dispose()
