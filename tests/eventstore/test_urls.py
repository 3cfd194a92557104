"""Database URLs: which backend, which async driver, and clear errors for the rest."""

from __future__ import annotations

import pytest

from eventstore import open_store
from eventstore.memory import MemoryEventStore
from eventstore.sqlite import SQLiteEventStore
from eventstore.urls import async_url, backend_of


@pytest.mark.parametrize(
    ("url", "backend", "driver_url"),
    [
        ("sqlite:///./statements.db", "sqlite", "sqlite+aiosqlite:///./statements.db"),
        ("sqlite+aiosqlite:////tmp/x.db", "sqlite", "sqlite+aiosqlite:////tmp/x.db"),
        ("postgresql://u:p@h:5432/db", "postgresql", "postgresql+asyncpg://u:p@h:5432/db"),
        ("postgresql+psycopg://u@h/db", "postgresql", "postgresql+asyncpg://u@h/db"),
    ],
)
def test_backends_and_async_drivers(url: str, backend: str, driver_url: str) -> None:
    assert backend_of(url) == backend
    assert async_url(url) == driver_url


@pytest.mark.parametrize("url", ["mysql://h/db", "nonsense", ""])
def test_unsupported_urls_are_named(url: str) -> None:
    with pytest.raises(ValueError, match=r"URL|unsupported"):
        backend_of(url)


async def test_open_store_picks_the_backend(tmp_path: object) -> None:
    assert isinstance(open_store("memory://"), MemoryEventStore)
    store = open_store(f"sqlite:///{tmp_path}/e.db")
    assert isinstance(store, SQLiteEventStore)
    await store.close()
