"""WebSockets as strict as HTTP, against a real ``statements serve``: the size cap on messages,
errors with documented codes on every transport, and the handshake's Authorization header."""

from __future__ import annotations

import asyncio
import json
import os
import re
import struct
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets
from websockets.exceptions import ConnectionClosed

from graphql_api import errors
from graphql_api.errors import (
    BAD_REQUEST,
    BAD_USER_INPUT,
    CODES,
    FORBIDDEN,
    GRAPHQL_PARSE_FAILED,
    GRAPHQL_VALIDATION_FAILED,
    QUERY_TOO_COSTLY,
    QUERY_TOO_DEEP,
    TOO_MANY_ALIASES,
    TOO_MANY_FIELDS,
    TOO_MANY_SUBSCRIPTIONS,
    TOO_MANY_TOKENS,
    UNAUTHENTICATED,
)
from graphql_api.security.ratelimit import RATE_LIMITED
from graphql_api.settings import DEFAULT_MAX_REQUEST_BYTES
from graphql_api.transport.ws import DEFAULT_MAX_SUBSCRIPTIONS
from tests.graphql_api.live_support import (
    TRANSPORT_WS,
    Server,
    Tokens,
    live_server,
    make_tokens,
    memory_kib,
    publish,
    statements_serve,
)

LEGACY_WS = "graphql-ws"
PUBLISHED = "subscription { statementPublished { id } }"
TOP = "subscription($n: Int!) { topViewed(first: $n) { rank } }"
AUDIT = "subscription { eventAppended(afterPosition: 0) { position } }"


@dataclass(frozen=True)
class Case:
    """A bad request: its document, variables and operation name, and the code it must get."""

    name: str
    query: str
    code: str
    variables: dict[str, Any] | None = None
    operation_name: str | None = None
    role: str | None = None  # the token sent: None, "editor" or "auditor"
    before_execution: bool = True  # refused before anything runs (graphql-transport-ws: error)


def _aliases(field: str, n: int) -> str:
    return " ".join(f"a{i}: {field}" for i in range(n))


#: Subscriptions for the streaming transports (graphql-transport-ws, graphql-ws, SSE).
SUBSCRIPTION_CASES = (
    Case("syntax", "subscription { topViewed(first: 1) {", GRAPHQL_PARSE_FAILED),
    Case("unknown field", "subscription { topViewed { rank nope } }", GRAPHQL_VALIDATION_FAILED),
    Case("unknown root field", "subscription { nope }", GRAPHQL_VALIDATION_FAILED),
    Case("bad variable", TOP, BAD_USER_INPUT, {"n": "three"}),
    Case("missing variable", TOP, BAD_USER_INPUT, {}),
    Case("page size by variable", TOP, BAD_USER_INPUT, {"n": 500}),
    Case("page size", "subscription { topViewed(first: 500) { rank } }", BAD_USER_INPUT),
    Case("aliases", f"subscription {{ topViewed {{ {_aliases('rank', 31)} }} }}", TOO_MANY_ALIASES),
    Case("tokens", f"subscription {{ topViewed {{ {'rank ' * 2001}}} }}", TOO_MANY_TOKENS),
    Case("fields", f"subscription {{ topViewed {{ {'rank ' * 200}}} }}", TOO_MANY_FIELDS),
    Case("several operations", f"subscription A {PUBLISHED[13:]} subscription B {PUBLISHED[13:]}",
         BAD_REQUEST),
    Case("unknown operation", f"subscription A {PUBLISHED[13:]}", BAD_REQUEST, None, "B"),
    Case("argument", "subscription { topViewed(first: 0) { rank } }", BAD_USER_INPUT,
         before_execution=False),
    Case("anonymous auditor field", AUDIT, UNAUTHENTICATED, before_execution=False),
    Case("editor on an auditor field", AUDIT, FORBIDDEN, role="editor", before_execution=False),
)  # fmt: skip


def _nested(level: str, times: int, leaf: str) -> str:
    return "{ " + level * times + leaf + " } } }" * times + " }"


