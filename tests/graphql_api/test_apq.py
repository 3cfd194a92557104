"""Automatic persisted queries over POST and GET, and the production allow-list."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from domain.handlers import StatementHandlers
from graphql_api.transport.apq import (
    AllowList,
    PersistedQueries,
    PersistedQueryError,
    document_hash,
    persisted_queries,
)
from tests.graphql_api.support import make_app

QUERY = "query Hello { hello }"
SHA = document_hash(QUERY)
GQL = "application/graphql-response+json"


def persisted(sha: str = SHA, version: int = 1) -> dict[str, Any]:
    return {"persistedQuery": {"version": version, "sha256Hash": sha}}


@pytest.fixture
async def apq_client(handlers: StatementHandlers) -> AsyncIterator[httpx.AsyncClient]:
    app = make_app(handlers, persisted_queries=PersistedQueries(max_entries=3))
    transport = httpx.ASGITransport(app=app.app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        yield client


async def post(
    client: httpx.AsyncClient, body: dict[str, Any], accept: str = "application/json"
) -> httpx.Response:
    return await client.post("/graphql", json=body, headers={"accept": accept})


async def test_the_apq_flow(apq_client: httpx.AsyncClient) -> None:
    miss = await post(apq_client, {"extensions": persisted()})
    assert miss.status_code == 200
    assert miss.json() == {
        "errors": [
            {
                "message": "PersistedQueryNotFound",
                "extensions": {"code": "PERSISTED_QUERY_NOT_FOUND"},
            }
        ]
    }
    assert "no-cache" in miss.headers["cache-control"]
    strict_miss = await post(apq_client, {"extensions": persisted()}, accept=GQL)
    assert strict_miss.status_code == 400
    registered = await post(apq_client, {"query": QUERY, "extensions": persisted()})
    assert registered.json() == {"data": {"hello": "hello world"}}
    hit = await post(apq_client, {"extensions": persisted()})
    assert hit.json() == {"data": {"hello": "hello world"}}


async def test_apq_over_get(apq_client: httpx.AsyncClient) -> None:
    query = "query Named($n: String) { hello(name: $n) }"
    sha = document_hash(query)
    params = {"extensions": json.dumps(persisted(sha)), "variables": json.dumps({"n": "get"})}
    miss = await apq_client.get("/graphql", params=params)
    assert miss.json()["errors"][0]["extensions"]["code"] == "PERSISTED_QUERY_NOT_FOUND"
    registered = await apq_client.get("/graphql", params={**params, "query": query})
    assert registered.json() == {"data": {"hello": "hello get"}}
    hit = await apq_client.get("/graphql", params=params)
    assert hit.json() == {"data": {"hello": "hello get"}}


async def test_a_persisted_mutation_is_still_refused_over_get(
    apq_client: httpx.AsyncClient,
) -> None:
    mutation = 'mutation { recordView(input: {statementId: "x"}) { position } }'
    sha = document_hash(mutation)
    await post(apq_client, {"query": mutation, "extensions": persisted(sha)})
    response = await apq_client.get("/graphql", params={"extensions": json.dumps(persisted(sha))})
    assert response.status_code == 405


async def test_hash_mismatch_and_bad_requests(apq_client: httpx.AsyncClient) -> None:
    mismatch = await post(apq_client, {"query": "{ hello }", "extensions": persisted()})
    assert mismatch.json()["errors"][0]["extensions"]["code"] == "PERSISTED_QUERY_HASH_MISMATCH"
    assert "data" not in mismatch.json()
    version = await post(apq_client, {"extensions": persisted(version=2)})
    assert version.json()["errors"][0]["extensions"]["code"] == "PERSISTED_QUERY_NOT_SUPPORTED"
    for bad in ({"persistedQuery": "x"}, persisted(sha="abc"), persisted(sha=None)):  # type: ignore[arg-type]
        response = await post(apq_client, {"extensions": bad})
        assert response.status_code == 400


async def test_invalid_documents_are_not_registered(apq_client: httpx.AsyncClient) -> None:
    invalid = "{ nope }"
    sha = document_hash(invalid)
    first = await post(apq_client, {"query": invalid, "extensions": persisted(sha)})
    assert first.json()["errors"][0]["extensions"]["code"] == "GRAPHQL_VALIDATION_FAILED"
    again = await post(apq_client, {"extensions": persisted(sha)})
    assert again.json()["errors"][0]["extensions"]["code"] == "PERSISTED_QUERY_NOT_FOUND"


def test_the_cache_is_bounded() -> None:
    cache = PersistedQueries(max_entries=2)
    documents = [f'{{ hello(name: "{i}") }}' for i in range(3)]
    for document in documents:
        resolved = cache.resolve(document, persisted(document_hash(document)))
        assert resolved.register_hash is not None
        cache.register(resolved.register_hash, document)
    assert len(cache) == 2
    with pytest.raises(PersistedQueryError):
        cache.resolve(None, persisted(document_hash(documents[0])))
    assert cache.resolve(None, persisted(document_hash(documents[2]))).query == documents[2]


# --- the allow-list ------------------------------------------------------------------------


async def test_allow_list_only(handlers: StatementHandlers, tmp_path: Path) -> None:
    known = "query Known { hello }"
    later = 'query Later { hello(name: "later") }'
    path = tmp_path / "allow.json"
    path.write_text(json.dumps({document_hash(known): known}))
    apq = persisted_queries(
        production=True, allow_list_path=path, allowed_hashes=[document_hash(later)]
    )
    assert apq.allow_list_only
    app = make_app(handlers, production=True, persisted_queries=apq)
    transport = httpx.ASGITransport(app=app.app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        by_hash = await post(client, {"extensions": persisted(document_hash(known))})
        assert by_hash.json() == {"data": {"hello": "hello world"}}
        in_full = await post(client, {"query": known})
        assert in_full.json() == {"data": {"hello": "hello world"}}
        unknown = await post(client, {"query": "{ hello }"}, accept=GQL)
        assert unknown.status_code == 400
        assert unknown.json()["errors"][0]["extensions"]["code"] == "PERSISTED_QUERY_NOT_ALLOWED"
        unknown_apq = await post(
            client, {"query": "{ hello }", "extensions": persisted(document_hash("{ hello }"))}
        )
        assert (
            unknown_apq.json()["errors"][0]["extensions"]["code"] == "PERSISTED_QUERY_NOT_ALLOWED"
        )
        # A listed hash whose document the server does not have yet: the client sends it once.
        missing = await post(client, {"extensions": persisted(document_hash(later))})
        assert missing.json()["errors"][0]["extensions"]["code"] == "PERSISTED_QUERY_NOT_FOUND"
        sent = await post(client, {"query": later, "extensions": persisted(document_hash(later))})
        assert sent.json() == {"data": {"hello": "hello later"}}
        remembered = await post(client, {"extensions": persisted(document_hash(later))})
        assert remembered.json() == {"data": {"hello": "hello later"}}


def test_allow_list_files(tmp_path: Path) -> None:
    documents = ["{ hello }", "query A { hello }"]
    manifest = tmp_path / "manifest.json"
    manifest.write_text(
        json.dumps(
            {
                "format": "apollo-persisted-query-manifest",
                "version": 1,
                "operations": [
                    {"id": "x", "name": "n", "type": "query", "body": d} for d in documents
                ],
            }
        )
    )
    as_list = tmp_path / "list.json"
    as_list.write_text(json.dumps(documents))
    for path in (manifest, as_list):
        allow_list = AllowList.load(path)
        assert all(allow_list.allows(document_hash(d)) for d in documents)
    wrong = tmp_path / "wrong.json"
    wrong.write_text(json.dumps({"0" * 64: "{ hello }"}))
    with pytest.raises(ValueError, match="another hash"):
        AllowList.load(wrong)
    with pytest.raises(ValueError, match="SHA-256"):
        AllowList.of((), ["nothex"])
    assert not persisted_queries(production=False, allowed_hashes=["a" * 64]).allow_list_only
    assert not persisted_queries(production=True).allow_list_only
