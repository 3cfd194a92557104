"""Browsers against the real app (``create_app`` under uvicorn) in headless Chromium:
GraphiQL works with no network but loopback, and pages on other local ports call the API only
when their origin is in ``STATEMENTS_CORS_ORIGINS``.

Needs node, the live_js packages and chromium (``js_support``: skipped without them, a failure
under ``STATEMENTS_REQUIRE_BROWSER``)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from graphql_api.transport.graphiql import CONTENT_SECURITY_POLICY
from tests.graphql_api.js_support import chromium, node_with_packages, run_node
from tests.graphql_api.live_support import (
    Server,
    Tokens,
    free_port,
    gql,
    live_server,
    make_tokens,
    publish,
)

LIST = "{ statements(first: 3) { totalCount nodes { statementId title } } }"
COUNT = "query($id: ID!) { statement(id: $id) { viewCount } }"


@dataclass
class Setup:
    server: Server
    tokens: Tokens
    statement_id: str
    allowed_port: int
    other_port: int


@pytest.fixture(scope="module")
def node() -> str:
    node = node_with_packages()
    chromium()
    return node


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    tmp = tmp_path_factory.mktemp("browser")
    url = f"sqlite:///{tmp / 'app.db'}"
    tokens = make_tokens(url)
    allowed, other = free_port(), free_port()
    assert allowed != other
    with live_server(
        url,
        tmp,
        factory="graphql_api.app:app_from_env",
        ready_path="/readyz",
        env={"STATEMENTS_CORS_ORIGINS": f"http://127.0.0.1:{allowed}"},
    ) as server:

        async def make() -> str:
            async with httpx.AsyncClient(timeout=10) as http:
                return await publish(http, server.url, tokens.editor, f"Browser {time.time_ns()}")

        yield Setup(server, tokens, asyncio.run(make()), allowed, other)


def _query(server: Server, query: str, variables: dict[str, Any] | None = None) -> Any:
    async def ask() -> Any:
        async with httpx.AsyncClient(timeout=10) as http:
            return await gql(http, server.url, query, variables)

    return asyncio.run(ask())


def test_graphiql_runs_queries_and_subscriptions_offline(node: str, setup: Setup) -> None:
    server = setup.server
    subscription = (
        f'subscription {{ viewCount(statementId: "{setup.statement_id}") {{ viewCount }} }}'
    )
    result = run_node(node, "graphiql.mjs", server.url, LIST, subscription)

    # The page asked nothing of any host but this server, over HTTP and the websocket.
    assert result["offHost"] == []
    host = server.url.removeprefix("http://")
    assert all(url.split("/")[2] == host for url in result["requests"]), result["requests"]
    assert any(
        url.endswith("/graphiql/static/vendor/graphiql/graphiql.min.js")
        for url in result["requests"]
    )
    assert f"ws://{host}/graphql" in result["requests"]
    assert result["csp"] == CONTENT_SECURITY_POLICY
    assert result["cspViolations"] == [] and result["errors"] == []

    # What GraphiQL shows is what the server answers.
    listing, live = result["runs"]
    assert listing["typed"] == LIST
    assert listing["result"] == _query(server, LIST)
    assert setup.statement_id in {
        n["statementId"] for n in listing["result"]["data"]["statements"]["nodes"]
    }
    count = _query(server, COUNT, {"id": setup.statement_id})["data"]["statement"]["viewCount"]
    assert live["result"] == {"data": {"viewCount": {"viewCount": count}}}


def test_cors_lets_listed_origins_call_and_blocks_others(node: str, setup: Setup) -> None:
    server = setup.server
    result = run_node(
        node,
        "cors.mjs",
        server.url,
        setup.tokens.editor,
        str(setup.allowed_port),
        str(setup.other_port),
    )
    expected = _query(server, "{ statements(first: 1) { totalCount } }")
    allowed = result[f"http://127.0.0.1:{setup.allowed_port}"]
    # The POST needed a preflight (JSON, Authorization, X-Request-ID); the GET needed none, and
    # passed the CSRF rule because its origin is listed.
    assert allowed["post"] == {
        "ok": True,
        "status": 200,
        "requestId": "cors-test-1",
        "body": expected,
    }
    assert allowed["get"]["ok"] and allowed["get"]["status"] == 200
    assert allowed["get"]["body"] == expected
    assert allowed["get"]["requestId"]  # exposed: the page can read it
    other = result[f"http://127.0.0.1:{setup.other_port}"]
    for call in ("post", "get"):
        assert other[call]["ok"] is False
        assert other[call]["error"].startswith("TypeError"), other
