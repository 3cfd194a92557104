"""Fixtures of the API tests: an in-memory store, its handlers, tokens in SQLite, an app."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from domain.handlers import StatementHandlers
from eventstore.memory import MemoryEventStore
from eventstore.urls import create_engine
from graphql_api import execution
from graphql_api.security.auth import TokenAuthenticator, setup_tokens
from graphql_api.settings import Settings
from tests.graphql_api.support import App, make_app, make_handlers


def pytest_configure(config: pytest.Config) -> None:
    """Honour STATEMENTS_COMPILED_EXECUTOR as the app does (CI runs these tests both ways);
    before collection, since some modules build their schemas at import."""
    if not Settings.from_env().compiled_executor:
        execution.switch_off()


@pytest.fixture
def memory_store() -> MemoryEventStore:
    return MemoryEventStore()


@pytest.fixture
def handlers(memory_store: MemoryEventStore) -> StatementHandlers:
    return make_handlers(memory_store)


@pytest.fixture
async def token_engine(tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(f"sqlite:///{tmp_path / 'tokens.db'}")
    await setup_tokens(engine)
    yield engine
    await engine.dispose()


@pytest.fixture
def app(handlers: StatementHandlers, token_engine: AsyncEngine) -> App:
    return make_app(handlers, authenticator=TokenAuthenticator(token_engine, ttl=0.0))


@pytest.fixture
async def client(app: App) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app.app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        yield client