#: Four levels of statements { nodes { minister: depth 13.
DEEP = _nested("statements { nodes { minister { ", 4, "name")
#: Three nested pages of 100: 100 x 100 x 100 titles.
COSTLY = _nested("statements(first: 100) { nodes { minister { ", 3, "name")

#: Queries for HTTP, which serves no subscriptions.
QUERY_CASES = (
    Case("syntax", "{ statements(first: 1) {", GRAPHQL_PARSE_FAILED),
    Case("unknown field", "{ statements { nope } }", GRAPHQL_VALIDATION_FAILED),
    Case("bad variable", "query($n: Int) { statements(first: $n) { totalCount } }",
         BAD_USER_INPUT, {"n": "three"}),
    Case("page size", "{ statements(first: 500) { totalCount } }", BAD_USER_INPUT),
    Case("aliases", f"{{ statements {{ {_aliases('totalCount', 31)} }} }}", TOO_MANY_ALIASES),
    Case("tokens", f"{{ {'__typename ' * 2001}}}", TOO_MANY_TOKENS),
    Case("fields", f"{{ {'__typename ' * 201}}}", TOO_MANY_FIELDS),
    Case("depth", DEEP, QUERY_TOO_DEEP),
    Case("cost", COSTLY, QUERY_TOO_COSTLY),
    Case("several operations", "query A { __typename } query B { __typename }", BAD_REQUEST),
    Case("unknown operation", "query A { __typename }", BAD_REQUEST, None, "B"),
    Case("anonymous auditor field", "{ logHead { position } }", UNAUTHENTICATED),
    Case("editor on an auditor field", "{ logHead { position } }", FORBIDDEN, role="editor"),
)  # fmt: skip


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, Tokens]]:
    tmp = tmp_path_factory.mktemp("strict")
    url = f"sqlite:///{tmp / 'strict.db'}"
    tokens = make_tokens(url)
    with statements_serve(url, tmp) as server:
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


def _token(tokens: Tokens, role: str | None) -> str | None:
    return None if role is None else getattr(tokens, role)


def _connect(server: Server, protocol: str, headers: dict[str, str] | None = None) -> Any:
    return websockets.connect(
        server.ws_url,
        subprotocols=[protocol],  # type: ignore[list-item]
        additional_headers=headers,
        max_size=None,
    )


async def _recv(ws: Any, timeout: float = 5.0) -> dict[str, Any]:
    """The next message that is not a keep-alive."""
    while True:
        message: dict[str, Any] = json.loads(await asyncio.wait_for(ws.recv(), timeout))
        if message.get("type") not in ("ping", "pong", "ka"):
            return message


async def _init(ws: Any, payload: dict[str, Any] | None = None) -> dict[str, Any]:
    await ws.send(json.dumps({"type": "connection_init", "payload": payload or {}}))
    return await _recv(ws)


def _operation(protocol: str, id: str, case: Case) -> str:
    payload: dict[str, Any] = {"query": case.query, "variables": case.variables}
    if case.operation_name is not None:
        payload["operationName"] = case.operation_name
    kind = "subscribe" if protocol == TRANSPORT_WS else "start"
    return json.dumps({"id": id, "type": kind, "payload": payload})


async def _errors_of(ws: Any, id: str) -> tuple[str, list[dict[str, Any]]]:
    """The first answer for operation ``id`` that carries errors: its type and its errors."""
    while True:
        message = await _recv(ws)
        if message.get("id") != id:
            continue
        kind, payload = message["type"], message.get("payload")
        if kind == "error":
            # graphql-transport-ws sends the list of errors; the legacy protocol one error.
            return kind, payload if isinstance(payload, list) else [payload]
        if kind in ("next", "data") and payload.get("errors"):
            return kind, payload["errors"]
        assert kind not in ("complete",), f"{id} completed without an error"


