"""The whole app (``create_app``) on a real database, and an HTTP client with tokens per role.

Tests that want to meet the API as its clients do start it here: its lifespan opens the store,
runs the projections and serves ``/graphql``; requests go through httpx.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from eventstore.urls import create_engine
from graphql_api.app import create_app
from graphql_api.security.auth import create_token
from graphql_api.settings import Settings


@dataclass
class Api:
    """An HTTP client of a running app, with a bearer token for each role."""

    client: httpx.AsyncClient
    tokens: Mapping[str, str]

    async def post(
        self,
        query: str,
        variables: Mapping[str, Any] | None = None,
        *,
        role: str | None = None,
        headers: Mapping[str, str] | None = None,
        operation_name: str | None = None,
    ) -> dict[str, Any]:
        """POST one GraphQL request; the response's JSON body."""
        sent = dict(headers or {})
        if role is not None:
            sent["Authorization"] = f"Bearer {self.tokens[role]}"
        body: dict[str, Any] = {"query": query}
        if variables is not None:
            body["variables"] = dict(variables)
        if operation_name is not None:
            body["operationName"] = operation_name
        response = await self.client.post("/graphql", json=body, headers=sent)
        result: dict[str, Any] = response.json()
        return result

    async def data(
        self, query: str, variables: Mapping[str, Any] | None = None, *, role: str | None = None
    ) -> Any:
        """The ``data`` of a request that must not fail."""
        result = await self.post(query, variables, role=role)
        assert "errors" not in result, result
        return result["data"]


@contextlib.asynccontextmanager
async def running_app(url: str, schema: str = "", **changes: Any) -> AsyncIterator[Api]:
    """Start the app on ``url`` (and PostgreSQL ``schema``), ready, with an editor and an
    auditor token; ``changes`` are other settings."""
    settings = Settings(database_url=url, database_schema=schema or None, **changes)
    app = create_app(settings)
    transport = httpx.ASGITransport(app=app)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://test") as client,
    ):
        for _ in range(200):
            ready = await client.get("/readyz")
            if ready.status_code == 200 or ready.json().get("failed"):
                break
            await asyncio.sleep(0.05)
        assert ready.status_code == 200, ready.json()
        engine = create_engine(url, schema=schema or None)
        try:
            # A database may be served more than once: each start has tokens of its own.
            desk = uuid.uuid4().hex[:8]
            tokens = {
                role: (await create_token(engine, role, f"{role}-desk-{desk}"))[0]
                for role in ("editor", "auditor")
            }
        finally:
            await engine.dispose()
        yield Api(client, tokens)
