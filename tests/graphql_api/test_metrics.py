"""Prometheus metrics: requests, latency, SQL statements per request, gauges."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from eventstore.urls import create_engine
from graphql_api.metrics import (
    Metrics,
    count_sql_statements,
    note_sql_statements,
    sql_statement_scope,
)
from tests.graphql_api.support import App


async def test_requests_are_counted_by_operation_and_status(
    app: App, client: httpx.AsyncClient
) -> None:
    await client.post("/graphql", json={"query": "query Greeting { hello }"})
    await client.post("/graphql", json={"query": "{ hello }", "operationName": None})
    await client.post("/graphql", json={"query": "{", "operationName": None})
    await client.post("/graphql", content=b"nope", headers={"content-type": "application/json"})
    response = await client.get("/metrics")
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    text = response.text
    assert 'graphql_requests_total{operation="Greeting",status="200"} 1.0' in text
    assert 'graphql_requests_total{operation="anonymous",status="200"} 2.0' in text
    assert 'graphql_requests_total{operation="anonymous",status="400"} 1.0' in text
    assert 'graphql_request_duration_seconds_bucket{le="+Inf",operation="Greeting"} 1.0' in text
    assert 'graphql_request_duration_seconds_count{operation="Greeting"} 1.0' in text
    assert 'graphql_sql_statements_per_request_bucket{le="0.0"} 4.0' in text
    assert "# TYPE graphql_request_duration_seconds histogram" in text


def test_operation_labels_are_bounded() -> None:
    metrics = Metrics(max_operations=2)
    assert metrics.operation_label(None) == "anonymous"
    assert metrics.operation_label("A") == "A"
    assert metrics.operation_label('bad"name') == "other"
    assert metrics.operation_label("B") == "B"
    assert metrics.operation_label("C") == "other"
    assert metrics.operation_label("A") == "A"


async def test_histograms_and_gauges() -> None:
    metrics = Metrics(latency_buckets=(0.1, 1.0), sql_buckets=(1, 5))
    metrics.observe_request("Q", 200, 0.05, sql_statements=3)
    metrics.observe_request("Q", 200, 0.5, sql_statements=7)

    async def lag() -> dict[str, float]:
        await asyncio.sleep(0)
        return {"statements": 3, 'we"ird': 0}

    readings = iter([5.0])

    def broken() -> float:
        return next(readings)  # 5, then StopIteration: a callback that starts failing

    metrics.gauge(
        "statements_projection_lag_events", "Events behind the head.", lag, label="projection"
    )
    metrics.gauge("graphql_open_subscriptions", "Open subscriptions.", lambda: 2)
    metrics.gauge("broken_gauge", "Fails.", broken)
    await metrics.refresh()
    with pytest.raises(ValueError):
        metrics.gauge("bad name", "x", lambda: 1)
    text = await metrics.render()
    assert 'graphql_request_duration_seconds_bucket{le="0.1",operation="Q"} 1.0' in text
    assert 'graphql_request_duration_seconds_bucket{le="1.0",operation="Q"} 2.0' in text
    assert 'graphql_request_duration_seconds_sum{operation="Q"} 0.55' in text
    assert 'graphql_sql_statements_per_request_bucket{le="1.0"} 0.0' in text
    assert 'graphql_sql_statements_per_request_bucket{le="5.0"} 1.0' in text
    assert 'graphql_sql_statements_per_request_bucket{le="+Inf"} 2.0' in text
    assert "graphql_sql_statements_total 10.0" in text
    assert 'statements_projection_lag_events{projection="statements"} 3.0' in text
    assert 'statements_projection_lag_events{projection="we\\"ird"} 0.0' in text
    assert "graphql_open_subscriptions 2.0" in text
    assert "broken_gauge 5.0" in text  # its last good value, not a made-up one
    assert text.endswith("\n")


async def test_sql_statements_are_counted_per_scope(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'count.db'}")
    count_sql_statements(engine)
    try:

        async def two_queries() -> None:
            async with engine.connect() as conn:
                await conn.execute(sa.text("SELECT 1"))
                await conn.execute(sa.text("SELECT 2"))

        with sql_statement_scope() as outer:
            await two_queries()
            with sql_statement_scope() as inner:
                await asyncio.gather(two_queries(), two_queries())  # tasks copy the context
                note_sql_statements(3)
            assert inner[0] == 4 + 3
        assert outer[0] == 2
        note_sql_statements(5)  # outside any scope: ignored
    finally:
        await engine.dispose()
