"""The statement page and the small lists: every field, against read models caught up with a
log written through the command handlers."""

from __future__ import annotations

import base64
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

import pytest
import strawberry

from graphql_api.schema.loaders import Info
from graphql_api.schema.query import QUERY_TYPES
from graphql_api.schema.types.statement import Statement, payload_statement
from tests.graphql_api.query_support import (
    MSK,
    READ_MODEL_BACKENDS,
    ZAKHAROVA,
    World,
    install_clock,
    open_world,
)


@dataclass
class Site:
    world: World
    geneva: str
    iran: str
    arms: str
    gone: str


@pytest.fixture(params=READ_MODEL_BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def site(database: tuple[str, str], monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Site]:
    clock = install_clock(monkeypatch)
    async with open_world(database) as w:
        geneva = await w.publish(
            "Comment on the talks in Geneva",
            published_at=datetime(2024, 3, 1, 12, 0, tzinfo=MSK),
            occurred_on=date(2024, 2, 29),
            location="Geneva",
            paragraphs=("First <b>paragraph</b> & more.", "Second paragraph."),
            topics=("Syria", "Iran"),
            slug="talks-in-geneva",
        )
        iran = await w.publish(
            "Remarks on Iran",
            minister=ZAKHAROVA,
            published_at=datetime(2024, 3, 5, 10, 0, tzinfo=MSK),
            kind="remarks",
            topics=("Iran",),
        )
        arms = await w.publish(
            "Interview on arms control",
            published_at=datetime(2024, 4, 2, 15, 30, tzinfo=MSK),
            kind="interview",
            location=None,
            topics=("Arms Control",),
        )
        gone = await w.publish(
            "A duplicate", published_at=datetime(2024, 3, 10, 9, 0, tzinfo=MSK), topics=("Syria",)
        )
        await w.withdraw(gone)
        await w.link(geneva, iran)
        await w.link(arms, geneva)
        clock.now = datetime(2024, 3, 2, 10, 0, tzinfo=UTC)
        await w.view(geneva, 2)
        clock.now = datetime(2024, 3, 3, 23, 59, tzinfo=UTC)
        await w.view(geneva)
        await w.view(iran)
        await w.project()
        yield Site(w, geneva, iran, arms, gone)


def gid(type_name: str, own_id: str) -> str:
    return base64.b64encode(f"{type_name}:{own_id}".encode()).decode()


STATEMENT_FIELDS = """
  id statementId slug title kind location occurredOn publishedAt body paragraphs language
  sourceUrl viewCount version withdrawn printVersion ministerName ministerTitle
  viewsByDay { day count }
  march: viewsByDay(from: "2024-03-03", to: "2024-03-31") { day count }
  minister {
    id ministerId name title statementCount
    topics {
      statementCount topic { slug name statementCount }
      statements(first: 5) { totalCount nodes { statementId } }
    }
    statements(first: 1) {
      totalCount pageInfo { hasNextPage hasPreviousPage } nodes { statementId }
    }
  }
  topics { id slug name statementCount }
  related { statementId title minister { name } }
"""


async def test_every_field_of_a_statement(site: Site) -> None:
    w = site.world
    data = (
        await w.query(
            f"query($id: ID!) {{ statement(id: $id) {{ {STATEMENT_FIELDS} }} }}",
            {"id": site.geneva},
        )
    ).ok()
    assert data["statement"] == {
        "id": gid("Statement", site.geneva),
        "statementId": site.geneva,
        "slug": "talks-in-geneva",
        "title": "Comment on the talks in Geneva",
        "kind": "comment",
        "location": "Geneva",
        "occurredOn": "2024-02-29",
        "publishedAt": "2024-03-01T12:00:00+03:00",
        "body": "First <b>paragraph</b> & more.\n\nSecond paragraph.",
        "paragraphs": ["First <b>paragraph</b> & more.", "Second paragraph."],
        "language": "en",
        "sourceUrl": "https://example.org/s",
        "viewCount": 3,
        "version": 4,  # published, tagged twice, linked
        "withdrawn": False,
        "printVersion": (
            "Comment on the talks in Geneva\n01-03-2024, 12:00\nGeneva\n\n"
            "First <b>paragraph</b> & more.\n\nSecond paragraph.\n"
        ),
        "ministerName": "Sergey Lavrov",
        "ministerTitle": "Minister of Foreign Affairs",
        "viewsByDay": [{"day": "2024-03-02", "count": 2}, {"day": "2024-03-03", "count": 1}],
        "march": [{"day": "2024-03-03", "count": 1}],
        "minister": {
            "id": gid("Minister", "sergey-lavrov"),
            "ministerId": "sergey-lavrov",
            "name": "Sergey Lavrov",
            "title": "Minister of Foreign Affairs",
            "statementCount": 2,  # the withdrawn one is not counted
            # Each topic with his count on it and his statements there; the topic's own count
            # is of everyone's statements (Iran: his and Zakharova's).
            "topics": [
                {
                    "statementCount": 1,
                    "topic": {"slug": "arms-control", "name": "Arms Control", "statementCount": 1},
                    "statements": {"totalCount": 1, "nodes": [{"statementId": site.arms}]},
                },
                {
                    "statementCount": 1,
                    "topic": {"slug": "iran", "name": "Iran", "statementCount": 2},
                    "statements": {"totalCount": 1, "nodes": [{"statementId": site.geneva}]},
                },
                {
                    "statementCount": 1,
                    "topic": {"slug": "syria", "name": "Syria", "statementCount": 1},
                    "statements": {"totalCount": 1, "nodes": [{"statementId": site.geneva}]},
                },
            ],
            "statements": {
                "totalCount": 2,
                "pageInfo": {"hasNextPage": True, "hasPreviousPage": False},
                "nodes": [{"statementId": site.arms}],
            },
        },
        "topics": [
            {"id": gid("Topic", "syria"), "slug": "syria", "name": "Syria", "statementCount": 1},
            {"id": gid("Topic", "iran"), "slug": "iran", "name": "Iran", "statementCount": 2},
        ],
        "related": [
            {
                "statementId": site.iran,
                "title": "Remarks on Iran",
                "minister": {"name": "Maria Zakharova"},
            },
            {
                "statementId": site.arms,
                "title": "Interview on arms control",
                "minister": {"name": "Sergey Lavrov"},
            },
        ],
    }


async def test_a_statement_by_slug_global_id_or_upper_case_uuid(site: Site) -> None:
    w = site.world
    query = "query($id: ID, $slug: String) { statement(id: $id, slug: $slug) { statementId } }"
    for variables in (
        {"slug": "talks-in-geneva"},
        {"id": gid("Statement", site.geneva)},
        {"id": site.geneva.upper()},
    ):
        assert (await w.query(query, variables)).ok() == {"statement": {"statementId": site.geneva}}


async def test_unknown_statements_are_null_and_the_arguments_are_checked(site: Site) -> None:
    w = site.world
    query = "query($id: ID, $slug: String) { statement(id: $id, slug: $slug) { title } }"
    assert (await w.query(query, {"id": str(uuid.uuid4())})).ok() == {"statement": None}
    assert (await w.query(query, {"slug": "no-such-slug"})).ok() == {"statement": None}
    for variables in (
        {},
        {"id": site.geneva, "slug": "talks-in-geneva"},
        {"id": "not-an-id"},
        {"id": gid("Statement", "not-a-uuid")},
        {"id": gid("Minister", "sergey-lavrov")},
    ):
        result = await w.query(query, variables)
        assert result.codes == ["BAD_USER_INPUT"] and result.data == {"statement": None}


async def test_a_withdrawn_statement_says_so_and_lists_leave_it_out(site: Site) -> None:
    w = site.world
    one = await w.query(
        "query($id: ID!) { statement(id: $id) { withdrawn version title } }", {"id": site.gone}
    )
    assert one.ok() == {"statement": {"withdrawn": True, "version": 3, "title": "A duplicate"}}
    lists = (
        await w.query(
            """{ statements { totalCount nodes { statementId } }
                 topic(slug: "syria") { statementCount statements { totalCount } } }"""
        )
    ).ok()
    assert lists["statements"]["totalCount"] == 3
    assert site.gone not in [n["statementId"] for n in lists["statements"]["nodes"]]
    assert lists["topic"] == {"statementCount": 1, "statements": {"totalCount": 1}}


async def test_node_round_trips_every_node_type(site: Site) -> None:
    w = site.world
    ids = (
        await w.query(
            """query($id: ID!) { statement(id: $id) { id minister { id } topics { id } } }""",
            {"id": site.geneva},
        )
    ).ok()["statement"]
    query = """query($id: ID!) { node(id: $id) { __typename id
        ... on Statement { statementId }
        ... on Minister { ministerId statementCount }
        ... on Topic { slug statementCount } } }"""
    expected: list[tuple[str, dict[str, Any]]] = [
        (ids["id"], {"__typename": "Statement", "statementId": site.geneva}),
        (
            ids["minister"]["id"],
            {"__typename": "Minister", "ministerId": "sergey-lavrov", "statementCount": 2},
        ),
        (ids["topics"][1]["id"], {"__typename": "Topic", "slug": "iran", "statementCount": 2}),
    ]
    for node_id, fields in expected:
        node = (await w.query(query, {"id": node_id})).ok()["node"]
        assert node == {"id": node_id, **fields}
    unknown = await w.query(query, {"id": gid("Statement", str(uuid.uuid4()))})
    assert unknown.ok() == {"node": None}
    for bad_id in ("not-a-global-id", site.geneva, gid("Statement", "x"), gid("Topic", "Not A")):
        bad = await w.query(query, {"id": bad_id})
        assert bad.codes == ["BAD_USER_INPUT"], bad_id
        assert bad.errors[0]["message"].startswith("id: ")


async def test_ministers_and_a_minister_by_either_id(site: Site) -> None:
    w = site.world
    data = (
        await w.query(
            """query($b: ID!) { ministers { ministerId name statementCount }
                 a: minister(id: "maria-zakharova") { name title statementCount }
                 b: minister(id: $b) { name }
                 c: minister(id: "nobody") { name } }""",
            {"b": gid("Minister", "sergey-lavrov")},
        )
    ).ok()
    assert data["ministers"] == [
        {"ministerId": "sergey-lavrov", "name": "Sergey Lavrov", "statementCount": 2},
        {"ministerId": "maria-zakharova", "name": "Maria Zakharova", "statementCount": 1},
    ]
    assert data["a"] == {"name": "Maria Zakharova", "title": "Spokeswoman", "statementCount": 1}
    assert data["b"] == {"name": "Sergey Lavrov"}
    assert data["c"] is None


async def test_topics_page_with_counts_and_a_topic(site: Site) -> None:
    w = site.world
    query = """query($after: String) { topics(first: 2, after: $after) {
        totalCount pageInfo { hasNextPage hasPreviousPage endCursor }
        edges { cursor node { slug name statementCount } } } }"""
    first = (await w.query(query)).ok()["topics"]
    assert [e["node"] for e in first["edges"]] == [
        {"slug": "iran", "name": "Iran", "statementCount": 2},
        {"slug": "arms-control", "name": "Arms Control", "statementCount": 1},
    ]
    assert first["totalCount"] == 3
    assert first["pageInfo"]["hasNextPage"] and not first["pageInfo"]["hasPreviousPage"]
    assert first["pageInfo"]["endCursor"] == first["edges"][-1]["cursor"]
    rest = (await w.query(query, {"after": first["pageInfo"]["endCursor"]})).ok()["topics"]
    assert [e["node"]["slug"] for e in rest["edges"]] == ["syria"]
    assert not rest["pageInfo"]["hasNextPage"] and rest["pageInfo"]["hasPreviousPage"]
    one = await w.query(
        """{ topic(slug: "iran") { name statementCount statements(first: 5) { nodes { title } } }
             none: topic(slug: "nothing") { name } }"""
    )
    assert one.ok() == {
        "topic": {
            "name": "Iran",
            "statementCount": 2,
            "statements": {
                "nodes": [{"title": "Remarks on Iran"}, {"title": "Comment on the talks in Geneva"}]
            },
        },
        "none": None,
    }


async def test_the_archive_with_each_months_statements(site: Site) -> None:
    data = (
        await site.world.query(
            """{ archive { year month count statements(first: 1) {
                totalCount pageInfo { hasNextPage endCursor } nodes { statementId } } } }"""
        )
    ).ok()
    months = data["archive"]
    assert [(m["year"], m["month"], m["count"]) for m in months] == [(2024, 4, 1), (2024, 3, 2)]
    march = months[1]["statements"]
    assert march["totalCount"] == 2 and march["pageInfo"]["hasNextPage"]
    assert march["nodes"] == [{"statementId": site.iran}]
    more = (
        await site.world.query(
            """query($after: String) { archive { month statements(first: 5, after: $after) {
                nodes { statementId } pageInfo { hasPreviousPage } } } }""",
            {"after": march["pageInfo"]["endCursor"]},
        )
    ).ok()
    assert more["archive"][1]["statements"] == {
        "nodes": [{"statementId": site.geneva}],
        "pageInfo": {"hasPreviousPage": True},
    }


async def test_most_viewed_overall_and_since_a_day(site: Site) -> None:
    w = site.world
    query = """query($since: Date) { mostViewed(first: 5, since: $since) {
        views statement { statementId viewCount } } }"""
    overall = (await w.query(query)).ok()["mostViewed"]
    assert overall == [
        {"views": 3, "statement": {"statementId": site.geneva, "viewCount": 3}},
        {"views": 1, "statement": {"statementId": site.iran, "viewCount": 1}},
    ]
    since = (await w.query(query, {"since": "2024-03-03"})).ok()["mostViewed"]
    assert [e["views"] for e in since] == [1, 1]
    assert [e["statement"]["statementId"] for e in since] == sorted([site.geneva, site.iran])


async def test_views_by_day_refuses_a_backward_range(site: Site) -> None:
    result = await site.world.query(
        """query($id: ID!) { statement(id: $id) {
            viewsByDay(from: "2024-03-05", to: "2024-03-01") { day } } }""",
        {"id": site.geneva},
    )
    assert result.codes == ["BAD_USER_INPUT"]


@strawberry.type
class Payload:
    """Like a mutation payload (graphql_api.schema.payloads), with the query layer's resolver."""

    statement_id: strawberry.ID
    position: int | None
    statement: Statement | None = strawberry.field(resolver=payload_statement)


@strawberry.type
class PayloadQuery:
    @strawberry.field
    def payload(self, info: Info) -> Payload:
        payload = info.root_value
        assert isinstance(payload, Payload)
        return payload


async def test_payload_statement_reads_the_statement_from_the_read_models(site: Site) -> None:
    schema = strawberry.Schema(query=PayloadQuery, types=list(QUERY_TYPES))
    context = site.world.context()
    payload = Payload(statement_id=strawberry.ID(site.geneva), position=7)
    result = await schema.execute(
        "{ payload { statement { title } } }", context_value=context, root_value=payload
    )
    assert result.errors is None
    assert result.data == {"payload": {"statement": {"title": "Comment on the talks in Geneva"}}}
