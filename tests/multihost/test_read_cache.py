"""The PostgreSQL read cache across hosts: a statement page cached on one API host is dropped
when a write through the other host moves its read models, by the checkpoint notification that
crosses the network; a read at the write's position sees it at once."""

from __future__ import annotations

import asyncio
import re
import time
from typing import Any

import httpx
import pytest

from tests.graphql_api.consistency_support import PUBLISH, TAG, statement_input
from tests.multihost.failover import make_tokens
from tests.multihost.topology import Topology

pytestmark = [pytest.mark.multihost]

PAGE = """query($id: ID!) {
  statement(id: $id) { title topics { slug } related { title } minister { name } } }"""


async def _gql(
    http: httpx.AsyncClient,
    base: str,
    query: str,
    variables: dict[str, Any],
    *,
    token: str | None = None,
    headers: dict[str, str] | None = None,
) -> dict[str, Any]:
    sent = dict(headers or {})
    if token is not None:
        sent["authorization"] = f"Bearer {token}"
    response = await http.post(
        f"{base}/graphql", json={"query": query, "variables": variables}, headers=sent
    )
    body: dict[str, Any] = response.json()
    assert "errors" not in body, body
    data: dict[str, Any] = body["data"]
    return data


async def _hits(http: httpx.AsyncClient, base: str) -> float:
    text = (await http.get(f"{base}/metrics")).text
    found = re.search(r'statements_read_cache_statements\{result="hit"\} ([\d.e+]+)', text)
    return float(found.group(1)) if found else 0.0


def test_a_write_through_one_host_drops_the_page_cached_on_the_other(topo: Topology) -> None:
    topo.ensure_running()
    editor = make_tokens(topo, 0)[0]
    a, b = (topo.apis[name] for name in sorted(topo.apis)[:2])

    async def scenario() -> None:
        async with httpx.AsyncClient(timeout=10) as http:
            published = (
                await _gql(
                    http,
                    a.url,
                    PUBLISH,
                    {"input": statement_input("Cached far away", 7)},
                    token=editor,
                )
            )["publishStatement"]
            sid, position = published["statementId"], str(published["position"])
            first = await _gql(http, b.url, PAGE, {"id": sid}, headers={"x-min-position": position})
            hits = await _hits(http, b.url)
            assert await _gql(http, b.url, PAGE, {"id": sid}) == first
            assert await _hits(http, b.url) > hits  # answered from B's memory

            await _gql(http, a.url, TAG, {"id": sid, "topics": ["Far away"]}, token=editor)
            deadline = time.monotonic() + 5
            while True:
                page = (await _gql(http, b.url, PAGE, {"id": sid}))["statement"]
                if "far-away" in [t["slug"] for t in page["topics"]]:
                    break
                assert time.monotonic() < deadline, f"B still shows {page}"
                await asyncio.sleep(0.05)

    topo.run_client(scenario)
