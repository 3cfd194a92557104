"""Tokens (create, revoke, authenticate) and the auth matrix: every mutation x every caller."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from domain.handlers import StatementHandlers
from eventstore.memory import MemoryEventStore
from eventstore.urls import create_engine
from graphql_api.security.auth import (
    TOKEN_PREFIX,
    Principal,
    TokenAuthenticator,
    TokenNameTaken,
    authenticate,
    create_token,
    hash_token,
    list_tokens,
    revoke_token,
    setup_tokens,
    tokens,
)
from tests.graphql_api.support import App, context_of, make_schema

# --- the tokens table ----------------------------------------------------------------------


async def test_create_stores_only_the_hash(token_engine: AsyncEngine) -> None:
    plaintext, record = await create_token(token_engine, "editor", "  desk   editor ")
    assert plaintext.startswith(TOKEN_PREFIX) and len(plaintext) > 40
    assert record.name == "desk editor" and record.role == "editor"
    assert record.expires_at is None and record.revoked_at is None
    async with token_engine.connect() as conn:
        rows = (await conn.execute(sa.select(tokens))).all()
    assert len(rows) == 1
    assert plaintext not in json.dumps([str(v) for v in rows[0]])
    assert rows[0].token_hash == hash_token(plaintext)
    principal = await authenticate(token_engine, plaintext)
    assert principal == Principal(token_id=record.id, name="desk editor", role="editor")


async def test_setup_is_idempotent(token_engine: AsyncEngine) -> None:
    await setup_tokens(token_engine)
    await setup_tokens(token_engine)


async def test_names_and_roles_are_checked(token_engine: AsyncEngine) -> None:
    await create_token(token_engine, "auditor", "audit")
    with pytest.raises(TokenNameTaken):
        await create_token(token_engine, "editor", "audit")
    with pytest.raises(ValueError, match="role"):
        await create_token(token_engine, "admin", "x")
    with pytest.raises(ValueError, match="name"):
        await create_token(token_engine, "editor", "   ")
    with pytest.raises(ValueError, match="expires_in"):
        await create_token(token_engine, "editor", "y", expires_in=timedelta(0))


async def test_unknown_malformed_expired_and_revoked_tokens(token_engine: AsyncEngine) -> None:
    assert await authenticate(token_engine, "st_" + "x" * 43) is None
    assert await authenticate(token_engine, "not-ours") is None
    assert await authenticate(token_engine, "st_" + "x" * 500) is None
    now = datetime.now(UTC)
    expired, _ = await create_token(
        token_engine, "editor", "old", expires_in=timedelta(minutes=5), now=now - timedelta(hours=1)
    )
    assert await authenticate(token_engine, expired) is None
    fresh, record = await create_token(
        token_engine, "editor", "fresh", expires_in=timedelta(minutes=5)
    )
    assert await authenticate(token_engine, fresh) is not None
    assert await authenticate(token_engine, fresh, now=now + timedelta(minutes=6)) is None
    revoked = await revoke_token(token_engine, "fresh")
    assert revoked is not None and revoked.revoked_at is not None
    assert await authenticate(token_engine, fresh) is None
    again = await revoke_token(token_engine, record.id)
    assert again is not None and again.revoked_at == revoked.revoked_at
    assert await revoke_token(token_engine, "nobody") is None
    assert [t.name for t in await list_tokens(token_engine)] == ["old", "fresh"]


async def test_cached_lookups_see_revocation_within_the_ttl(token_engine: AsyncEngine) -> None:
    plaintext, _ = await create_token(token_engine, "editor", "cached")
    authenticator = TokenAuthenticator(token_engine, ttl=0.2)
    assert await authenticator(plaintext) is not None
    await revoke_token(token_engine, "cached")
    assert await authenticator(plaintext) is not None  # still cached
    await asyncio.sleep(0.25)
    assert await authenticator(plaintext) is None


# --- the matrix ----------------------------------------------------------------------------

MakeInput = Callable[[dict[str, str]], dict[str, Any]]

EDITOR_MUTATIONS: dict[str, tuple[str, MakeInput]] = {
    "publishStatement": (
        "PublishStatementInput",
        lambda ids: {
            "title": "New statement",
            "body": "Text.",
            "kind": "speech",
            "ministerName": "Sergey Lavrov",
            "occurredOn": "2024-01-02",
            "publishedAt": "2024-01-02T10:00:00Z",
        },
    ),
    "reviseStatement": (
        "ReviseStatementInput",
        lambda ids: {"statementId": ids["a"], "reason": "fix", "title": "Fixed title"},
    ),
    "withdrawStatement": (
        "WithdrawStatementInput",
        lambda ids: {"statementId": ids["a"], "reason": "retracted"},
    ),
    "tagStatement": (
        "TagStatementInput",
        lambda ids: {"statementId": ids["a"], "topics": ["Iran"]},
    ),
    "untagStatement": (
        "UntagStatementInput",
        lambda ids: {"statementId": ids["a"], "topic": "Syria"},
    ),
    "linkRelated": (
        "LinkRelatedInput",
        lambda ids: {"statementId": ids["b"], "relatedId": ids["a"]},
    ),
    "unlinkRelated": (
        "UnlinkRelatedInput",
        lambda ids: {"statementId": ids["a"], "relatedId": ids["b"]},
    ),
}
ALL_MUTATIONS: dict[str, tuple[str, MakeInput]] = {
    **EDITOR_MUTATIONS,
    "recordView": ("RecordViewInput", lambda ids: {"statementId": ids["a"]}),
}
CALLERS = ["anonymous", "bad", "malformed", "expired", "revoked", "editor", "auditor", "ingest"]


async def _fixtures(
    handlers: StatementHandlers, token_engine: AsyncEngine
) -> tuple[dict[str, str], dict[str, str]]:
    """Two statements (a tagged Syria and linked to b), and a token per kind of caller."""
    schema = make_schema()
    editor = Principal(token_id="setup", name="setup", role="editor")
    ids: dict[str, str] = {}
    for key, slug in (("a", "statement-a"), ("b", "statement-b")):
        result = await schema.execute(
            """mutation($input: PublishStatementInput!) {
                 publishStatement(input: $input) { statementId } }""",
            variable_values={
                "input": {
                    "title": f"Statement {key}",
                    "body": "Body.",
                    "kind": "comment",
                    "ministerName": "Sergey Lavrov",
                    "occurredOn": "2024-01-01",
                    "publishedAt": "2024-01-01T10:00:00Z",
                    "slug": slug,
                    "topics": ["Syria"],
                }
            },
            context_value=context_of(handlers, editor),
        )
        assert result.errors is None, result.errors
        assert result.data is not None
        ids[key] = result.data["publishStatement"]["statementId"]
    result = await schema.execute(
        "mutation($input: LinkRelatedInput!) { linkRelated(input: $input) { version } }",
        variable_values={"input": {"statementId": ids["a"], "relatedId": ids["b"]}},
        context_value=context_of(handlers, editor),
    )
    assert result.errors is None
    now = datetime.now(UTC)
    editor_token, _ = await create_token(token_engine, "editor", "editor-1")
    auditor_token, _ = await create_token(token_engine, "auditor", "auditor-1")
    ingest_token, _ = await create_token(token_engine, "ingest", "ingest-1")
    expired_token, _ = await create_token(
        token_engine,
        "editor",
        "expired-1",
        expires_in=timedelta(seconds=1),
        now=now - timedelta(days=1),
    )
    revoked_token, _ = await create_token(token_engine, "editor", "revoked-1")
    await revoke_token(token_engine, "revoked-1")
    headers = {
        "anonymous": "",
        "bad": "Bearer st_" + "A" * 43,
        "malformed": "Basic dXNlcjpwYXNz",
        "expired": f"Bearer {expired_token}",
        "revoked": f"Bearer {revoked_token}",
        "editor": f"Bearer {editor_token}",
        "auditor": f"Bearer {auditor_token}",
        "ingest": f"Bearer {ingest_token}",
    }
    return ids, headers


def _expected(mutation: str, caller: str) -> tuple[int, str | None]:
    """(HTTP status, error code or None for success)."""
    if caller in ("bad", "malformed", "expired", "revoked"):
        return 401, "UNAUTHENTICATED"
    if mutation == "recordView" or caller == "editor":
        return 200, None
    return 200, "UNAUTHENTICATED" if caller == "anonymous" else "FORBIDDEN"


@pytest.mark.parametrize("mutation", sorted(ALL_MUTATIONS))
async def test_auth_matrix(
    mutation: str,
    app: App,
    client: httpx.AsyncClient,
    handlers: StatementHandlers,
    memory_store: MemoryEventStore,
    token_engine: AsyncEngine,
) -> None:
    ids, headers = await _fixtures(handlers, token_engine)
    input_type, make_input = ALL_MUTATIONS[mutation]
    # recordView's payload has no version: views do not change the statement's.
    fields = "statementId position" if mutation == "recordView" else "statementId version position"
    query = f"mutation M($input: {input_type}!) {{ {mutation}(input: $input) {{ {fields} }} }}"
    outcomes: dict[str, Any] = {}
    # The editor goes last, so that its change (a withdrawal, say) cannot alter the others.
    for caller in sorted(CALLERS, key=lambda c: c == "editor"):
        before = len(memory_store.rows)
        request_headers = {"content-type": "application/json", "accept": "application/json"}
        if headers[caller]:
            request_headers["authorization"] = headers[caller]
        response = await client.post(
            "/graphql",
            content=json.dumps({"query": query, "variables": {"input": make_input(ids)}}),
            headers=request_headers,
        )
        status, code = _expected(mutation, caller)
        body = response.json()
        outcomes[caller] = (response.status_code, body)
        assert response.status_code == status, (caller, body)
        if code is None:
            assert "errors" not in body, (caller, body)
            assert body["data"][mutation]["position"] is not None
            assert len(memory_store.rows) > before
            written = memory_store.rows[-1]
            actor = json.loads(written.metadata)["actor"]
            assert actor == ("anonymous" if caller == "anonymous" else f"{caller}-1")
        else:
            assert [e["extensions"]["code"] for e in body["errors"]] == [code], (caller, body)
            assert len(memory_store.rows) == before, caller
            if status == 401:
                assert "data" not in body
                assert response.headers["www-authenticate"].startswith("Bearer")
            else:
                assert body["data"] is None


@pytest.mark.parametrize(
    ("principal", "code"),
    [
        (None, "UNAUTHENTICATED"),
        (Principal(token_id="e", name="e", role="editor"), "FORBIDDEN"),
        (Principal(token_id="a", name="a", role="auditor"), None),
    ],
)
async def test_audit_fields_need_the_auditor_role(
    handlers: StatementHandlers, principal: Principal | None, code: str | None
) -> None:
    result = await make_schema().execute(
        "{ auditTrail }", context_value=context_of(handlers, principal)
    )
    if code is None:
        assert result.errors is None
        assert result.data == {"auditTrail": "trail"}
    else:
        assert result.errors is not None
        assert [e.extensions["code"] for e in result.errors if e.extensions] == [code]


@pytest.mark.postgres
async def test_tokens_on_postgresql(pg_schema: tuple[str, str]) -> None:
    url, schema = pg_schema
    engine = create_engine(url, schema=schema)
    try:
        await asyncio.gather(setup_tokens(engine), setup_tokens(engine))
        plaintext, record = await create_token(
            engine, "auditor", "pg-auditor", expires_in=timedelta(hours=1)
        )
        with pytest.raises(TokenNameTaken):
            await create_token(engine, "editor", "pg-auditor")
        principal = await authenticate(engine, plaintext)
        assert principal == Principal(token_id=record.id, name="pg-auditor", role="auditor")
        listed = await list_tokens(engine)
        assert listed[0].expires_at == record.expires_at
        assert await revoke_token(engine, "pg-auditor") is not None
        assert await authenticate(engine, plaintext) is None
    finally:
        await engine.dispose()
