"""``statements``: keyset pagination both ways with totalCount, every filter and order, search
with escaped snippets, and the argument errors (BAD_USER_INPUT)."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pytest

from tests.graphql_api.query_support import (
    LAVROV,
    MSK,
    READ_MODEL_BACKENDS,
    ZAKHAROVA,
    World,
    open_world,
)

PAGE = """
query Page($first: Int, $after: String, $last: Int, $before: String,
           $filter: StatementFilter, $orderBy: StatementOrder! = PUBLISHED_DESC) {
  statements(first: $first, after: $after, last: $last, before: $before,
             filter: $filter, orderBy: $orderBy) {
    totalCount
    pageInfo { hasNextPage hasPreviousPage startCursor endCursor }
    edges { cursor snippet relevance node { statementId title } }
    nodes { statementId }
  }
}
"""


@dataclass
class Archive:
    world: World
    ids: list[str]  # s0 ... s6, oldest first, one a day from 2024-03-01


@pytest.fixture(params=READ_MODEL_BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def archive(database: tuple[str, str]) -> AsyncIterator[Archive]:
    async with open_world(database) as w:
        ids = []
        for n in range(7):
            title, paragraphs = f"Statement number {n}", (f"Plain text of statement {n}.",)
            if n == 4:
                title = "Cooperation"
                paragraphs = ("Cooperation on energy & <b>grids</b> continues.",)
            if n == 5:
                title = "Energy dialogue"
            ids.append(
                await w.publish(
                    title,
                    minister=LAVROV if n % 2 == 0 else ZAKHAROVA,
                    published_at=datetime(2024, 3, 1 + n, 12, 0, tzinfo=MSK),
                    kind="interview" if n in (0, 3) else "comment",
                    topics=("Syria",) if n < 3 else ("Trade",),
                    paragraphs=paragraphs,
                )
            )
        await w.view(ids[2], 3)
        await w.view(ids[5], 2)
        await w.view(ids[1], 1)
        await w.project()
        yield Archive(w, ids)


async def page(w: World, **variables: Any) -> dict[str, Any]:
    data: dict[str, Any] = (await w.query(PAGE, variables)).ok()["statements"]
    assert [e["node"]["statementId"] for e in data["edges"]] == [
        n["statementId"] for n in data["nodes"]
    ]
    assert data["pageInfo"]["startCursor"] == (
        data["edges"][0]["cursor"] if data["edges"] else None
    )
    assert data["pageInfo"]["endCursor"] == (data["edges"][-1]["cursor"] if data["edges"] else None)
    return data


def ids_of(data: dict[str, Any]) -> list[str]:
    return [n["statementId"] for n in data["nodes"]]


async def test_pages_forwards_with_cursors_and_total_count(archive: Archive) -> None:
    w, newest_first = archive.world, archive.ids[::-1]
    seen: list[str] = []
    after = None
    flags = []
    while True:
        data = await page(w, first=3, after=after)
        assert data["totalCount"] == 7
        seen += ids_of(data)
        info = data["pageInfo"]
        flags.append((info["hasPreviousPage"], info["hasNextPage"]))
        if not info["hasNextPage"]:
            break
        after = info["endCursor"]
    assert seen == newest_first
    assert flags == [(False, True), (True, True), (True, False)]


async def test_pages_backwards_with_last_and_before(archive: Archive) -> None:
    w, newest_first = archive.world, archive.ids[::-1]
    tail = await page(w, last=3)
    assert ids_of(tail) == newest_first[4:]
    assert (tail["pageInfo"]["hasPreviousPage"], tail["pageInfo"]["hasNextPage"]) == (True, False)
    middle = await page(w, last=3, before=tail["pageInfo"]["startCursor"])
    assert ids_of(middle) == newest_first[1:4]
    assert middle["pageInfo"]["hasPreviousPage"] and middle["pageInfo"]["hasNextPage"]
    head = await page(w, last=3, before=middle["pageInfo"]["startCursor"])
    assert ids_of(head) == newest_first[:1]
    assert (head["pageInfo"]["hasPreviousPage"], head["pageInfo"]["hasNextPage"]) == (False, True)
    assert head["totalCount"] == middle["totalCount"] == tail["totalCount"] == 7
    # And forwards again from a cursor met going backwards.
    again = await page(w, first=2, after=head["pageInfo"]["endCursor"])
    assert ids_of(again) == newest_first[1:3]


@pytest.mark.parametrize(
    ("criteria", "expected"),
    [
        ({"ministerId": "sergey-lavrov"}, [6, 4, 2, 0]),
        ({"ministerId": "TWluaXN0ZXI6bWFyaWEtemFraGFyb3Zh"}, [5, 3, 1]),  # a global id
        ({"topic": "syria"}, [2, 1, 0]),
        ({"from": "2024-03-02", "to": "2024-03-04"}, [3, 2, 1]),
        ({"kind": "interview"}, [3, 0]),
        ({"ministerId": "sergey-lavrov", "topic": "syria"}, [2, 0]),
        ({"search": "energy"}, [5, 4]),
        ({"search": "nothing matches this"}, []),
        ({"topic": "no-such-topic"}, []),
    ],
)
async def test_filters(archive: Archive, criteria: dict[str, str], expected: list[int]) -> None:
    data = await page(archive.world, filter=criteria)
    assert ids_of(data) == [archive.ids[n] for n in expected]
    assert data["totalCount"] == len(expected)


async def test_orders(archive: Archive) -> None:
    w, ids = archive.world, archive.ids
    assert ids_of(await page(w, orderBy="PUBLISHED_ASC")) == ids
    assert ids_of(await page(w, orderBy="PUBLISHED_DESC")) == ids[::-1]
    unviewed = sorted(i for n, i in enumerate(ids) if n not in (1, 2, 5))
    assert ids_of(await page(w, orderBy="MOST_VIEWED")) == [ids[2], ids[5], ids[1], *unviewed]
    # Paging through an order other than the default keeps to it.
    first = await page(w, orderBy="MOST_VIEWED", first=2)
    rest = await page(w, orderBy="MOST_VIEWED", first=10, after=first["pageInfo"]["endCursor"])
    assert ids_of(first) + ids_of(rest) == [ids[2], ids[5], ids[1], *unviewed]


async def test_relevance_with_escaped_snippets(archive: Archive) -> None:
    w, ids = archive.world, archive.ids
    data = await page(w, filter={"search": "energy"}, orderBy="RELEVANCE")
    # The snippet and relevance belong to the list's edges: the statement is the same object
    # in any list, and its excerpt depends on the search.
    edges = data["edges"]
    assert [e["node"]["statementId"] for e in edges] == [ids[5], ids[4]]  # title hit first
    assert edges[0]["relevance"] > edges[1]["relevance"]
    body_hit = edges[1]["snippet"]
    assert "<mark>energy</mark>" in body_hit
    assert "&amp;" in body_hit
    if w.engine.dialect.name == "sqlite":
        # FTS5 keeps the text as it is; PostgreSQL's ts_headline drops what looks like tags.
        assert "&lt;b&gt;grids&lt;/b&gt;" in body_hit
    assert "<b>" not in body_hit and body_hit.count("<mark>") == body_hit.count("</mark>")
    title_hit = edges[0]["snippet"]
    assert "<mark>Energy</mark>" in title_hit
    # Without a search there is no snippet.
    plain = await page(w, first=1)
    assert plain["edges"][0]["snippet"] is None and plain["edges"][0]["relevance"] is None


@pytest.mark.parametrize(
    ("variables", "code"),
    [
        ({"orderBy": "RELEVANCE"}, "BAD_USER_INPUT"),  # relevance needs a search
        ({"after": "garbage"}, "BAD_USER_INPUT"),
        ({"first": 2, "last": 2}, "BAD_USER_INPUT"),
        ({"first": 101}, "BAD_USER_INPUT"),  # over the page-size limit
        ({"last": -1}, "BAD_USER_INPUT"),
        ({"filter": {"from": "2024-03-05", "to": "2024-03-01"}}, "BAD_USER_INPUT"),
        ({"filter": {"search": "word " * 200}}, "BAD_USER_INPUT"),
        ({"filter": {"from": "not a date"}}, "BAD_USER_INPUT"),
        ({"orderBy": "SIDEWAYS"}, "BAD_USER_INPUT"),
        ({"filter": {"ministerId": "Sergey Lavrov"}}, "BAD_USER_INPUT"),  # a name, not an id
        ({"filter": {"topic": "Syria"}}, "BAD_USER_INPUT"),  # a name, not a slug
        # the global id of another type
        ({"filter": {"topic": base64.b64encode(b"Minister:syria").decode()}}, "BAD_USER_INPUT"),
    ],
)
async def test_bad_arguments_are_invalid_input(
    archive: Archive, variables: dict[str, Any], code: str
) -> None:
    result = await archive.world.query(PAGE, variables)
    assert result.codes == [code], result.errors


async def test_a_cursor_of_another_order_is_refused(archive: Archive) -> None:
    w = archive.world
    cursor = (await page(w, first=1))["pageInfo"]["endCursor"]
    result = await w.query(PAGE, {"orderBy": "MOST_VIEWED", "after": cursor})
    assert result.codes == ["BAD_USER_INPUT"]
    assert "after" in result.errors[0]["message"]


async def test_a_bad_nested_cursor_fails_only_its_field(archive: Archive) -> None:
    result = await archive.world.query(
        """{ ministers { name statements(first: 2, after: "bad") { totalCount } } }"""
    )
    assert set(result.codes) == {"BAD_USER_INPUT"}
    assert result.errors[0]["path"] == ["ministers", 0, "statements"]
    assert result.data is None  # ministers is non-null and its items are non-null
    literal = await archive.world.query("{ ministers { statements(first: 101) { totalCount } } }")
    assert literal.codes == ["BAD_USER_INPUT"]
