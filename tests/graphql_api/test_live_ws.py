"""Live subscriptions against a uvicorn subprocess on SQLite: delivery, coalescing, ordering,
close codes, limits, keep-alive, slow consumers, abrupt closes, SSE and the legacy protocol."""

from __future__ import annotations

import asyncio
import base64
import json
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
import websockets
from websockets.exceptions import ConnectionClosed

from graphql_api.errors import BAD_USER_INPUT
from tests.graphql_api.live_support import (
    TRANSPORT_WS,
    Server,
    Tokens,
    WsClient,
    live_server,
    make_tokens,
    publish,
    record_view,
)

COUNT = "subscription($id: ID!) { viewCount(statementId: $id) { statementId viewCount at } }"
TOP = "subscription { topViewed(first: 3) { rank statementId viewCount } }"
EVENTS = "subscription($after: Int!) { eventAppended(afterPosition: $after) { position type } }"
TICK = 0.25


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, Tokens]]:
    tmp = tmp_path_factory.mktemp("live")
    url = f"sqlite:///{tmp / 'live.db'}"
    tokens = make_tokens(url)
    env = {
        "LIVE_TICK": str(TICK),
        "LIVE_INIT_TIMEOUT": "1",
        "LIVE_KEEP_ALIVE": "1",
        "LIVE_MAX_SUBSCRIPTIONS": "5",
    }
    with live_server(url, tmp, env=env) as server:
        yield server, tokens


@pytest.fixture
def server(setup: tuple[Server, Tokens]) -> Server:
    return setup[0]


@pytest.fixture
def tokens(setup: tuple[Server, Tokens]) -> Tokens:
    return setup[1]


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=10) as client:
        yield client


async def _statement(http: httpx.AsyncClient, server: Server, tokens: Tokens) -> str:
    return await publish(http, server.url, tokens.editor, f"Statement {time.time_ns()}")


async def _views(http: httpx.AsyncClient, server: Server, statement_id: str, n: int) -> None:
    for start in range(0, n, 25):
        await asyncio.gather(
            *(record_view(http, server.url, statement_id) for _ in range(min(25, n - start)))
        )


async def _closed_with(ws: Any, timeout: float = 5.0) -> int:
    with pytest.raises(ConnectionClosed):
        while True:
            await asyncio.wait_for(ws.recv(), timeout)
    assert ws.close_code is not None
    return int(ws.close_code)


def _connect(server: Server, protocol: str = TRANSPORT_WS) -> Any:
    return websockets.connect(server.ws_url, subprotocols=[protocol])  # type: ignore[list-item]


async def test_view_counts_are_coalesced_exact_and_never_go_down(
    server: Server, tokens: Tokens, http: httpx.AsyncClient
) -> None:
    sid = await _statement(http, server, tokens)
    async with _connect(server) as ws:
        client = WsClient(ws)
        assert (await client.init())["type"] == "connection_ack"
        await client.subscribe("c", COUNT, {"id": sid})
        first = await client.recv()
        assert first["payload"].get("data"), first
        assert first["payload"]["data"]["viewCount"]["viewCount"] == 0
        started = time.monotonic()
        await _views(http, server, sid, 120)
        counts: list[int] = []
        while not counts or counts[-1] < 120:
            message = await client.recv()
            assert message["type"] == "next", message
            counts.append(message["payload"]["data"]["viewCount"]["viewCount"])
        elapsed = time.monotonic() - started
        assert counts == sorted(counts)
        assert counts[-1] == 120
        # One message per tick at most (plus slack for the tick boundaries).
        assert len(counts) <= elapsed / TICK + 3, (len(counts), elapsed)
        assert len(counts) < 120
        with pytest.raises(TimeoutError):
            await client.recv(timeout=3 * TICK)  # nothing changes: nothing is sent


async def test_subscribers_of_one_statement_share_it_and_see_the_same_final_count(
    server: Server, tokens: Tokens, http: httpx.AsyncClient
) -> None:
    sid = await _statement(http, server, tokens)
    await _views(http, server, sid, 7)  # before anyone subscribes: from the read model
    async with _connect(server) as a, _connect(server) as b:
        clients = [WsClient(a), WsClient(b)]
        for c in clients:
            await c.init()
            await c.subscribe("1", COUNT, {"id": sid})
        await _views(http, server, sid, 13)
        for c in clients:
            last = 0
            while last < 20:
                last = (await c.recv())["payload"]["data"]["viewCount"]["viewCount"]
            assert last == 20
        stats = (await http.get(server.url + "/debug/live")).json()
        assert stats["tracked"] >= 1


