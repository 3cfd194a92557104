"""Read-your-writes scenarios, run by the consistency tests against one app or two servers.

Each round writes through one client and reads through another at once (the same process, or
another one), with mutations that select nothing but ``position``: the answer alone must mean
that the read sees the write.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import httpx

PUBLISH = """mutation($input: PublishStatementInput!) {
  publishStatement(input: $input) { statementId position } }"""
TAG = """mutation($id: ID!, $topics: [String!]!) {
  tagStatement(input: {statementId: $id, topics: $topics}) { position } }"""
RECORD_VIEW = (
    """mutation($id: ID!) { recordView(input: {statementId: $id}) { position viewCount } }"""
)
TAGGED = """query($id: ID!, $slug: String!) {
  statement(id: $id) { topics { slug } } topic(slug: $slug) { statementCount } }"""
PUBLISHED = """query($id: ID!, $word: String!) {
  statement(id: $id) { title minister { id } }
  newest: statements(first: 1) { nodes { statementId } }
  found: statements(filter: {search: $word}) { nodes { statementId } }
  archive { count }
}"""
VIEWED = """query($id: ID!) { statement(id: $id) { viewCount } }"""


async def gql(
    client: httpx.AsyncClient,
    query: str,
    variables: dict[str, Any] | None = None,
    *,
    token: str | None = None,
    headers: dict[str, str] | None = None,
) -> dict[str, Any]:
    sent = dict(headers or {})
    if token:
        sent["authorization"] = f"Bearer {token}"
    response = await client.post(
        "/graphql", json={"query": query, "variables": variables or {}}, headers=sent
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def ok(body: dict[str, Any]) -> dict[str, Any]:
    assert "errors" not in body, body
    data: dict[str, Any] = body["data"]
    return data


def statement_input(title: str, day: int) -> dict[str, Any]:
    return {
        "title": title,
        "body": f"First paragraph of {title}.\n\nSecond paragraph.",
        "kind": "comment",
        "ministerName": "Sergey Lavrov",
        "occurredOn": f"2019-06-{day:02d}",
        "publishedAt": f"2019-06-{day:02d}T10:00:00+03:00",
    }


async def publish(client: httpx.AsyncClient, token: str, title: str, day: int) -> str:
    data = ok(await gql(client, PUBLISH, {"input": statement_input(title, day)}, token=token))
    return str(data["publishStatement"]["statementId"])


async def read_your_writes(
    write: httpx.AsyncClient,
    read: httpx.AsyncClient,
    *,
    editor: str,
    ingest: str,
    rounds: int = 20,
) -> list[str]:
    """Tag, publish and view ``rounds`` times, reading each at once; returns what was missed."""
    missed: list[str] = []
    base = await publish(write, editor, "The base statement", 1)
    for i in range(rounds):
        slug = f"round-{i}"
        ok(await gql(write, TAG, {"id": base, "topics": [f"Round {i}"]}, token=editor))
        tagged = ok(await gql(read, TAGGED, {"id": base, "slug": slug}))
        topics = [t["slug"] for t in (tagged["statement"] or {}).get("topics", [])]
        if slug not in topics or tagged["topic"] is None:
            missed.append(f"tag {i}: {tagged}")

        word = f"quokka{i}"
        new = await publish(write, editor, f"Published in round {i} {word}", 2 + i)
        seen = ok(await gql(read, PUBLISHED, {"id": new, "word": word}))
        if (
            seen["statement"] is None
            or seen["newest"]["nodes"] != [{"statementId": new}]
            or seen["found"]["nodes"] != [{"statementId": new}]
            or sum(month["count"] for month in seen["archive"]) != 2 + i
        ):
            missed.append(f"publish {i}: {seen}")

        viewed = ok(await gql(write, RECORD_VIEW, {"id": base}, token=ingest))["recordView"]
        if viewed["viewCount"] != i + 1:
            missed.append(f"view {i}: the payload counts {viewed}")
        statement = ok(await gql(read, VIEWED, {"id": base}))["statement"]
        if statement is None or statement["viewCount"] != i + 1:
            missed.append(f"view {i}: the next read shows {statement}")
    return missed


async def wait_ready(client: httpx.AsyncClient, timeout: float = 30.0) -> None:
    """Until /readyz says every projection has its tables and none failed."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        ready = await client.get("/readyz")
        if ready.status_code == 200:
            return
        assert loop.time() < deadline, ready.json()
        await asyncio.sleep(0.05)


@contextlib.asynccontextmanager
async def http(url: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        yield client