async def _ws_case(server: Server, protocol: str, case: Case, token: str | None) -> Any:
    async with _connect(server, protocol) as ws:
        ack = await _init(ws, {"authorization": f"Bearer {token}"} if token else None)
        assert ack["type"] == "connection_ack", ack
        await ws.send(_operation(protocol, "1", case))
        kind, found = await _errors_of(ws, "1")
        # The connection is still open and serves the next operation.
        await ws.send(_operation(protocol, "2", Case("fine", TOP, "", {"n": 1})))
        while (message := await _recv(ws))["id"] != "2":
            pass
        assert message["type"] in ("next", "data") and "errors" not in message["payload"]
        return kind, found


async def _sse_case(
    http: httpx.AsyncClient, server: Server, case: Case, token: str | None
) -> list[dict[str, Any]]:
    body: dict[str, Any] = {"query": case.query, "variables": case.variables}
    if case.operation_name is not None:
        body["operationName"] = case.operation_name
    headers = {
        "accept": "text/event-stream",
        **({"authorization": f"Bearer {token}"} if token else {}),
    }
    async with http.stream(
        "POST", server.url + "/graphql/stream", json=body, headers=headers
    ) as response:
        if response.status_code != 200:
            assert response.status_code == 400, response.status_code
            found: list[dict[str, Any]] = json.loads(await response.aread())["errors"]
            return found
        async for line in response.aiter_lines():
            if line.startswith("data: "):
                found = json.loads(line[6:])["errors"]
                return found
    raise AssertionError(f"no errors for {case.name} over SSE")


def _check(errors_found: list[dict[str, Any]], case: Case, transport: str) -> None:
    assert errors_found, f"{case.name} over {transport}: no errors"
    codes = [e.get("extensions", {}).get("code") for e in errors_found]
    assert all(code in CODES for code in codes), (case.name, transport, errors_found)
    assert codes[0] == case.code, (case.name, transport, errors_found)


async def test_every_error_on_every_transport_has_a_documented_code(
    server: Server, tokens: Tokens, http: httpx.AsyncClient
) -> None:
    for case in QUERY_CASES:
        headers = {"authorization": f"Bearer {tokens.editor}"} if case.role else {}
        body = {"query": case.query, "variables": case.variables}
        if case.operation_name:
            body["operationName"] = case.operation_name
        response = await http.post(server.url + "/graphql", json=body, headers=headers)
        _check(response.json()["errors"], case, "HTTP")
    for case in SUBSCRIPTION_CASES:
        token = _token(tokens, case.role)
        for protocol in (TRANSPORT_WS, LEGACY_WS):
            kind, found = await _ws_case(server, protocol, case, token)
            _check(found, case, protocol)
            if protocol == TRANSPORT_WS:
                # Refused before it ran: an `error` message, as graphql-transport-ws says.
                assert (kind == "error") == case.before_execution, (case.name, kind)
        _check(await _sse_case(http, server, case, token), case, "SSE")

    # A token that is not valid: 401 over HTTP and SSE, connection_error over graphql-ws
    # (graphql-transport-ws closes with 4403; see the auth tests below).
    bad = Case("bad token", PUBLISHED, UNAUTHENTICATED)
    for path in ("/graphql", "/graphql/stream"):
        response = await http.post(
            server.url + path,
            json={"query": "{ __typename }" if path == "/graphql" else PUBLISHED},
            headers={"authorization": "Bearer st_not-a-token"},
        )
        assert response.status_code == 401
        _check(response.json()["errors"], bad, path)
    async with _connect(server, LEGACY_WS) as ws:
        refused = await _init(ws, {"authorization": "Bearer st_not-a-token"})
        assert refused["type"] == "connection_error"
        _check([refused["payload"]], bad, LEGACY_WS)

    # Nothing of the above was a bug: the server logged no traceback.
    assert "Traceback" not in server.log.read_text()


