"""The compiling executor answers exactly as graphql-core's does.

Two ways: a small schema whose resolvers misbehave in every way the executor has to handle
(errors sync and async, nulls in non-null positions, wrong types, lists of awaitables...),
and the API's own schema over generated queries (hypothesis-graphql) against read models
with demo data. Each document runs on a schema with the compiled executor and on one
without; data must be equal and errors equal as sets of (message, path).
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import strawberry
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis_graphql import queries
from strawberry.dataloader import DataLoader

from graphql_api.executor import CompiledExecutor, PlanCache
from graphql_api.query import QUERY_TYPES, Query
from graphql_api.schema import ApiSchema, build_schema
from tests.graphql_api.query_support import World, open_world

# --- a small schema that misbehaves ------------------------------------------------------


class Boom(Exception):
    pass


@strawberry.type
class Item:
    n: int
    label: str | None = None

    @strawberry.field
    def double(self) -> int:
        return self.n * 2

    @strawberry.field
    async def later(self) -> int:
        await asyncio.sleep(0)
        return self.n + 100

    @strawberry.field
    def fails(self) -> int | None:
        raise Boom(f"fails {self.n}")

    @strawberry.field
    def fails_non_null(self) -> int:
        raise Boom(f"fails non-null {self.n}")

    @strawberry.field
    async def fails_later(self) -> int:
        await asyncio.sleep(0)
        raise Boom(f"fails later {self.n}")

    @strawberry.field
    def null_non_null(self) -> int:
        return None  # type: ignore[return-value]

    @strawberry.field
    def wrong_scalar(self) -> int | None:
        return "not a number"  # type: ignore[return-value]

    @strawberry.field
    def scaled(self, by: int = 1) -> int:
        return self.n * by

    @strawberry.field
    def child(self) -> Item | None:
        return Item(n=self.n + 1) if self.n < 3 else None

    @strawberry.field
    def wrong_type(self) -> Item | None:
        return "an item?"  # type: ignore[return-value]

    @strawberry.field
    def not_a_list(self) -> list[int] | None:
        return 5  # type: ignore[return-value]

    @strawberry.field
    async def awaited_items(self) -> list[int | None]:
        async def value(i: int) -> int | None:
            await asyncio.sleep(0)
            if i == 1:
                raise Boom("item 1")
            return None if i == 2 else i

        return [value(i) for i in range(4)]  # type: ignore[misc]

    @strawberry.field
    def strict_items(self) -> list[int] | None:
        return [1, None, 3]  # type: ignore[list-item]

    @strawberry.field
    def loaded(self, info: strawberry.Info) -> int:
        # A sync resolver returning the loader's future: graphql-core awaits it.
        return info.context["loader"].load(self.n)  # type: ignore[no-any-return]


@strawberry.type
class SmallQuery:
    @strawberry.field
    def items(self, count: int = 3) -> list[Item]:
        return [Item(n=i, label=None if i % 2 else f"item {i}") for i in range(count)]

    @strawberry.field
    async def later_items(self) -> list[Item | None]:
        await asyncio.sleep(0)
        return [Item(n=1), None, Item(n=2)]

    @strawberry.field
    def strict(self) -> Item:
        return Item(n=0)

    @strawberry.field
    def nothing(self) -> Item:
        return None  # type: ignore[return-value]


def _small(compiled: bool) -> strawberry.Schema:
    return strawberry.Schema(
        query=SmallQuery, execution_context_class=CompiledExecutor if compiled else None
    )


SMALL = {True: _small(True), False: _small(False)}

SMALL_DOCUMENTS = [
    "{ items { n label double later scaled(by: 3) child { n child { n child { n } } } } }",
    "{ items(count: 2) { n fails } }",
    "{ items { n failsNonNull } }",
    "{ items { n failsLater } }",
    "{ strict { n failsNonNull } items { n } }",
    "{ items { nullNonNull } }",
    "{ items { wrongScalar wrongType { n } notAList } }",
    "{ items { awaitedItems } }",
    "{ items { strictItems } }",
    "{ laterItems { n later failsLater } }",
    "{ nothing { n } items { n } }",
    "query Q($by: Int!) { items { scaled(by: $by) } }",
    "{ a: items(count: 1) { x: n ...F } b: items(count: 2) { ... on Item { n double } } }"
    " fragment F on Item { double later }",
    "{ items { n __typename } __typename }",
    "{ items { loaded } }",
]


class _Loaded:
    def __init__(self) -> None:
        self.batches: list[list[int]] = []

        async def load(keys: list[int]) -> list[int]:
            self.batches.append(list(keys))
            return [k * 10 for k in keys]

        self.loader = DataLoader(load)


def _shape(result: Any) -> tuple[Any, list[tuple[str, tuple[Any, ...]]]]:
    errors = sorted((e.message, tuple(e.path or ())) for e in result.errors or ())
    return result.data, errors


@pytest.mark.parametrize("document", SMALL_DOCUMENTS)
async def test_small_schema_matches_graphql_core(document: str) -> None:
    answers = []
    batches = []
    for compiled in (True, False):
        loaded = _Loaded()
        result = await SMALL[compiled].execute(
            document, variable_values={"by": 7}, context_value={"loader": loaded.loader}
        )
        answers.append(_shape(result))
        batches.append(loaded.batches)
    assert answers[0] == answers[1]
    # Siblings' loads still reach the loader as one batch.
    assert batches[0] == batches[1]


async def test_the_small_documents_are_compiled() -> None:
    cache = CompiledExecutor.plans
    for document in SMALL_DOCUMENTS:
        await SMALL[True].execute(document, variable_values={"by": 2})
    reasons = [entry.reason for entry in cache.values()]
    assert reasons and all(reason == "" for reason in reasons[-len(SMALL_DOCUMENTS) :])


@pytest.mark.parametrize(
    ("document", "reason"),
    [
        ("{ items @include(if: true) { n } }", "directives"),
        ("{ __schema { queryType { name } } }", "introspection"),
        ('{ __type(name: "Item") { name } }', "introspection"),
    ],
)
async def test_what_it_leaves_to_graphql_core(document: str, reason: str) -> None:
    fresh = PlanCache()
    original = CompiledExecutor.plans
    CompiledExecutor.plans = fresh
    try:
        compiled = await SMALL[True].execute(document)
        plain = await SMALL[False].execute(document)
    finally:
        CompiledExecutor.plans = original
    assert _shape(compiled) == _shape(plain)
    assert [entry.reason for entry in fresh.values()] == [reason]


def test_the_plan_cache_is_bounded() -> None:
    cache = PlanCache(size=2)
    from graphql import parse

    from graphql_api.executor import _Compiled

    documents = [parse("{ a }"), parse("{ b }"), parse("{ c }")]
    for document in documents:
        cache.put((document,), None, _Compiled(None, "x"))
    assert len(cache) == 2
    assert cache.get((documents[0],), None) is None
    assert cache.get((documents[2],), None) is not None


# --- the API's schema over generated queries -------------------------------------------------

API = {
    True: build_schema(Query, types=QUERY_TYPES),
    False: build_schema(Query, types=QUERY_TYPES, compiled=False),
}


@pytest.fixture(scope="module")
def world_loop() -> Any:
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


@pytest.fixture(scope="module")
def world(world_loop: asyncio.AbstractEventLoop, tmp_path_factory: pytest.TempPathFactory) -> Any:
    path = tmp_path_factory.mktemp("executor") / "read.db"

    async def build() -> tuple[World, Any]:
        manager = open_world((f"sqlite:///{path}", ""))
        world = await manager.__aenter__()
        await world.demo(40, 200, seed=11)
        await world.project()
        return world, manager

    world, manager = world_loop.run_until_complete(build())
    yield world
    world_loop.run_until_complete(manager.__aexit__(None, None, None))


def _sdl() -> str:
    return API[True].as_str()


async def _both(world: World, schema: dict[bool, ApiSchema], document: str) -> list[Any]:
    shapes = []
    for compiled in (True, False):
        result = await schema[compiled].execute(document, context_value=world.context())
        errors = sorted(
            (e.message, tuple(e.path or ()), (e.extensions or {}).get("code"))
            for e in result.errors or ()
        )
        shapes.append((result.data, errors))
    return shapes


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(data=st.data())
def test_api_schema_matches_graphql_core_on_generated_queries(
    world: World, world_loop: asyncio.AbstractEventLoop, data: st.DataObject
) -> None:
    document = data.draw(queries(_sdl()))
    compiled, plain = world_loop.run_until_complete(_both(world, API, document))
    assert compiled == plain, document


API_DOCUMENTS = [
    # the benchmark's statement page, 3-level list and archive, with a real id
    """query Page($id: ID!) { statement(id: $id) { id slug title kind location occurredOn
        publishedAt paragraphs viewCount body printVersion minister { id name title }
        topics { slug name statementCount } related { id title slug minister { id name } } } }""",
    """{ statements(first: 20) { totalCount pageInfo { hasNextPage endCursor } edges { cursor
        node { id title minister { id name statementCount statements(first: 5) { edges { node {
        id title topics { slug name } } } } topics(first: 2) { slug } } } } } }""",
    "{ archive { year month count statements(first: 3) { nodes { id title } } } }",
    "{ topics(first: 5) { nodes { slug name statementCount"
    " statements(first: 2) { nodes { id } } } } }",
    "{ ministers { id name title statementCount }"
    " mostViewed(first: 5) { views statement { id title } } }",
    '{ statements(first: 3, filter: {search: "minister"}) { nodes { title snippet relevance } } }',
    '{ statement(id: "nope") { id } statements(first: 1000) { totalCount } }',
    '{ node(id: "nope") { id } }',
]


@pytest.mark.parametrize("document", API_DOCUMENTS)
def test_api_schema_matches_graphql_core(
    world: World, world_loop: asyncio.AbstractEventLoop, document: str
) -> None:
    async def first_id() -> str:
        result = await API[True].execute(
            "{ statements(first: 1) { nodes { id } } }", context_value=world.context()
        )
        assert result.data is not None
        return str(result.data["statements"]["nodes"][0]["id"])

    statement_id = world_loop.run_until_complete(first_id())

    async def both() -> list[Any]:
        shapes = []
        for compiled in (True, False):
            result = await API[compiled].execute(
                document, variable_values={"id": statement_id}, context_value=world.context()
            )
            errors = sorted(
                (e.message, tuple(e.path or ()), (e.extensions or {}).get("code"))
                for e in result.errors or ()
            )
            shapes.append((result.data, errors))
        return shapes

    compiled, plain = world_loop.run_until_complete(both())
    assert compiled == plain
    if "nope" not in document:
        assert compiled[0] is not None, compiled[1]