async def test_top_viewed_sends_the_ranking_when_it_changes(
    server: Server, tokens: Tokens, http: httpx.AsyncClient
) -> None:
    sid = await _statement(http, server, tokens)
    async with _connect(server) as ws:
        client = WsClient(ws)
        await client.init()
        await client.subscribe("t", TOP)
        await client.recv()
        await _views(http, server, sid, 150)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            ranking = (await client.recv())["payload"]["data"]["topViewed"]
            if ranking and ranking[0]["statementId"] == sid and ranking[0]["viewCount"] == 150:
                break
        else:
            pytest.fail("the final ranking never came")


async def test_statement_published_is_pushed(
    server: Server, tokens: Tokens, http: httpx.AsyncClient
) -> None:
    async with _connect(server) as ws:
        client = WsClient(ws)
        await client.init()
        await client.subscribe(
            "p", "subscription { statementPublished { id statementId title slug } }"
        )
        await asyncio.sleep(0.3)
        sid = await _statement(http, server, tokens)
        message = await client.recv()
        published = message["payload"]["data"]["statementPublished"]
        # Its id is the global id, like every other `id`; statementId is the UUID.
        assert published["statementId"] == sid
        assert published["id"] == base64.b64encode(f"Statement:{sid}".encode()).decode()


async def test_event_appended_replays_then_follows_for_auditors_only(
    server: Server, tokens: Tokens, http: httpx.AsyncClient
) -> None:
    async with _connect(server) as ws:
        client = WsClient(ws)
        await client.init()
        await client.subscribe("e", EVENTS, {"after": 0})
        message = await client.recv()
        assert message["type"] in ("next", "error")
        errors = message["payload"]["errors"] if message["type"] == "next" else message["payload"]
        assert errors[0]["extensions"]["code"] == "UNAUTHENTICATED"

    sid = await _statement(http, server, tokens)
    head = await record_view(http, server.url, sid)
    async with _connect(server) as ws:
        client = WsClient(ws)
        assert (await client.init({"authorization": f"Bearer {tokens.auditor}"}))["type"] == (
            "connection_ack"
        )
        await client.subscribe("e", EVENTS, {"after": 0})
        positions: list[int] = []
        while not positions or positions[-1] < head:
            positions.append((await client.recv())["payload"]["data"]["eventAppended"]["position"])
        live = await record_view(http, server.url, sid)
        while positions[-1] < live:
            positions.append((await client.recv())["payload"]["data"]["eventAppended"]["position"])
        assert positions == list(range(1, live + 1))  # no gaps, no duplicates


async def test_bad_message_closes_with_4400(server: Server) -> None:
    async with _connect(server) as ws:
        await ws.send("{not json")
        assert await _closed_with(ws) == 4400
    async with _connect(server) as ws:
        await ws.send(json.dumps({"type": "connection_init"}))
        await ws.recv()
        await ws.send(json.dumps({"type": "what"}))
        assert await _closed_with(ws) == 4400


async def test_subscribe_before_ack_closes_with_4401(server: Server) -> None:
    async with _connect(server) as ws:
        await WsClient(ws).subscribe("1", TOP)
        assert await _closed_with(ws) == 4401


async def test_bad_token_closes_with_4403(server: Server) -> None:
    for payload in (
        {"authorization": "Bearer st_not-a-real-token"},
        {"token": "st_nope"},
        {"authorization": "Basic abc"},
    ):
        async with _connect(server) as ws:
            await WsClient(ws).send({"type": "connection_init", "payload": payload})
            assert await _closed_with(ws) == 4403


async def test_no_init_closes_with_4408(server: Server) -> None:
    async with _connect(server) as ws:
        started = time.monotonic()
        assert await _closed_with(ws) == 4408
        # Not before the configured init timeout; the upper bound only catches "never".
        assert 0.8 < time.monotonic() - started < 10


async def test_duplicate_id_closes_with_4409(server: Server) -> None:
    async with _connect(server) as ws:
        client = WsClient(ws)
        await client.init()
        await client.subscribe("same", TOP)
        await client.subscribe("same", TOP)
        assert await _closed_with(ws) == 4409


async def test_second_init_closes_with_4429(server: Server) -> None:
    async with _connect(server) as ws:
        client = WsClient(ws)
        await client.init()
        await client.send({"type": "connection_init", "payload": {}})
        assert await _closed_with(ws) == 4429


