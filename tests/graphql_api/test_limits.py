"""Limits: depth, aliases, tokens, page sizes and cost, refused with their codes, quickly."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest
from graphql import parse

from domain.handlers import StatementHandlers
from graphql_api.schema.api_schema import ApiSchema
from graphql_api.security.query_limits import Limits, operation_cost
from tests.graphql_api.support import context_of, make_schema


@pytest.fixture(scope="module")
def schema() -> ApiSchema:
    return make_schema()


async def codes(
    schema: ApiSchema,
    handlers: StatementHandlers,
    query: str,
    variables: dict[str, Any] | None = None,
) -> list[str]:
    started = time.perf_counter()
    result = await schema.execute(
        query, variable_values=variables, context_value=context_of(handlers)
    )
    # A guard against pathological blow-ups (minutes, not milliseconds), not a speed target:
    # the bound is generous so that a busy machine does not fail it.
    assert time.perf_counter() - started < 10.0, "a refusal must come in bounded time"
    return [e.extensions["code"] for e in result.errors or () if e.extensions]


def nested(levels: int, first: int | None = None) -> str:
    """items { edges { node { children { edges { node { ... id } } } } } }, `levels` lists."""
    args = f"(first: {first})" if first is not None else ""
    inner = "id"
    for level in range(levels):
        name = "items" if level == levels - 1 else "children"
        inner = f"{name}{args} {{ edges {{ node {{ {inner} }} }} }}"
    return "{ " + inner + " }"


# --- depth ---------------------------------------------------------------------------------


async def test_depth_of_ten_passes_and_eleven_is_refused(
    schema: ApiSchema, handlers: StatementHandlers
) -> None:
    assert await codes(schema, handlers, nested(3)) == []  # 3 lists * 3 fields + id = 10
    deeper = nested(3).replace("{ id }", "{ children { totalCount } }")
    assert await codes(schema, handlers, deeper) == ["QUERY_TOO_DEEP"]


async def test_depth_counts_through_fragments(
    schema: ApiSchema, handlers: StatementHandlers
) -> None:
    query = (
        "{ items { edges { node { ...A } } } }"
        " fragment A on Item { children { edges { node { ...B } } } }"
        " fragment B on Item { children { edges { node { children { edges { node { id } } } } } } }"
    )
    assert await codes(schema, handlers, query) == ["QUERY_TOO_DEEP"]


async def test_fragment_cycles_do_not_hang(schema: ApiSchema, handlers: StatementHandlers) -> None:
    query = (
        "{ items { edges { node { ...A } } } }"
        " fragment A on Item { children { edges { node { ...A } } } }"
    )
    assert "GRAPHQL_VALIDATION_FAILED" in await codes(schema, handlers, query)


def doubling_fragments(levels: int, leaf: str) -> str:
    """``{ ...F0 }`` where each fragment spreads the next one twice: 2**levels leaves."""
    fragments = " ".join(
        f"fragment F{i} on Query {{ ...F{i + 1} ...F{i + 1} }}" for i in range(levels)
    )
    return f"{{ ...F0 }} {fragments} fragment F{levels} on Query {{ {leaf} }}"


async def test_fragments_spread_twice_are_walked_once(
    schema: ApiSchema, handlers: StatementHandlers
) -> None:
    # 2**40 paths: a walk that does not remember fragments would never end. The depth passes;
    # the cost counts a field once per spread, so it refuses the document.
    assert await codes(schema, handlers, doubling_fragments(40, "hello")) == ["QUERY_TOO_COSTLY"]
    aliased = doubling_fragments(40, "a: hello")
    assert await codes(schema, handlers, aliased) == ["TOO_MANY_ALIASES"]


async def test_very_deep_nesting_is_refused_quickly(
    schema: ApiSchema, handlers: StatementHandlers
) -> None:
    query = "{ items " * 400 + "}" * 400
    assert await codes(schema, handlers, query) in (["QUERY_TOO_DEEP"], ["GRAPHQL_PARSE_FAILED"])


async def test_introspection_is_not_counted(schema: ApiSchema, handlers: StatementHandlers) -> None:
    query = (
        "{ __schema { types { fields { type { ofType { ofType { ofType { ofType { ofType"
        " { ofType { name } } } } } } } } } } }"
    )
    assert await codes(schema, handlers, query) == []


# --- aliases -------------------------------------------------------------------------------


async def test_aliases(schema: ApiSchema, handlers: StatementHandlers) -> None:
    thirty = "{ " + " ".join(f"a{i}: hello" for i in range(30)) + " }"
    assert await codes(schema, handlers, thirty) == []
    bomb = "{ " + " ".join(f"a{i}: hello" for i in range(31)) + " }"
    assert await codes(schema, handlers, bomb) == ["TOO_MANY_ALIASES"]


async def test_aliases_count_once_per_spread(
    schema: ApiSchema, handlers: StatementHandlers
) -> None:
    fragment = "fragment F on Query { " + " ".join(f"a{i}: hello" for i in range(10)) + " }"
    query = "{ ...F ...F ... on Query { ...F ...F } } " + fragment
    assert await codes(schema, handlers, query) == ["TOO_MANY_ALIASES"]


# --- tokens --------------------------------------------------------------------------------


async def test_token_flood(schema: ApiSchema, handlers: StatementHandlers) -> None:
    fine = "{ " + 'hello(name: "x") ' * 150 + "}\n" + "# comment\n" * 1_098  # 902 + 1,098
    assert await codes(schema, handlers, fine) == []
    flood = fine + "#"
    assert await codes(schema, handlers, flood) == ["TOO_MANY_TOKENS"]
    comments = "{ hello }\n" + "#\n" * 2_000
    assert await codes(schema, handlers, comments) == ["TOO_MANY_TOKENS"]
    huge = "{ " + "hello " * 150_000 + "}"  # about 1 MB
    assert await codes(schema, handlers, huge) == ["TOO_MANY_TOKENS"]


async def test_the_token_limit_names_itself(handlers: StatementHandlers) -> None:
    tight = make_schema(limits=Limits(max_tokens=26))
    four = "{ " + 'hello(name: "x") ' * 4 + "}"  # 2 + 4 * 6 tokens
    assert await codes(tight, handlers, four) == []
    result = await tight.execute(four + "# one more", context_value=context_of(handlers))
    assert [(e.message, e.extensions) for e in result.errors or ()] == [
        ("query: has more than 26 tokens; at most 26 are allowed", {"code": "TOO_MANY_TOKENS"})
    ]


# --- page sizes and cost -------------------------------------------------------------------


async def test_page_sizes(schema: ApiSchema, handlers: StatementHandlers) -> None:
    assert await codes(schema, handlers, "{ items(first: 100) { totalCount } }") == []
    assert await codes(schema, handlers, "{ items(first: 101) { totalCount } }") == [
        "BAD_USER_INPUT"
    ]
    assert await codes(schema, handlers, "{ items(last: -1) { totalCount } }") == ["BAD_USER_INPUT"]
    by_variable = "query Q($n: Int) { items(first: $n) { totalCount } }"
    assert await codes(schema, handlers, by_variable, {"n": 100}) == []
    assert await codes(schema, handlers, by_variable, {"n": 101}) == ["BAD_USER_INPUT"]
    with_default = "query Q($n: Int = 500) { items(first: $n) { totalCount } }"
    assert await codes(schema, handlers, with_default) == ["BAD_USER_INPUT"]


async def test_cost(schema: ApiSchema, handlers: StatementHandlers) -> None:
    assert await codes(schema, handlers, nested(2, first=100)) == []
    assert await codes(schema, handlers, nested(3, first=100)) == ["QUERY_TOO_COSTLY"]
    with_variables = "query Q($n: Int!) " + nested(3).replace("items", "items(first: $n)").replace(
        "children", "children(first: $n)"
    )
    assert await codes(schema, handlers, with_variables, {"n": 100}) == ["QUERY_TOO_COSTLY"]
    assert await codes(schema, handlers, with_variables, {"n": 5}) == []


async def test_wide_documents(schema: ApiSchema, handlers: StatementHandlers) -> None:
    assert await codes(schema, handlers, "{ " + "hello " * 200 + "}") == []
    assert await codes(schema, handlers, "{ " + "hello " * 201 + "}") == ["TOO_MANY_FIELDS"]
    assert await codes(schema, handlers, "{ " + "hello " * 1_998 + "}") == ["TOO_MANY_FIELDS"]


async def test_wide_lists_are_costly(schema: ApiSchema, handlers: StatementHandlers) -> None:
    wide = (
        "{ items(first: 100) { edges { node { children(first: 100) { totalCount edges {"
        " cursor node { id tags } } } } } } }"
    )
    assert await codes(schema, handlers, wide) == ["QUERY_TOO_COSTLY"]


def test_cost_formula() -> None:
    schema = make_schema()._schema
    query = (
        "{ items(first: 20) { totalCount edges { node { id tags"
        " children(first: 5) { edges { node { id } } } } } } }"
    )
    # items: 1 + 20 * (totalCount 1 + edges 1 + node 1 + id 1 + tags 1
    #                  + children (1 + 5 * (edges 1 + node 1 + id 1)))
    expected = 1 + 20 * (1 + 1 + 1 + 1 + 1 + (1 + 5 * 3))
    assert operation_cost(schema, parse(query), None, None, Limits()) == expected
    default = "{ items { edges { node { id } } } }"
    assert operation_cost(schema, parse(default), None, None, Limits()) == 1 + 10 * 3
    hinted = Limits(list_sizes={"Query.hello": 3})
    assert operation_cost(schema, parse("{ hello __typename }"), None, None, hinted) == 1


async def test_limits_over_http_are_400_without_data(client: httpx.AsyncClient) -> None:
    for query, code in (
        (nested(3, first=100), "QUERY_TOO_COSTLY"),
        ("{ " + " ".join(f"a{i}: hello" for i in range(31)) + " }", "TOO_MANY_ALIASES"),
        ("{ " + "hello " * 2_001 + "}", "TOO_MANY_TOKENS"),
    ):
        response = await client.post(
            "/graphql",
            json={"query": query},
            headers={"accept": "application/graphql-response+json"},
        )
        assert response.status_code == 400
        assert "data" not in response.json()
        assert response.json()["errors"][0]["extensions"]["code"] == code


async def test_custom_limits(handlers: StatementHandlers) -> None:
    strict = make_schema(
        limits=Limits(max_depth=2, max_aliases=1, max_tokens=30, max_cost=15, max_fields=4)
    )
    assert await codes(strict, handlers, "{ items { totalCount } }") == []
    assert await codes(strict, handlers, "{ items { edges { cursor } } }") == ["QUERY_TOO_DEEP"]
    assert await codes(strict, handlers, "{ a: hello b: hello }") == ["TOO_MANY_ALIASES"]
    assert await codes(strict, handlers, "{ " + 'hello(name: "a") ' * 5 + "}") == [
        "TOO_MANY_TOKENS"
    ]
    assert await codes(strict, handlers, "{ hello hello hello hello hello }") == ["TOO_MANY_FIELDS"]
    assert await codes(strict, handlers, "{ items(first: 10) { totalCount } }") == []
    assert await codes(
        strict, handlers, "{ items(first: 10) { totalCount } a: items { totalCount } }"
    ) == ["QUERY_TOO_COSTLY"]
