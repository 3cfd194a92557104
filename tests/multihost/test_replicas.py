"""Reads from the streaming replica, across namespaces: an API host started with
``STATEMENTS_READ_REPLICA_URLS`` naming the replica (pg2) serves queries from it, sends a
request with ``X-Min-Position`` to the primary while the replica's replay is paused, leaves
the replica out while it lags or is killed, and uses it again once it is back. No request
fails on the way.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.multihost.failover import make_tokens
from tests.multihost.topology import REPLICA, ApiHost, Topology

pytestmark = [pytest.mark.multihost]

PUBLISH = """mutation($input: PublishStatementInput!) {
  publishStatement(input: $input) { statementId position } }"""
STATEMENT = """query($id: ID!) { statement(id: $id) { title } }"""
MAX_LAG = 2.0


def statement_input(title: str) -> dict[str, Any]:
    return {
        "title": title,
        "body": f"About {title}.",
        "kind": "comment",
        "ministerName": "Sergey Lavrov",
        "occurredOn": "2019-06-01",
        "publishedAt": "2019-06-01T10:00:00+03:00",
    }


@pytest.fixture
def reading_api(topo: Topology) -> Iterator[ApiHost]:
    """api1, restarted with the replica as its read replica (and restarted without after)."""
    topo.ensure_running()
    assert topo.replica is not None
    api = topo.apis["api1"]
    saved = dict(api.env)
    api.env = {
        **saved,
        "STATEMENTS_READ_REPLICA_URLS": topo.replica.url_from_hosts(),
        "STATEMENTS_REPLICA_MAX_LAG": str(MAX_LAG),
    }
    api.power_off()
    topo.ensure_running()
    try:
        yield api
    finally:
        if not topo.replica.running():
            topo.replica.start()
        api.env = saved
        api.power_off()
        topo.ensure_running()


def metric(text: str, name: str, label: str) -> float:
    match = re.search(rf'^{name}{{[a-z]+="{re.escape(label)}"}} (\S+)$', text, re.MULTILINE)
    return float(match.group(1)) if match else float("nan")


class Client:
    def __init__(self, api: ApiHost, replica: str, token: str) -> None:
        self.http = httpx.AsyncClient(base_url=api.url, timeout=30)
        self.replica = replica
        self.token = token

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.http.aclose()

    async def publish(self, title: str) -> tuple[str, int]:
        response = await self.http.post(
            "/graphql",
            json={"query": PUBLISH, "variables": {"input": statement_input(title)}},
            headers={"authorization": f"Bearer {self.token}"},
        )
        body = response.json()
        assert "errors" not in body, body
        payload = body["data"]["publishStatement"]
        return str(payload["statementId"]), int(payload["position"])

    async def title(self, sid: str, min_position: int | None = None) -> str | None:
        headers = {} if min_position is None else {"x-min-position": str(min_position)}
        response = await self.http.post(
            "/graphql", json={"query": STATEMENT, "variables": {"id": sid}}, headers=headers
        )
        assert response.status_code == 200, response.text
        body = response.json()
        assert "errors" not in body, body
        statement = body["data"]["statement"]
        return None if statement is None else str(statement["title"])

    async def targets(self) -> tuple[float, float, float]:
        """(queries read on the primary, on the replica, whether the replica is in use)."""
        text = (await self.http.get("/metrics")).text
        return (
            metric(text, "statements_read_target_queries", "primary"),
            metric(text, "statements_read_target_queries", self.replica),
            metric(text, "statements_replica_healthy", self.replica),
        )

    async def until_replica(self, healthy: bool, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while (await self.targets())[2] != float(healthy):
            assert time.monotonic() < deadline, f"the replica's health stayed not {healthy}"
            await asyncio.sleep(0.1)


def replica_name(topo: Topology) -> str:
    assert topo.replica is not None
    return f"{topo.replica.address}:{topo.replica.port}/statements"


def test_queries_are_served_by_the_replica(topo: Topology, reading_api: ApiHost) -> None:
    [editor] = make_tokens(topo, 0)

    async def scenario() -> tuple[float, float]:
        async with Client(reading_api, replica_name(topo), editor) as client:
            await client.until_replica(True)
            sid, _position = await client.publish("Read from the replica")
            before = await client.targets()
            for _ in range(50):
                # Without X-Min-Position the replica may answer before it has replayed the write.
                await client.title(sid)
            after = await client.targets()
        return after[0] - before[0], after[1] - before[1]

    on_primary, on_replica = topo.run_client(scenario)
    # All of them, unless a poll on this loaded machine found the replica past the bound.
    assert on_primary + on_replica == 50 and on_replica >= 45, (on_primary, on_replica)
    # The replica's server shows the API host's read connections.
    rows = topo.sql(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = 'statements' "
        "AND host(client_addr) = $1",
        reading_api.address,
        on=REPLICA,
    )
    assert rows[0][0] >= 1


def test_read_your_writes_holds_while_the_replica_lags(
    topo: Topology, reading_api: ApiHost
) -> None:
    [editor] = make_tokens(topo, 0)

    async def scenario() -> None:
        async with Client(reading_api, replica_name(topo), editor) as client:
            await client.until_replica(True)
            topo.sql("SELECT pg_wal_replay_pause()", on=REPLICA)
            try:
                sid, position = await client.publish("Written while the replica waits")
                primary_before = (await client.targets())[0]
                for _ in range(10):
                    assert await client.title(sid, position) == "Written while the replica waits"
                assert (await client.targets())[0] - primary_before == 10
                # Paused past the bound, the replica is left out: every query reads the primary.
                await client.until_replica(False, timeout=MAX_LAG + 10)
                assert await client.title(sid) == "Written while the replica waits"
            finally:
                topo.sql("SELECT pg_wal_replay_resume()", on=REPLICA)
            await client.until_replica(True)
            replica_before = (await client.targets())[1]
            assert await client.title(sid, position) == "Written while the replica waits"
            assert (await client.targets())[1] == replica_before + 1

    topo.run_client(scenario)


def test_a_killed_replica_is_left_out_and_used_again(topo: Topology, reading_api: ApiHost) -> None:
    [editor] = make_tokens(topo, 0)
    assert topo.replica is not None
    replica = topo.replica

    async def scenario() -> int:
        async with Client(reading_api, replica_name(topo), editor) as client:
            await client.until_replica(True)
            sid, _position = await client.publish("Read through a replica's death")
            stop = asyncio.Event()
            answered = 0

            async def read() -> None:
                nonlocal answered
                while not stop.is_set():
                    # Any failure raises out of the test: none is allowed.
                    title = await client.title(sid)
                    assert title in (None, "Read through a replica's death")
                    answered += 1

            readers = [asyncio.create_task(read()) for _ in range(4)]
            try:
                await asyncio.sleep(1.0)
                await asyncio.to_thread(topo.network.power_off, REPLICA)
                await client.until_replica(False, timeout=10)
                await asyncio.sleep(1.0)
                await asyncio.to_thread(replica.start)
                await client.until_replica(True, timeout=60)
                replica_before = (await client.targets())[1]
                await asyncio.sleep(1.0)
                used_again = (await client.targets())[1] > replica_before
                assert used_again, "the replica was not used again"
            finally:
                stop.set()
                await asyncio.gather(*readers)
        return answered

    answered = topo.run_client(scenario)
    assert answered > 0
