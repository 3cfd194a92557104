"""No N+1: nested queries issue at most depth + 1 SQL statements, whatever the page sizes.

Statements are counted on the read models' engine and on its fast reader alike
(:func:`eventstore.reader.on_statement`, in :class:`tests.graphql_api.query_support.SqlCounter`);
depth is counted as the limits count it (fields along the deepest path, leaves included).
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator

import pytest

from tests.graphql_api.query_support import READ_MODEL_BACKENDS, World, depth, open_world

STATEMENT_PAGE = """
query StatementPage($id: ID!) {
  statement(id: $id) {
    title publishedAt body location viewCount
    minister { name title }
    topics { slug name }
    related { title slug minister { name } }
  }
}
"""

THREE_LEVELS = """
query ThreeLevels($first: Int!, $nested: Int!) {
  statements(first: $first) {
    totalCount
    edges {
      node {
        title
        minister {
          name
          statements(first: $nested) { totalCount nodes { title topics { name } } }
        }
      }
    }
  }
}
"""

# (name, query, variables, the statements it takes: measured, and at most depth + 1)
SHAPES = [
    ("three levels", THREE_LEVELS, {"first": 20, "nested": 5}, 4),
    (
        "archive, months' statements and their topics",
        "{ archive { year month count statements(first: 5) { nodes { title topics { slug } } } } }",
        None,
        3,
    ),
    (
        "topics, their statements, ministers with counts and topics",
        """{ topics(first: 5) { totalCount nodes { name statementCount
              statements(first: 4) { nodes { title minister { statementCount
                topics(first: 3) { statementCount topic { slug } } } } } } } }""",
        None,
        4,
    ),
    (
        "ministers, their topics, their statements on each and those statements' ministers",
        """{ ministers { name topics(first: 3) { statementCount topic { name statementCount }
              statements(first: 2) { totalCount nodes { title minister { title } } } } } }""",
        None,
        4,
    ),
    (
        "ministers, their statements, related statements' topics",
        """{ ministers { name statementCount statements(first: 3) {
              edges { cursor node { related { title topics { name } } } } } } }""",
        None,
        4,
    ),
    (
        "most viewed with views per day",
        "{ mostViewed(first: 10) { views statement { title viewsByDay { day count } } } }",
        None,
        2,
    ),
]


@pytest.fixture(params=READ_MODEL_BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def world(database: tuple[str, str]) -> AsyncIterator[World]:
    async with open_world(database) as world:
        await world.demo(statements=80, views=400, seed=11)
        await world.project()
        # A first query opens the pool's connections (and PostgreSQL's dialect checks).
        await world.query("{ ministers { name } }")
        yield world


async def _busy_statement(world: World) -> str:
    """A statement with topics and related statements."""
    page = (
        await world.query("{ statements(first: 100) { nodes { statementId related { slug } } } }")
    ).ok()
    busiest = max(page["statements"]["nodes"], key=lambda n: len(n["related"]))
    assert len(busiest["related"]) >= 2
    return str(busiest["statementId"])


async def test_the_statement_page(world: World) -> None:
    sid = await _busy_statement(world)
    result = await world.query(STATEMENT_PAGE, {"id": sid})
    page = result.ok()["statement"]
    assert page["topics"] and len(page["related"]) >= 2
    compiled = os.environ.get("STATEMENTS_COMPILED_EXECUTOR", "1") != "0"
    if world.models.pages_in_one_statement and compiled:
        # PostgreSQL: the statement with its minister, topics and related statements (with
        # their ministers) as JSON built by the server, in one round trip. graphql-core's own
        # executor, the fallback, reads them a level at a time like SQLite below.
        assert result.sql == 1
    else:
        # statement; its topics; its minister; related statements (with the links); their
        # ministers.
        assert result.sql == 5 <= depth(STATEMENT_PAGE) + 1
    # The same statement reached through a list, each relation read by its own statement,
    # answers alike.
    listed = (
        await world.query(
            "query($first: Int!) { statements(first: $first) { nodes { statementId "
            + STATEMENT_PAGE.split("statement(id: $id) {", 1)[1].rsplit("}", 2)[0]
            + "} } }",
            {"first": 100},
        )
    ).ok()
    same = [
        {k: v for k, v in node.items() if k != "statementId"}
        for node in listed["statements"]["nodes"]
        if node["statementId"] == sid
    ]
    assert same == [page]
    # By slug, the same page.
    slug = await world.query("query($id: ID!) { statement(id: $id) { slug } }", {"id": sid})
    by_slug = await world.query(
        STATEMENT_PAGE.replace("$id: ID!", "$slug: String!").replace("id: $id", "slug: $slug"),
        {"slug": slug.ok()["statement"]["slug"]},
    )
    assert by_slug.ok()["statement"] == page


@pytest.mark.parametrize(("first", "nested"), [(5, 2), (20, 5), (60, 20)])
async def test_three_levels_cost_the_same_whatever_the_page_sizes(
    world: World, first: int, nested: int
) -> None:
    result = await world.query(THREE_LEVELS, {"first": first, "nested": nested})
    edges = result.ok()["statements"]["edges"]
    assert len(edges) == first
    inner = [len(e["node"]["minister"]["statements"]["nodes"]) for e in edges]
    assert max(inner) == nested
    assert sum(
        len(s["topics"]) for e in edges for s in e["node"]["minister"]["statements"]["nodes"]
    )
    # statements page; their ministers; ministers' pages (one window query); topics of every
    # inner statement.
    assert result.sql == 4 <= depth(THREE_LEVELS) + 1


@pytest.mark.parametrize(
    ("name", "query", "variables", "expected"), SHAPES, ids=[s[0] for s in SHAPES]
)
async def test_nested_shapes_stay_within_depth_plus_one(
    world: World, name: str, query: str, variables: dict[str, int] | None, expected: int
) -> None:
    result = await world.query(query, variables)
    result.ok()
    assert result.sql == expected, (name, world.sql.statements)
    assert result.sql <= depth(query) + 1


async def test_repeated_objects_are_loaded_once(world: World) -> None:
    sid = await _busy_statement(world)
    query = """query($id: ID!) {
      a: statement(id: $id) { title topics { name } }
      b: statement(id: $id) { slug topics { slug } }
      c: node(id: $gid) { ... on Statement { title topics { name } } }
    }"""
    gid = (await world.query("query($id: ID!) { statement(id: $id) { id } }", {"id": sid})).ok()
    result = await world.query(
        query.replace("query($id: ID!)", "query($id: ID!, $gid: ID!)"),
        {"id": sid, "gid": gid["statement"]["id"]},
    )
    data = result.ok()
    assert data["a"]["title"] == data["c"]["title"]
    assert result.sql == 2  # one statement lookup for the three, one topics lookup
