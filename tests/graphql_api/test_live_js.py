"""The real `graphql-ws` npm client, and the dashboard in headless Chromium (playwright-core).

Node is required (see ``js_support``: skipped with the reason when missing, a failure under
``STATEMENTS_REQUIRE_BROWSER``); the packages are installed into
tests/graphql_api/live_js/node_modules from the lock file on first use. The dashboard test also
needs Debian's chromium at /usr/bin/chromium (or $CHROMIUM).
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.graphql_api.js_support import chromium, node_with_packages, run_node
from tests.graphql_api.live_support import Server, Tokens, live_server, make_tokens, publish


@pytest.fixture(scope="module")
def node() -> str:
    return node_with_packages()


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, Tokens]]:
    tmp = tmp_path_factory.mktemp("livejs")
    url = f"sqlite:///{tmp / 'live.db'}"
    tokens = make_tokens(url)
    with live_server(url, tmp, env={"LIVE_TICK": "0.1"}) as server:
        yield server, tokens


def _statement(server: Server, tokens: Tokens) -> str:
    async def make() -> str:
        async with httpx.AsyncClient(timeout=10) as http:
            return await publish(http, server.url, tokens.editor, f"JS {time.time_ns()}")

    return asyncio.run(make())


def _run(node: str, script: str, *args: str) -> dict[str, Any]:
    result: dict[str, Any] = run_node(node, script, *args)
    return result


def test_graphql_ws_client_iterates_view_counts(node: str, setup: tuple[Server, Tokens]) -> None:
    server, tokens = setup
    sid = _statement(server, tokens)
    result = _run(node, "client.mjs", server.ws_url, server.url, sid)
    counts = result["counts"]
    assert isinstance(counts, list)
    assert counts[0] == 0 and counts[-1] == 50
    assert counts == sorted(counts)
    assert len(counts) < 50  # coalesced
    assert result["closeCode"] == 4403


def test_dashboard_shows_live_numbers_in_chromium(node: str, setup: tuple[Server, Tokens]) -> None:
    chromium()
    server, tokens = setup
    sid = _statement(server, tokens)

    async def views() -> None:
        async with httpx.AsyncClient(timeout=10) as http:
            for _ in range(2):
                await http.post(
                    server.url + "/graphql",
                    json={
                        "query": "mutation($id: ID!) { recordView(input: {statementId: $id}) "
                        "{ position } }",
                        "variables": {"id": sid},
                    },
                )

    asyncio.run(views())  # so that it is in the ranking
    result = _run(node, "dashboard.mjs", server.url, sid)
    assert result["errors"] == []
    before, after, chosen = result["before"], result["after"], result["chosen"]
    assert isinstance(before, int) and isinstance(after, int) and isinstance(chosen, int)
    assert after >= before + 5
    assert chosen >= after + 3
    chart = result["chart"]
    assert chart["lines"] == 1 and chart["bars"] >= 1
    # Axes: clock times along x; on the left, view counts whose range holds the count shown.
    assert len(chart["x"]["ticks"]) >= 2, chart
    assert all(re.fullmatch(r"\d{1,2}:\d{2}:\d{2}( [AP]M)?", t) for t in chart["x"]["ticks"])
    assert "time" in chart["x"]["title"]
    totals = [int(re.sub(r"\D", "", t)) for t in chart["y"]["ticks"]]
    assert len(totals) >= 2 and totals == sorted(totals), chart
    assert totals[0] <= chosen <= totals[-1], (chosen, totals)
    assert chart["y"]["title"] == "views (total)"
    rates = [float(t.replace(",", "")) for t in chart["y2"]["ticks"]]
    assert len(rates) >= 2 and rates[0] == 0 and rates == sorted(rates), chart
    assert chart["y2"]["title"] == "new views / s"
    # The legend keys each series with its own mark and names its axis.
    assert chart["legendKeys"] == ["line", "bar"]
    assert chart["legend"] == ["total views (left axis)", "new views per second (right axis)"]


def test_graphql_ws_client_gets_coded_errors_and_keeps_its_socket(
    node: str, setup: tuple[Server, Tokens]
) -> None:
    server, tokens = setup
    _statement(server, tokens)  # an event, for the auditor's stream to start with
    result = _run(node, "errors.mjs", server.ws_url, tokens.auditor)

    def refused_with(name: str) -> str:
        outcome = result[name]
        assert isinstance(outcome, dict) and isinstance(outcome.get("refused"), list), outcome
        codes = {error["extensions"]["code"] for error in outcome["refused"]}
        assert len(codes) == 1, outcome
        return str(codes.pop())

    # graphql-ws rejects the subscription with the `error` message's errors.
    assert refused_with("syntax") == "GRAPHQL_PARSE_FAILED"
    assert refused_with("validation") == "GRAPHQL_VALIDATION_FAILED"
    # ... and the socket stays: one connection served every operation, none was closed.
    after = result["after"]
    assert isinstance(after, dict) and "errors" not in after["result"], after
    assert isinstance(after["result"]["data"]["topViewed"], list)
    assert result["connected"] == 1 and result["closedBefore"] == []
    anonymous = result["anonymous"]
    assert isinstance(anonymous, dict)
    assert anonymous["result"]["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
    # The handshake's Authorization header authenticates, and a bad one is refused with 4403.
    auditor = result["auditor"]
    assert isinstance(auditor, dict)
    assert auditor["result"]["data"]["eventAppended"]["position"] == 1
    assert result["badHeader"] == {
        "refused": {
            "code": 4403,
            "reason": "Forbidden: The token is not valid: it is unknown, expired or revoked.",
        }
    }
