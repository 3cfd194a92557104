"""The Starlette application; create_app(settings) is the one place where everything is wired."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from eventstore import EventStore, open_store
from graphql_api.settings import Settings


def create_app(settings: Settings) -> Starlette:
    """Build the app; nothing connects to a database until the app starts."""
    state: dict[str, EventStore] = {}

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        options = {"schema": settings.database_schema} if settings.database_schema else {}
        store = open_store(settings.database_url, **options)
        await store.setup()
        state["store"] = store
        try:
            yield
        finally:
            await store.close()

    async def index(request: Request) -> Response:
        return HTMLResponse("<h1>statements</h1><p>GraphQL is served at /graphql.</p>")

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def readyz(request: Request) -> Response:
        try:
            head = await state["store"].head_position()
        except Exception as exc:
            return JSONResponse({"status": "unavailable", "error": str(exc)}, status_code=503)
        return JSONResponse({"status": "ready", "head": head})

    return Starlette(
        routes=[
            Route("/", index),
            Route("/healthz", healthz),
            Route("/readyz", readyz),
        ],
        lifespan=lifespan,
    )


def app_from_env() -> Starlette:
    """Factory for uvicorn workers."""
    return create_app(Settings.from_env())