async def test_subscriptions_per_connection_are_limited(server: Server) -> None:
    async with _connect(server) as ws:
        client = WsClient(ws)
        await client.init()
        for i in range(5):
            await client.subscribe(str(i), TOP)
        for _ in range(5):
            assert (await client.recv())["type"] == "next"
        await client.subscribe("6", TOP)
        message = await client.recv()
        assert message["type"] == "error" and message["id"] == "6"


async def test_server_sends_keep_alive_pings(server: Server) -> None:
    async with _connect(server) as ws:
        await ws.send(json.dumps({"type": "connection_init"}))
        assert json.loads(await ws.recv())["type"] == "connection_ack"
        assert json.loads(await asyncio.wait_for(ws.recv(), 3))["type"] == "ping"


async def test_a_slow_consumer_does_not_block_the_others(
    server: Server, tokens: Tokens, http: httpx.AsyncClient
) -> None:
    sid = await _statement(http, server, tokens)
    async with _connect(server) as slow, _connect(server) as fast:
        for ws in (slow, fast):
            client = WsClient(ws)
            await client.init()
            for i in range(5):
                await client.subscribe(str(i), COUNT, {"id": sid})
        slow.transport.pause_reading()  # it reads nothing from now on
        fast_client = WsClient(fast)
        await _views(http, server, sid, 100)
        started = time.monotonic()
        seen = 0
        while seen < 100:
            seen = (await fast_client.recv())["payload"]["data"]["viewCount"]["viewCount"]
        # The fast client is served while the slow one reads nothing; "not blocked" here
        # means well within the ticks it takes, not a speed target.
        assert time.monotonic() - started < 10
        slow.transport.abort()  # or closing would wait for its close frame


async def test_abrupt_closes_leave_no_tasks_or_subscribers(
    server: Server, tokens: Tokens, http: httpx.AsyncClient
) -> None:
    sid = await _statement(http, server, tokens)
    await asyncio.sleep(0.5)
    before = (await http.get(server.url + "/debug/live")).json()
    sockets = []
    for _ in range(20):
        ws = await _connect(server)
        client = WsClient(ws)
        await client.init()
        await client.subscribe("a", COUNT, {"id": sid})
        await client.subscribe("b", TOP)
        await client.recv()
        sockets.append(ws)
    during = (await http.get(server.url + "/debug/live")).json()
    assert during["connections"] >= before["connections"] + 20
    # 40 subscriptions, two distinct ones: the hub serves each shared stream once.
    assert during["subscribers"] >= before["subscribers"] + 2
    for ws in sockets:
        ws.transport.abort()  # no close frame
    deadline = time.monotonic() + 5
    while True:
        after = (await http.get(server.url + "/debug/live")).json()
        if (
            after["subscribers"] == before["subscribers"]
            and after["connections"] == before["connections"]
            and after["tasks"] <= before["tasks"]
        ) or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.1)
    assert after["subscribers"] == before["subscribers"], (before, after)
    assert after["connections"] == before["connections"], (before, after)
    assert after["tasks"] <= before["tasks"], (before, after)


async def test_legacy_graphql_ws_protocol(
    server: Server, tokens: Tokens, http: httpx.AsyncClient
) -> None:
    sid = await _statement(http, server, tokens)
    async with _connect(server, "graphql-ws") as ws:
        await ws.send(json.dumps({"type": "connection_init", "payload": {}}))
        assert json.loads(await ws.recv())["type"] == "connection_ack"
        await ws.send(
            json.dumps(
                {"id": "1", "type": "start", "payload": {"query": COUNT, "variables": {"id": sid}}}
            )
        )
        await record_view(http, server.url, sid)
        count = -1
        while count < 1:
            message = json.loads(await asyncio.wait_for(ws.recv(), 5))
            if message["type"] == "data":
                count = message["payload"]["data"]["viewCount"]["viewCount"]
        assert count == 1


async def test_server_sent_events(server: Server, tokens: Tokens, http: httpx.AsyncClient) -> None:
    sid = await _statement(http, server, tokens)
    params = {"query": COUNT, "variables": json.dumps({"id": sid})}
    async with http.stream("GET", server.url + "/graphql/stream", params=params) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        await _views(http, server, sid, 30)
        count = -1
        lines = response.aiter_lines()
        while count < 30:
            line = await asyncio.wait_for(lines.__anext__(), 5)
            if line.startswith("data: "):
                count = json.loads(line[6:])["data"]["viewCount"]["viewCount"]
        assert count == 30
    bad = await http.get(server.url + "/graphql/stream", params={"query": "subscription { nope }"})
    assert bad.status_code == 400