@pytest.mark.parametrize("protocol", [TRANSPORT_WS, LEGACY_WS])
async def test_the_subscription_limit_has_a_code(server: Server, protocol: str) -> None:
    kind = "subscribe" if protocol == TRANSPORT_WS else "start"
    async with _connect(server, protocol) as ws:
        assert (await _init(ws))["type"] == "connection_ack"
        for i in range(DEFAULT_MAX_SUBSCRIPTIONS + 1):
            payload = {"query": PUBLISHED}
            await ws.send(json.dumps({"id": str(i), "type": kind, "payload": payload}))
        message = await _recv(ws)
        assert message["type"] == "error" and message["id"] == str(DEFAULT_MAX_SUBSCRIPTIONS)
        payload = message["payload"]
        error = payload[0] if isinstance(payload, list) else payload
        assert error["extensions"]["code"] == TOO_MANY_SUBSCRIPTIONS
        assert "complete one first" in error["message"]


def test_the_table_of_codes_is_the_documented_one() -> None:
    documented = set(re.findall(r"``([A-Z][A-Z_]+)``", errors.__doc__ or ""))
    assert documented == CODES
    assert RATE_LIMITED in CODES


# --- malformed messages --------------------------------------------------------------------


@pytest.mark.parametrize("protocol", [TRANSPORT_WS, LEGACY_WS])
async def test_a_malformed_message_closes_with_4400_saying_what_is_wrong(
    server: Server, protocol: str
) -> None:
    kind = "subscribe" if protocol == TRANSPORT_WS else "start"
    for message, reason in (
        ([1, 2], "a message must be a JSON object"),
        ({"type": kind, "payload": {"query": PUBLISHED}}, f"{kind} id: must be a non-empty string"),
        ({"id": "1", "type": kind, "payload": "x"}, f"{kind} payload: must be an object"),
        ({"id": "1", "type": kind, "payload": {"query": 5}}, "payload.query: must be a string"),
        (
            {"id": "1", "type": kind, "payload": {"query": PUBLISHED, "variables": [1]}},
            "payload.variables: must be an object",
        ),
    ):
        async with _connect(server, protocol) as ws:
            await _init(ws)
            await ws.send(json.dumps(message))
            with pytest.raises(ConnectionClosed):
                await _recv(ws)
            assert ws.close_code == 4400 and reason in ws.close_reason, (message, ws.close_reason)
    assert "Traceback" not in server.log.read_text()


# --- auth ----------------------------------------------------------------------------------


async def _auditor_stream_works(ws: Any, protocol: str) -> None:
    kind = "subscribe" if protocol == TRANSPORT_WS else "start"
    await ws.send(json.dumps({"id": "a", "type": kind, "payload": {"query": AUDIT}}))
    message = await _recv(ws)
    assert message["type"] in ("next", "data"), message
    assert message["payload"]["data"]["eventAppended"]["position"] >= 1, message


@pytest.mark.parametrize("protocol", [TRANSPORT_WS, LEGACY_WS])
async def test_the_handshake_authorization_header_is_accepted(
    server: Server, tokens: Tokens, http: httpx.AsyncClient, protocol: str
) -> None:
    # An event in the log, for the auditor's stream to start with.
    await publish(http, server.url, tokens.editor, f"Header {time.time_ns()}")
    bearer = {"Authorization": f"Bearer {tokens.auditor}"}
    async with _connect(server, protocol, bearer) as ws:
        assert (await _init(ws))["type"] == "connection_ack"
        await _auditor_stream_works(ws, protocol)
    # The same token in both places is no conflict.
    async with _connect(server, protocol, bearer) as ws:
        assert (await _init(ws, {"token": tokens.auditor}))["type"] == "connection_ack"
        await _auditor_stream_works(ws, protocol)


async def _refusal(ws: Any, payload: dict[str, Any] | None, protocol: str) -> str:
    """Send ``connection_init``, check that it is refused, and say why it was.

    graphql-transport-ws closes with 4403 and the reason; the legacy protocol sends
    ``connection_error`` with the message and a code, then closes.
    """
    await ws.send(json.dumps({"type": "connection_init", "payload": payload or {}}))
    if protocol == LEGACY_WS:
        message = await _recv(ws)
        assert message["type"] == "connection_error", message
        error: dict[str, Any] = message["payload"]
        assert error["extensions"]["code"] == UNAUTHENTICATED
        with pytest.raises(ConnectionClosed):
            await _recv(ws)
        return str(error["message"])
    with pytest.raises(ConnectionClosed):
        await _recv(ws)
    assert ws.close_code == 4403
    return str(ws.close_reason)


