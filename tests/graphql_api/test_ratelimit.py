"""recordView rate limiting: token buckets per client, bounded memory, RATE_LIMITED, no write."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.routing import Route

from domain.handlers import StatementHandlers
from eventstore.memory import MemoryEventStore
from graphql_api.context import Context
from graphql_api.schema.api_schema import ApiSchema
from graphql_api.security.auth import Principal, TokenAuthenticator, create_token
from graphql_api.security.ratelimit import (
    RATE_LIMITED,
    RateLimited,
    TrustedProxies,
    ViewRateLimiter,
    ViewRatePolicy,
    client_key,
)
from graphql_api.settings import Settings
from graphql_api.transport.http import build_graphql_app
from tests.graphql_api.support import make_schema
from tests.graphql_api.test_mutations import EDITOR, RECORD_VIEW, publish


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_burst_then_refill_at_the_rate() -> None:
    clock = Clock()
    limiter = ViewRateLimiter(rate=10, burst=20, clock=clock)
    granted = sum(limiter.try_acquire("a") == 0.0 for _ in range(100))
    assert granted == 20
    wait = limiter.try_acquire("a")
    assert wait == pytest.approx(0.1)
    clock.now += 0.5  # five tokens come back
    assert sum(limiter.try_acquire("a") == 0.0 for _ in range(100)) == 5
    clock.now += 3600  # never more than the burst
    assert sum(limiter.try_acquire("a") == 0.0 for _ in range(100)) == 20


def test_sustained_rate_is_bounded() -> None:
    clock = Clock()
    limiter = ViewRateLimiter(rate=10, burst=20, clock=clock)
    granted = 0
    for _ in range(60_000):  # 60 s of a client hammering 1,000 times a second
        clock.now += 0.001
        granted += limiter.try_acquire("greedy") == 0.0
    assert 20 + 600 - 2 <= granted <= 20 + 600 + 1


def test_clients_are_independent() -> None:
    limiter = ViewRateLimiter(rate=1, burst=2, clock=Clock())
    assert [limiter.try_acquire("a") == 0.0 for _ in range(3)] == [True, True, False]
    assert [limiter.try_acquire("b") == 0.0 for _ in range(3)] == [True, True, False]


def test_memory_is_bounded_and_least_recently_used_goes_first() -> None:
    limiter = ViewRateLimiter(rate=1, burst=1, max_clients=100, clock=Clock())
    limiter.try_acquire("keep")
    for i in range(10_000):
        limiter.try_acquire(f"ip:10.0.{i // 256}.{i % 256}")
        if i % 50 == 0:
            limiter.try_acquire("keep")  # recently used: survives, and stays empty
    assert len(limiter) == 100
    assert limiter.try_acquire("keep") > 0.0


def test_check_raises_with_code_and_retry_after() -> None:
    limiter = ViewRateLimiter(rate=4, burst=1, clock=Clock())
    limiter.check("a")
    with pytest.raises(RateLimited) as caught:
        limiter.check("a")
    assert caught.value.code == RATE_LIMITED
    assert caught.value.extensions == {"retryable": True, "retryAfter": 0.25}
    assert caught.value.message == "recordView: too many views from this client; retry in 0.25 s"


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError):
        ViewRateLimiter(rate=0)
    with pytest.raises(ValueError):
        ViewRateLimiter(burst=0.5)
    with pytest.raises(ValueError):
        ViewRateLimiter(max_clients=0)


def test_client_key_prefers_the_token_name(handlers: StatementHandlers) -> None:
    scope: dict[str, Any] = {"type": "http", "client": ("192.0.2.7", 5555), "headers": []}
    request = Request(scope)
    anonymous = Context(handlers=handlers, request=request)
    assert client_key(anonymous) == "ip:192.0.2.7"
    editor = Context(handlers=handlers, principal=EDITOR, request=request)
    assert client_key(editor) == "token:desk-editor"
    assert client_key(Context(handlers=handlers)) == "ip:unknown"


async def _views(store: MemoryEventStore) -> int:
    return sum([e.type == "Viewed" async for e in store.read_all()])


async def test_record_view_over_the_rate_writes_nothing(
    handlers: StatementHandlers, memory_store: MemoryEventStore
) -> None:
    schema: ApiSchema = make_schema()
    statement_id = await publish(schema, handlers)
    limiter = ViewRateLimiter(rate=1, burst=3, clock=Clock())

    async def view(principal: Principal | None) -> Any:
        context = Context(handlers=handlers, principal=principal, rate_limiter=limiter)
        return await schema.execute(
            RECORD_VIEW, variable_values={"id": statement_id}, context_value=context
        )

    results = [await view(None) for _ in range(10)]
    ok = [r for r in results if not r.errors]
    limited = [r for r in results if r.errors]
    assert len(ok) == 3
    assert len(limited) == 7
    for result in limited:
        (error,) = result.errors
        assert error.formatted["extensions"]["code"] == RATE_LIMITED
        assert error.formatted["extensions"]["retryable"] is True
        assert result.data == {"recordView": None} or result.data is None
    assert await _views(memory_store) == 3
    # An authenticated client has its own bucket.
    assert not (await view(EDITOR)).errors
    assert await _views(memory_store) == 4


async def test_rate_limited_over_http_per_peer_address(
    handlers: StatementHandlers, memory_store: MemoryEventStore
) -> None:
    schema = make_schema()
    statement_id = await publish(schema, handlers)
    limiter = ViewRateLimiter(rate=0.001, burst=5)

    def context_factory(request: Request, principal: Principal | None, request_id: str) -> Any:
        return Context(
            handlers=handlers,
            principal=principal,
            request_id=request_id,
            request=request,
            rate_limiter=limiter,
        )

    endpoint = build_graphql_app(schema, production=True, context_factory=context_factory)
    app = Starlette(routes=[Route("/graphql", endpoint)])
    body = {"query": RECORD_VIEW, "variables": {"id": statement_id}}

    async def codes(client_ip: str) -> list[str | None]:
        transport = httpx.ASGITransport(app=app, client=(client_ip, 1234))
        out: list[str | None] = []
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            for _ in range(8):
                response = await client.post("/graphql", json=body)
                assert response.status_code == 200
                errors = response.json().get("errors")
                out.append(errors[0]["extensions"]["code"] if errors else None)
        return out

    assert await codes("198.51.100.1") == [None] * 5 + [RATE_LIMITED] * 3
    assert await codes("198.51.100.2") == [None] * 5 + [RATE_LIMITED] * 3
    assert await _views(memory_store) == 10


# -- the policy: ingest tokens, and X-Forwarded-For from listed proxies only ----------------


def test_forwarded_for_counts_only_from_listed_proxies() -> None:
    proxies = TrustedProxies(["10.0.0.0/8", "2001:db8::1"])
    # Not a listed proxy: the header is whatever the client wrote, and is ignored.
    assert proxies.client("198.51.100.7", ["203.0.113.5"]) == "198.51.100.7"
    # A listed proxy: the address it vouches for, right-most first, skipping listed proxies.
    assert proxies.client("10.1.1.1", ["203.0.113.5"]) == "203.0.113.5"
    assert proxies.client("10.1.1.1", ["1.2.3.4, 203.0.113.5, 10.2.2.2"]) == "203.0.113.5"
    assert proxies.client("10.1.1.1", ["1.2.3.4", "203.0.113.5,10.2.2.2"]) == "203.0.113.5"
    assert proxies.client("2001:db8::1", ["[2001:db8::2]:443"]) == "2001:db8::2"
    assert proxies.client("10.1.1.1", ["203.0.113.5:8080"]) == "203.0.113.5"
    # Every hop a listed proxy: the left-most is the client.
    assert proxies.client("10.1.1.1", ["10.3.3.3, 10.2.2.2"]) == "10.3.3.3"
    # Garbage where a proxy should have written an address: the last good hop is the client.
    assert proxies.client("10.1.1.1", ["203.0.113.5, not-an-ip"]) == "10.1.1.1"
    assert proxies.client("10.1.1.1", []) == "10.1.1.1"
    assert TrustedProxies().client("10.1.1.1", ["203.0.113.5"]) == "10.1.1.1"


def test_settings_read_the_policy_and_refuse_bad_values() -> None:
    settings = Settings.from_env(
        {
            "STATEMENTS_TRUSTED_PROXIES": " 10.0.0.0/8, 192.0.2.1 ,2001:db8::/32",
            "STATEMENTS_INGEST_VIEW_RATE": "250",
            "STATEMENTS_INGEST_VIEW_BURST": "500",
            "STATEMENTS_VIEW_RATE": "2.5",
            "STATEMENTS_POSITION_WAIT_SECONDS": "1.5",
        }
    )
    assert settings.trusted_proxies == ("10.0.0.0/8", "192.0.2.1/32", "2001:db8::/32")
    assert (settings.ingest_view_rate, settings.ingest_view_burst) == (250.0, 500.0)
    assert (settings.view_rate, settings.view_burst) == (2.5, 20.0)
    assert settings.position_wait_seconds == 1.5
    for name, value in (
        ("STATEMENTS_TRUSTED_PROXIES", "10.0.0.0/8, proxy.local"),
        ("STATEMENTS_INGEST_VIEW_RATE", "0"),
        ("STATEMENTS_VIEW_BURST", "lots"),
        ("STATEMENTS_POSITION_WAIT_SECONDS", "-1"),
        ("STATEMENTS_VIEW_RATE", "nan"),
    ):
        with pytest.raises(ValueError, match=name):
            Settings.from_env({name: value})


async def test_an_ingest_token_has_its_own_limit_wherever_it_comes_from(
    handlers: StatementHandlers, memory_store: MemoryEventStore, token_engine: AsyncEngine
) -> None:
    schema = make_schema()
    statement_id = await publish(schema, handlers)
    policy = ViewRatePolicy(
        rate=0.001, burst=2, ingest_rate=0.001, ingest_burst=5, trusted_proxies=["10.0.0.0/8"]
    )
    site, _ = await create_token(token_engine, "ingest", "site")
    other_site, _ = await create_token(token_engine, "ingest", "other-site")
    editor, _ = await create_token(token_engine, "editor", "desk")

    def context_factory(request: Request, principal: Principal | None, request_id: str) -> Any:
        return Context(
            handlers=handlers,
            principal=principal,
            request_id=request_id,
            request=request,
            rate_limiter=policy,
        )

    endpoint = build_graphql_app(
        schema,
        production=True,
        context_factory=context_factory,
        authenticator=TokenAuthenticator(token_engine, ttl=0.0),
    )
    app = Starlette(routes=[Route("/graphql", endpoint)])
    body = {"query": RECORD_VIEW, "variables": {"id": statement_id}}

    async def codes(peer: str, n: int, token: str | None = None, **headers: str) -> list[Any]:
        transport = httpx.ASGITransport(app=app, client=(peer, 1234))
        sent = {k.replace("_", "-"): v for k, v in headers.items()}
        if token:
            sent["authorization"] = f"Bearer {token}"
        out: list[Any] = []
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            for _ in range(n):
                errors = (
                    (await client.post("/graphql", json=body, headers=sent)).json().get("errors")
                )
                out.append(errors[0]["extensions"]["code"] if errors else None)
        return out

    # One bucket per ingest token, whichever address its views come from.
    assert await codes("198.51.100.1", 3, site) == [None] * 3
    assert await codes("198.51.100.2", 3, site) == [None, None, RATE_LIMITED]
    assert await codes("198.51.100.3", 5, other_site) == [None] * 5
    # Anonymous readers from the same addresses keep their own, smaller, buckets.
    assert await codes("198.51.100.1", 3) == [None, None, RATE_LIMITED]
    # Other roles are limited like any client: an editor's token has the client bucket.
    assert await codes("198.51.100.1", 3, editor) == [None, None, RATE_LIMITED]
    # Through a listed proxy, X-Forwarded-For names the reader; from anyone else it is ignored.
    assert await codes("10.0.0.2", 2, x_forwarded_for="203.0.113.1") == [None, None]
    assert await codes("10.0.0.2", 2, x_forwarded_for="203.0.113.2") == [None, None]
    assert await codes("198.51.100.9", 3, x_forwarded_for="203.0.113.3") == [
        None,
        None,
        RATE_LIMITED,
    ]
    assert await codes("198.51.100.9", 1, x_forwarded_for="203.0.113.4") == [RATE_LIMITED]
    assert await _views(memory_store) == 3 + 2 + 5 + 2 + 2 + 2 + 2 + 2