async def test_identical_subscriptions_share_one_stream_with_their_own_ids(
    server: Server, tokens: Tokens, http: httpx.AsyncClient
) -> None:
    sid = await _statement(http, server, tokens)
    before = (await http.get(server.url + "/debug/live")).json()
    async with _connect(server) as a, _connect(server) as b, _connect(server) as c:
        clients = [WsClient(a), WsClient(b), WsClient(c)]
        for i, client in enumerate(clients):
            await client.init()
            await client.subscribe(f"op-{i}", COUNT, {"id": sid})
            assert (await client.recv())["id"] == f"op-{i}"
        # A different selection is another stream.
        await clients[0].subscribe("other", COUNT.replace(" at }", " }"), {"id": sid})
        other = await clients[0].recv()
        assert other["id"] == "other" and "at" not in other["payload"]["data"]["viewCount"]
        during = (await http.get(server.url + "/debug/live")).json()
        assert during["subscribers"] == before["subscribers"] + 2
        await _views(http, server, sid, 40)
        for i, client in enumerate(clients):
            counts: list[int] = []
            while not counts or counts[-1] < 40:
                message = await client.recv()
                if message["id"] == "other":
                    continue
                assert message["id"] == f"op-{i}" and message["type"] == "next", message
                counts.append(message["payload"]["data"]["viewCount"]["viewCount"])
            assert counts == sorted(counts) and counts[-1] == 40
        await clients[1].send({"id": "op-1", "type": "complete"})
        await asyncio.sleep(0.2)
        still = (await http.get(server.url + "/debug/live")).json()
        assert still["subscribers"] == before["subscribers"] + 2  # the others keep it
    deadline = time.monotonic() + 5
    while True:
        after = (await http.get(server.url + "/debug/live")).json()
        if after["subscribers"] == before["subscribers"] or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.1)
    assert after["subscribers"] == before["subscribers"]


def _errors(message: dict[str, Any]) -> list[dict[str, Any]]:
    """The errors of a graphql-transport-ws message that ends a subscription."""
    if message["type"] == "next":
        errors: list[dict[str, Any]] = message["payload"]["errors"]
        return errors
    assert message["type"] == "error", message
    payload: list[dict[str, Any]] = message["payload"]
    return payload


async def test_view_count_takes_the_global_id_and_ends_with_a_code_for_a_bad_one(
    server: Server, tokens: Tokens, http: httpx.AsyncClient
) -> None:
    sid = await _statement(http, server, tokens)
    global_id = base64.b64encode(f"Statement:{sid}".encode()).decode()
    await _views(http, server, sid, 3)
    async with _connect(server) as ws:
        client = WsClient(ws)
        await client.init()
        # The id every query hands out counts the statement's views, as its UUID does.
        await client.subscribe("global", COUNT, {"id": global_id})
        message = await client.recv()
        assert message["payload"]["data"]["viewCount"] == {
            "statementId": sid,
            "viewCount": 3,
            "at": message["payload"]["data"]["viewCount"]["at"],
        }
        await client.send({"id": "global", "type": "complete"})
        cases = [
            ("unknown", str(uuid.uuid4()), "NOT_FOUND"),
            (
                "unknown-global",
                base64.b64encode(f"Statement:{uuid.uuid4()}".encode()).decode(),
                "NOT_FOUND",
            ),
            ("bogus", "bogus", "BAD_USER_INPUT"),
            ("minister", base64.b64encode(b"Minister:sergey-lavrov").decode(), "BAD_USER_INPUT"),
        ]
        for name, value, code in cases:
            await client.subscribe(name, COUNT, {"id": value})
            message = await client.recv()
            assert message["id"] == name
            [error] = _errors(message)
            assert error["extensions"]["code"] == code, message
            assert error["message"].startswith("statementId: "), message
            if message["type"] == "next":
                # The error ended the subscription: nothing but its completion follows.
                assert (await client.recv()) == {"id": name, "type": "complete"}


async def test_a_subscription_failing_at_once_is_not_shared(server: Server) -> None:
    async with _connect(server) as a, _connect(server) as b:
        for ws in (a, b):
            client = WsClient(ws)
            await client.init()
            await client.subscribe("bad", COUNT, {"id": " "})
            message = await client.recv()
            errors = (
                message["payload"]["errors"] if message["type"] == "next" else message["payload"]
            )
            assert errors[0]["extensions"]["code"] == BAD_USER_INPUT, message