@pytest.mark.parametrize("protocol", [TRANSPORT_WS, LEGACY_WS])
async def test_a_bad_or_conflicting_header_is_refused_and_says_why(
    server: Server, tokens: Tokens, protocol: str
) -> None:
    for header, payload, why in (
        ("Bearer st_not-a-token", None, "The token is not valid"),
        ("Basic abc", None, "Authorization header: must be 'Bearer <token>'"),
        ("Bearer ", None, "Authorization header: must be 'Bearer <token>'"),
        # Refused, not picked from: the client may not expect the identity either one gives.
        (
            f"Bearer {tokens.auditor}",
            {"authorization": f"Bearer {tokens.editor}"},
            "differs from the token in the connection_init payload",
        ),
        # The header is checked even when the payload's token is a good one.
        ("Bearer st_not-a-token", {"token": tokens.auditor}, "differs from the token"),
    ):
        async with _connect(server, protocol, {"Authorization": header}) as ws:
            reason = await _refusal(ws, payload, protocol)
            assert why in reason, (header, payload, reason)
    # As before, a bad token in the payload alone is refused the same way.
    async with _connect(server, protocol) as ws:
        assert "The token is not valid" in await _refusal(ws, {"token": "st_nope"}, protocol)


# --- the size cap --------------------------------------------------------------------------


def _frame_header(length: int) -> bytes:
    """A masked client text frame's header announcing ``length`` bytes of payload."""
    return bytes([0x81, 0x80 | 127]) + struct.pack("!Q", length) + os.urandom(4)


async def test_a_frame_over_the_cap_is_refused_from_its_header(server: Server) -> None:
    async with _connect(server, TRANSPORT_WS) as ws:
        # The client offered permessage-deflate and was declined: a compressed frame's header
        # would not tell the message's size.
        assert ws.response.headers.get("Sec-WebSocket-Extensions") is None
        # Only the header and a little payload: the server must answer before the rest.
        ws.transport.write(_frame_header(15_000_000) + b"x" * 1000)
        with pytest.raises(ConnectionClosed):
            await _recv(ws)
        assert ws.close_code == 1009


async def test_a_message_within_the_cap_is_served(server: Server) -> None:
    async with _connect(server, TRANSPORT_WS) as ws:
        padding = "x" * (DEFAULT_MAX_REQUEST_BYTES - 1000)
        assert (await _init(ws, {"padding": padding}))["type"] == "connection_ack"


async def _oversized_init(server: Server, size: int) -> int | None:
    """Send a ``connection_init`` of ``size`` bytes; the close code (None: acknowledged)."""
    message = json.dumps({"type": "connection_init", "payload": {"padding": "x" * size}})
    async with _connect(server, TRANSPORT_WS) as ws:
        try:
            await asyncio.wait_for(ws.send(message), 30)
            await _recv(ws, timeout=30)
        except ConnectionClosed:
            # 1009, or 1006 when the server's reset (it stopped reading) beat its close frame.
            return int(ws.close_code or 1006)
        return None


async def test_oversized_messages_leave_memory_flat_and_the_server_serving(
    server: Server, http: httpx.AsyncClient
) -> None:
    pid = server.process.pid
    assert await _oversized_init(server, 15_000_000) in (1009, 1006)  # warm-up
    before = memory_kib(pid)
    for _ in range(3):
        # Eight at once, each 15 MB: accepted, they took the server to 403 MB.
        codes = await asyncio.gather(*(_oversized_init(server, 15_000_000) for _ in range(8)))
        assert all(code in (1009, 1006) for code in codes), codes
    after = memory_kib(pid)
    # A fraction of one such message, at the peak and now; inflating each compressed one up
    # to the cap, and keeping that until a full garbage collection, was a cap's worth each.
    assert after["VmHWM"] - before["VmHWM"] < 8 * 1024, (before, after)
    assert after["VmRSS"] - before["VmRSS"] < 8 * 1024, (before, after)
    # It still serves, both ways.
    async with _connect(server, TRANSPORT_WS) as ws:
        assert (await _init(ws))["type"] == "connection_ack"
        await ws.send(_operation(TRANSPORT_WS, "1", Case("fine", TOP, "", {"n": 1})))
        assert (await _recv(ws))["type"] == "next"
    response = await http.post(server.url + "/graphql", json={"query": "{ __typename }"})
    assert response.json() == {"data": {"__typename": "Query"}}


