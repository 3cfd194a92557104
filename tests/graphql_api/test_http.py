"""GraphQL over HTTP: media types, status codes, GET and POST, CSRF, body limit, batching."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from domain.handlers import StatementHandlers
from graphql_api.transport.http import GRAPHQL_RESPONSE_JSON, JSON, negotiate
from tests.graphql_api.support import make_app

GQL = GRAPHQL_RESPONSE_JSON
POST_JSON = {"content-type": "application/json"}


async def post(
    client: httpx.AsyncClient, body: Any, accept: str | None = None, **headers: str
) -> httpx.Response:
    all_headers = {**POST_JSON, **headers}
    if accept is not None:
        all_headers["accept"] = accept
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return await client.post("/graphql", content=content, headers=all_headers)


def media(response: httpx.Response) -> str:
    return response.headers["content-type"].split(";")[0]


# --- negotiation ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("accept", "expected"),
    [
        (None, JSON),
        ("", JSON),
        ("*/*", JSON),
        ("application/*", JSON),
        (JSON, JSON),
        (GQL, GQL),
        (f"{GQL}, {JSON}", GQL),
        (f"{JSON}, {GQL}", JSON),
        (f"{JSON};q=0.9, {GQL}", GQL),
        (f"{GQL};q=0.5, */*", JSON),
        (f"*/*;q=0.8, {GQL}", GQL),
        ("text/html", None),
        (f"{GQL};q=0", None),
        (f"text/html, {JSON};q=0.1", JSON),
        ("application/json; charset=utf-8", JSON),
    ],
)
def test_negotiation(accept: str | None, expected: str | None) -> None:
    assert negotiate(accept) == expected


async def test_graphql_response_json_is_served_when_preferred(client: httpx.AsyncClient) -> None:
    response = await post(client, {"query": "{ hello }"}, accept=GQL)
    assert response.status_code == 200
    assert media(response) == GQL
    assert response.headers["content-type"].endswith("charset=utf-8")
    assert response.json() == {"data": {"hello": "hello world"}}


async def test_json_is_the_default(client: httpx.AsyncClient) -> None:
    response = await post(client, {"query": "{ hello }"})
    assert response.status_code == 200
    assert media(response) == JSON


async def test_unacceptable_accept_gets_406(client: httpx.AsyncClient) -> None:
    response = await post(client, {"query": "{ hello }"}, accept="text/csv")
    assert response.status_code == 406
    assert response.json()["errors"][0]["extensions"]["code"] == "BAD_REQUEST"


# --- request errors: 200 with application/json, 400 without data with graphql-response+json ---

REQUEST_ERRORS = [
    ({"query": "{"}, "GRAPHQL_PARSE_FAILED"),
    ({"query": "{ nope }"}, "GRAPHQL_VALIDATION_FAILED"),
    (
        {"query": "query Q($n: String!) { hello(name: $n) }", "variables": {"n": None}},
        "BAD_USER_INPUT",
    ),
    (
        {"query": "query Q($n: String!) { hello(name: $n) }", "variables": {"n": 3}},
        "BAD_USER_INPUT",
    ),
    ({"query": "query A { hello } query B { hello }"}, "BAD_REQUEST"),
    ({"query": "query A { hello }", "operationName": "Nope"}, "BAD_REQUEST"),
]


@pytest.mark.parametrize(("body", "code"), REQUEST_ERRORS)
async def test_request_errors_with_graphql_response_json(
    client: httpx.AsyncClient, body: dict[str, Any], code: str
) -> None:
    response = await post(client, body, accept=GQL)
    assert response.status_code == 400
    assert media(response) == GQL
    payload = response.json()
    assert "data" not in payload
    assert payload["errors"][0]["extensions"]["code"] == code


@pytest.mark.parametrize(("body", "code"), REQUEST_ERRORS)
async def test_request_errors_with_json(
    client: httpx.AsyncClient, body: dict[str, Any], code: str
) -> None:
    response = await post(client, body, accept=JSON)
    assert response.status_code == 200
    payload = response.json()
    assert "data" not in payload
    assert payload["errors"][0]["extensions"]["code"] == code


async def test_field_errors_keep_data_and_200(client: httpx.AsyncClient) -> None:
    response = await post(client, {"query": "{ hello missing }"}, accept=GQL)
    assert response.status_code == 200
    payload = response.json()
    assert payload["data"] is None  # missing is non-null, so null propagates to the root
    assert payload["errors"][0]["extensions"]["code"] == "NOT_FOUND"


@pytest.mark.parametrize(
    "body",
    [
        b"{ not json",
        b"",
        b'"a string"',
        b"42",
        b'{"qeury": "{ hello }"}',
        b'{"query": 1}',
        b'{"query": "{ hello }", "variables": "x"}',
        b'{"query": "{ hello }", "variables": [1]}',
        b'{"query": "{ hello }", "operationName": false}',
        b'{"query": "{ hello }", "extensions": 0}',
        b'{"query": ""}',
    ],
)
async def test_malformed_requests_get_400(client: httpx.AsyncClient, body: bytes) -> None:
    for accept in (JSON, GQL):
        response = await post(client, body, accept=accept)
        assert response.status_code == 400, body
        assert response.json()["errors"][0]["extensions"]["code"] == "BAD_REQUEST"


async def test_null_parameters_are_allowed(client: httpx.AsyncClient) -> None:
    body = {"query": "{ hello }", "variables": None, "operationName": None, "extensions": None}
    response = await post(client, body, accept=GQL)
    assert response.status_code == 200
    assert response.json() == {"data": {"hello": "hello world"}}


async def test_batching_is_refused(client: httpx.AsyncClient) -> None:
    response = await post(client, [{"query": "{ hello }"}, {"query": "{ hello }"}])
    assert response.status_code == 400
    assert "Batching" in response.json()["errors"][0]["message"]


async def test_other_methods_get_405(client: httpx.AsyncClient) -> None:
    for method in ("PUT", "DELETE", "PATCH"):
        response = await client.request(method, "/graphql")
        assert response.status_code == 405
        assert response.headers["allow"] == "GET, POST"


# --- GET -----------------------------------------------------------------------------------


async def test_get_runs_queries(client: httpx.AsyncClient) -> None:
    response = await client.get(
        "/graphql",
        params={
            "query": "query Q($n: String!) { hello(name: $n) }",
            "variables": json.dumps({"n": "GET"}),
        },
    )
    assert response.status_code == 200
    assert response.json() == {"data": {"hello": "hello GET"}}


async def test_get_refuses_mutations_with_405(client: httpx.AsyncClient) -> None:
    query = 'mutation { recordView(input: {statementId: "x"}) { position } }'
    for accept in (JSON, GQL):
        response = await client.get("/graphql", params={"query": query}, headers={"accept": accept})
        assert response.status_code == 405
        assert response.headers["allow"] == "POST"
        assert "POST" in response.json()["errors"][0]["message"]


@pytest.mark.parametrize("param", ["variables", "extensions"])
async def test_get_with_bad_json_parameters(client: httpx.AsyncClient, param: str) -> None:
    for value in ("{nope", "[1]"):
        response = await client.get("/graphql", params={"query": "{ hello }", param: value})
        assert response.status_code == 400


async def test_graphiql_for_browsers(client: httpx.AsyncClient) -> None:
    response = await client.get("/graphql", headers={"accept": "text/html,*/*;q=0.8"})
    assert response.status_code == 200
    assert "graphiql" in response.text.lower()


async def test_no_graphiql_in_production(handlers: StatementHandlers) -> None:
    app = make_app(handlers, production=True)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app.app), base_url="http://testserver"
    ) as client:
        response = await client.get("/graphql", headers={"accept": "text/html,*/*;q=0.8"})
    assert response.status_code == 400
    assert "graphiql" not in response.text.lower()


# --- CSRF ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "content_type", ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data", None]
)
async def test_simple_posts_are_refused(
    client: httpx.AsyncClient, content_type: str | None
) -> None:
    headers = {"content-type": content_type} if content_type else {}
    response = await client.post("/graphql", content=b'{"query": "{ hello }"}', headers=headers)
    assert response.status_code == 400
    assert "cross-site request forgery" in response.json()["errors"][0]["message"]


async def test_simple_post_with_preflight_header_is_still_not_json(
    client: httpx.AsyncClient,
) -> None:
    response = await client.post(
        "/graphql",
        content=b'{"query": "{ hello }"}',
        headers={"content-type": "text/plain", "graphql-require-preflight": "1"},
    )
    assert response.status_code == 415


async def test_other_content_types_get_415(client: httpx.AsyncClient) -> None:
    for content_type in (
        "application/xml",
        "application/json; charset=latin-1",
        "application/graphql",
    ):
        response = await client.post(
            "/graphql", content=b"{}", headers={"content-type": content_type}
        )
        assert response.status_code == 415, content_type


@pytest.mark.parametrize(
    "headers",
    [
        {"sec-fetch-site": "cross-site"},
        {"sec-fetch-site": "same-site"},
        {"origin": "https://evil.example"},
        {"origin": "null"},
    ],
)
async def test_cross_origin_browser_gets_are_refused(
    client: httpx.AsyncClient, headers: dict[str, str]
) -> None:
    response = await client.get("/graphql", params={"query": "{ hello }"}, headers=headers)
    assert response.status_code == 400
    with_header = await client.get(
        "/graphql", params={"query": "{ hello }"}, headers={**headers, "x-graphql-csrf": "1"}
    )
    assert with_header.status_code == 200


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"sec-fetch-site": "same-origin"},
        {"sec-fetch-site": "none"},
        {"origin": "http://testserver"},
    ],
)
async def test_same_origin_and_non_browser_gets_pass(
    client: httpx.AsyncClient, headers: dict[str, str]
) -> None:
    response = await client.get("/graphql", params={"query": "{ hello }"}, headers=headers)
    assert response.status_code == 200


async def test_strict_csrf_refuses_every_get_without_header(handlers: StatementHandlers) -> None:
    app = make_app(handlers, strict_csrf=True)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app.app), base_url="http://testserver"
    ) as client:
        refused = await client.get("/graphql", params={"query": "{ hello }"})
        allowed = await client.get(
            "/graphql", params={"query": "{ hello }"}, headers={"apollo-require-preflight": "1"}
        )
    assert refused.status_code == 400
    assert allowed.status_code == 200


# --- body limit, request id ----------------------------------------------------------------


async def test_body_limit(handlers: StatementHandlers) -> None:
    app = make_app(handlers, max_body_bytes=1_000)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app.app), base_url="http://testserver"
    ) as client:
        big = json.dumps({"query": "{ hello }", "variables": {"x": "a" * 2_000}}).encode()
        response = await post(client, big)
        assert response.status_code == 413
        assert response.json()["errors"][0]["message"].startswith("The request body is larger")

        async def chunks() -> Any:  # no content-length: the limit applies while reading
            for _ in range(4):
                yield b" " * 400

        streamed = await client.post("/graphql", content=chunks(), headers=POST_JSON)
        assert streamed.status_code == 413
        small = await post(client, {"query": "{ hello }"})
        assert small.status_code == 200


async def test_request_id_is_echoed_and_used(client: httpx.AsyncClient) -> None:
    response = await post(client, {"query": "{ requestId }"}, **{"x-request-id": "abc-123"})
    assert response.headers["x-request-id"] == "abc-123"
    assert response.json()["data"]["requestId"] == "abc-123"
    generated = await post(client, {"query": "{ requestId }"}, **{"x-request-id": "bad id!"})
    assert generated.headers["x-request-id"] != "bad id!"
    assert generated.json()["data"]["requestId"] == generated.headers["x-request-id"]


# --- production -----------------------------------------------------------------------------


async def test_production_hides_introspection_and_suggestions(handlers: StatementHandlers) -> None:
    app = make_app(handlers, production=True)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app.app), base_url="http://testserver"
    ) as client:
        introspection = await post(client, {"query": "{ __schema { types { name } } }"})
        typo = await post(client, {"query": "{ helo }"})
        typename = await post(client, {"query": "{ __typename }"})
    assert introspection.json()["errors"][0]["extensions"]["code"] == "GRAPHQL_VALIDATION_FAILED"
    assert "introspection" in introspection.json()["errors"][0]["message"]
    message = typo.json()["errors"][0]["message"]
    assert "Did you mean" not in message
    assert "hello" not in message
    assert typename.json() == {"data": {"__typename": "Query"}}


async def test_development_keeps_suggestions(client: httpx.AsyncClient) -> None:
    typo = await post(client, {"query": "{ helo }"})
    assert "Did you mean" in typo.json()["errors"][0]["message"]
    introspection = await post(client, {"query": "{ __schema { queryType { name } } }"})
    assert introspection.json() == {"data": {"__schema": {"queryType": {"name": "Query"}}}}


# --- error masking --------------------------------------------------------------------------


async def test_unexpected_errors_are_masked(
    client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    response = await post(client, {"query": "{ boom }"}, accept=GQL)
    assert response.status_code == 200
    payload = response.json()
    assert payload["data"] is None
    [error] = payload["errors"]
    assert error["message"] == "Internal server error"
    assert error["extensions"] == {"code": "INTERNAL_SERVER_ERROR"}
    assert "hunter2" not in response.text and "Traceback" not in response.text
    logged = [r for r in caplog.records if r.name == "graphql_api"]
    assert logged and logged[0].exc_info is not None
    assert "hunter2" in str(logged[0].exc_info[1])


async def test_store_unavailable_is_retryable(client: httpx.AsyncClient) -> None:
    response = await post(client, {"query": "{ unavailable }"})
    [error] = response.json()["errors"]
    assert error["extensions"] == {"code": "SERVICE_UNAVAILABLE", "retryable": True}
    # A fixed message naming the kind of fault, never the driver's own text.
    assert error["message"] == "The database is locked by another writer; retry the request"
