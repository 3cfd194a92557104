"""PostgreSQL wake-ups across processes: NOTIFY is a hint, polling the fallback, LISTEN recovers."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from eventstore import NewEvent
from eventstore.postgres import PostgresEventStore

pytestmark = pytest.mark.postgres


async def _first(store: PostgresEventStore, after: int) -> int:
    async for record in store.subscribe(after):
        return record.position
    raise AssertionError("subscription ended")


async def test_notify_wakes_a_subscriber_in_another_store(pg_schema: tuple[str, str]) -> None:
    url, schema = pg_schema
    async with (
        PostgresEventStore(url, schema=schema) as writer,
        PostgresEventStore(url, schema=schema, poll_interval=60) as reader,
    ):
        task = asyncio.create_task(_first(reader, 0))
        await asyncio.sleep(0.2)
        await writer.append("s", [NewEvent("E", {})])
        # With a 60 s poll, only the notification can deliver this in time.
        assert await asyncio.wait_for(task, 5) == 1


async def test_poll_fallback_delivers_when_notify_is_suppressed(pg_schema: tuple[str, str]) -> None:
    url, schema = pg_schema
    async with (
        PostgresEventStore(url, schema=schema, notify=False) as writer,
        PostgresEventStore(url, schema=schema, poll_interval=0.2) as reader,
    ):
        task = asyncio.create_task(_first(reader, 0))
        await asyncio.sleep(0.3)
        await writer.append("s", [NewEvent("E", {})])
        assert await asyncio.wait_for(task, 5) == 1


async def test_listen_connection_killed_reconnects(pg_schema: tuple[str, str]) -> None:
    url, schema = pg_schema
    async with (
        PostgresEventStore(url, schema=schema) as writer,
        PostgresEventStore(url, schema=schema, poll_interval=60) as reader,
    ):
        task = asyncio.create_task(_first(reader, 0))
        await asyncio.sleep(0.2)
        pid = reader.listener_pid
        assert pid is not None
        admin = await asyncpg.connect(
            writer.engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
        )
        try:
            assert await admin.fetchval("SELECT pg_terminate_backend($1)", pid)
        finally:
            await admin.close()
        for _ in range(100):
            await asyncio.sleep(0.1)
            if reader.listener_pid not in (None, pid):
                break
        assert reader.listener_pid not in (None, pid), "LISTEN did not reconnect"
        await writer.append("s", [NewEvent("E", {})])
        assert await asyncio.wait_for(task, 5) == 1


async def test_pool_recovers_after_connections_are_terminated(pg_schema: tuple[str, str]) -> None:
    url, schema = pg_schema
    async with PostgresEventStore(url, schema=schema) as store:
        await store.append("s", [NewEvent("E", {})])
        admin = await asyncpg.connect(
            store.engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
        )
        try:
            await admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
        finally:
            await admin.close()
        recovered = False
        for _ in range(5):
            try:
                await store.append("s", [NewEvent("E", {})])
                await store.head_position()
                recovered = True
                break
            except Exception as exc:
                assert "unavailable" in str(exc).lower()
        assert recovered
        assert await store.stream_version("s") >= 2