def test_the_app_caps_messages_under_any_server(tmp_path: Path) -> None:
    """Under a server that takes 16 MiB messages (uvicorn's default, as live_server runs it),
    the app refuses one over the cap itself; the same setting caps HTTP bodies."""
    url = f"sqlite:///{tmp_path / 'cap.db'}"
    make_tokens(url)
    cap = 20_000
    with live_server(url, tmp_path, env={"STATEMENTS_MAX_REQUEST_BYTES": str(cap)}) as live:

        async def scenario() -> None:
            async with _connect(live, TRANSPORT_WS) as ws:
                assert (await _init(ws, {"padding": "x" * (cap - 100)}))["type"] == (
                    "connection_ack"
                )
                await ws.send(_operation(TRANSPORT_WS, "1", Case("big", "x" * cap, "")))
                with pytest.raises(ConnectionClosed):
                    await _recv(ws)
                assert (ws.close_code, ws.close_reason) == (1009, "message too big")
            # Characters of several bytes count as their UTF-8 bytes.
            async with _connect(live, LEGACY_WS) as ws:
                with pytest.raises(ConnectionClosed):
                    await _init(ws, {"padding": "é" * (cap // 2 + 10)})
                assert ws.close_code == 1009
            async with httpx.AsyncClient(timeout=10) as client:
                for path in ("/graphql", "/graphql/stream"):
                    body = {"query": PUBLISHED, "variables": {"padding": "x" * cap}}
                    response = await client.post(live.url + path, json=body)
                    assert response.status_code == 413, path
                    assert response.json()["errors"][0]["extensions"]["code"] == BAD_REQUEST

        asyncio.run(scenario())
        assert "Traceback" not in live.log.read_text()


@pytest.mark.postgres
def test_on_postgresql_too(pg_schema: tuple[str, str], tmp_path: Path) -> None:
    """The same server on PostgreSQL: the header authenticates, a coded error keeps the
    connection, and an oversized frame is refused from its header."""
    url, schema = pg_schema
    tokens = make_tokens(url, schema)
    with statements_serve(url, tmp_path, env={"STATEMENTS_DATABASE_SCHEMA": schema}) as pg:

        async def scenario() -> None:
            async with httpx.AsyncClient(timeout=10) as http:
                await publish(http, pg.url, tokens.editor, "On PostgreSQL")
            bearer = {"Authorization": f"Bearer {tokens.auditor}"}
            async with _connect(pg, TRANSPORT_WS, bearer) as ws:
                assert (await _init(ws))["type"] == "connection_ack"
                await ws.send(_operation(TRANSPORT_WS, "1", SUBSCRIPTION_CASES[0]))
                kind, found = await _errors_of(ws, "1")
                assert kind == "error" and found[0]["extensions"]["code"] == GRAPHQL_PARSE_FAILED
                await _auditor_stream_works(ws, TRANSPORT_WS)
            async with _connect(pg, LEGACY_WS, {"Authorization": "Bearer st_nope"}) as ws:
                assert "The token is not valid" in await _refusal(ws, None, LEGACY_WS)
            async with _connect(pg, TRANSPORT_WS) as ws:
                ws.transport.write(_frame_header(15_000_000))
                with pytest.raises(ConnectionClosed):
                    await _recv(ws)
                assert ws.close_code == 1009

        asyncio.run(scenario())
        assert "Traceback" not in pg.log.read_text()
