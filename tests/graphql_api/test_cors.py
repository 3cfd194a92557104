"""CORS (``STATEMENTS_CORS_ORIGINS``) through ``create_app``: preflights and actual requests from
listed and other origins, and the CSRF rule that still holds for every other origin."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from graphql_api.app import create_app
from graphql_api.settings import Settings
from graphql_api.transport.cors import ALLOWED_HEADERS
from graphql_api.transport.http import csrf_refused

LISTED = "https://app.example.com"
OTHER = "https://evil.example"
QUERY = "{ statements(first: 1) { totalCount } }"


def _client(app: object) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api.test")  # type: ignore[arg-type]


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'app.db'}", cors_origins=(LISTED,))
    app = create_app(settings)
    async with app.router.lifespan_context(app), _client(app) as client:
        # Queries need the read models' tables, which the projections make just after start.
        for _ in range(200):
            if (await client.get("/readyz")).status_code == 200:
                break
            await asyncio.sleep(0.05)
        yield client


def _preflight(origin: str, headers: str = "content-type") -> dict[str, str]:
    return {
        "origin": origin,
        "access-control-request-method": "POST",
        "access-control-request-headers": headers,
    }


# --- the setting ---------------------------------------------------------------------------


def test_origins_are_read_as_browsers_send_them() -> None:
    read = Settings.from_env(
        {
            "STATEMENTS_CORS_ORIGINS": " https://App.Example.com/ ,http://127.0.0.1:8080,"
            "https://app.example.com:443,http://[::1]:3000,,"
        }
    )
    assert read.cors_origins == (
        "https://app.example.com",
        "http://127.0.0.1:8080",
        "http://[::1]:3000",
    )
    assert Settings.from_env({}).cors_origins == ()
    assert Settings.from_env({"STATEMENTS_CORS_ORIGINS": " "}).cors_origins == ()


@pytest.mark.parametrize(
    "bad",
    ["*", "null", "app.example.com", "https://a.example/app", "ftp://a.example",
     "https://a.example:99999", "https://user@a.example", "https://a.example?x=1"],
)  # fmt: skip
def test_what_is_not_an_origin_is_refused_by_name(bad: str) -> None:
    with pytest.raises(ValueError, match=r"^STATEMENTS_CORS_ORIGINS: .* is not an origin"):
        Settings.from_env({"STATEMENTS_CORS_ORIGINS": f"https://ok.example,{bad}"})


# --- preflights ----------------------------------------------------------------------------


async def test_without_origins_there_is_no_cors(tmp_path: Path) -> None:
    app = create_app(Settings(database_url=f"sqlite:///{tmp_path / 'app.db'}"))
    async with _client(app) as client:
        response = await client.options("/graphql", headers=_preflight(LISTED))
    assert response.status_code == 405
    assert not [name for name in response.headers if name.startswith("access-control-")]


async def test_a_listed_origin_gets_its_preflight_answered(tmp_path: Path) -> None:
    app = create_app(
        Settings(database_url=f"sqlite:///{tmp_path / 'app.db'}", cors_origins=(LISTED,))
    )
    requested = (
        "content-type, authorization, graphql-require-preflight, x-request-id, x-min-position"
    )
    async with _client(app) as client:
        for path in ("/graphql", "/graphql/stream"):
            response = await client.options(path, headers=_preflight(LISTED, requested))
            assert response.status_code == 200, response.text
            assert response.headers["access-control-allow-origin"] == LISTED
            assert {"GET", "POST"} <= {
                m.strip() for m in response.headers["access-control-allow-methods"].split(",")
            }
            allowed = {
                h.strip().lower()
                for h in response.headers["access-control-allow-headers"].split(",")
            }
            assert {h.strip() for h in requested.split(",")} <= allowed
            assert set(ALLOWED_HEADERS) <= allowed
            # Bearer tokens, no cookies: browsers must not send credentials along.
            assert "access-control-allow-credentials" not in response.headers
            assert "origin" in response.headers["vary"].lower()


async def test_other_origins_and_other_headers_are_refused(tmp_path: Path) -> None:
    app = create_app(
        Settings(database_url=f"sqlite:///{tmp_path / 'app.db'}", cors_origins=(LISTED,))
    )
    async with _client(app) as client:
        for headers in (
            _preflight(OTHER),
            _preflight("http://app.example.com"),  # another scheme is another origin
            _preflight(LISTED, "content-type, x-not-allowed"),
            {**_preflight(LISTED), "access-control-request-method": "DELETE"},
        ):
            response = await client.options("/graphql", headers=headers)
            assert response.status_code == 400, headers
            if headers["origin"] != LISTED:
                assert "access-control-allow-origin" not in response.headers


# --- actual requests -----------------------------------------------------------------------


async def test_responses_are_shared_with_listed_origins_only(client: httpx.AsyncClient) -> None:
    listed = await client.post(
        "/graphql", json={"query": QUERY}, headers={"origin": LISTED, "x-request-id": "abc-1"}
    )
    assert listed.status_code == 200 and listed.json() == {
        "data": {"statements": {"totalCount": 0}}
    }
    assert listed.headers["access-control-allow-origin"] == LISTED
    exposed = {
        h.strip().lower() for h in listed.headers["access-control-expose-headers"].split(",")
    }
    assert "x-request-id" in exposed and listed.headers["x-request-id"] == "abc-1"
    assert "access-control-allow-credentials" not in listed.headers

    # The server answers (JSON POSTs are not simple requests, so a browser would have been
    # stopped by the preflight), but nothing lets a browser share the answer with the page.
    other = await client.post("/graphql", json={"query": QUERY}, headers={"origin": OTHER})
    assert other.status_code == 200
    assert "access-control-allow-origin" not in other.headers


@pytest.mark.parametrize("site", ["cross-site", "same-site"])
async def test_the_csrf_rule_trusts_listed_origins_only(
    client: httpx.AsyncClient, site: str
) -> None:
    params = {"query": QUERY}
    listed = await client.get(
        "/graphql", params=params, headers={"origin": LISTED, "sec-fetch-site": site}
    )
    assert listed.status_code == 200, listed.text
    assert listed.headers["access-control-allow-origin"] == LISTED
    other = await client.get(
        "/graphql", params=params, headers={"origin": OTHER, "sec-fetch-site": site}
    )
    assert other.status_code == 400
    assert "cross-site request forgery" in other.json()["errors"][0]["message"]
    # A simple POST stays refused whatever its origin: only JSON is read.
    simple = await client.post(
        "/graphql",
        content=b'{"query": "{ __typename }"}',
        headers={"origin": LISTED, "content-type": "text/plain"},
    )
    assert simple.status_code == 400


def test_csrf_refused_with_trusted_origins() -> None:
    trusted = frozenset({LISTED})
    cross = {"origin": LISTED, "sec-fetch-site": "cross-site"}
    assert not csrf_refused("GET", cross, strict=False, trusted_origins=trusted)
    assert csrf_refused("GET", cross, strict=False)
    # Apollo's strict rule asks every GET for a preflight header, same-origin ones included.
    assert csrf_refused("GET", cross, strict=True, trusted_origins=trusted)
    assert csrf_refused("GET", {**cross, "origin": OTHER}, strict=False, trusted_origins=trusted)
    assert csrf_refused(
        "POST", {**cross, "content-type": "text/plain"}, strict=False, trusted_origins=trusted
    )
