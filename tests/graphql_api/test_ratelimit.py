"""recordView rate limiting: token buckets per client, bounded memory, RATE_LIMITED, no write."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.routing import Route

from domain.handlers import StatementHandlers
from eventstore.memory import MemoryEventStore
from graphql_api.auth import Principal
from graphql_api.context import Context
from graphql_api.http import build_graphql_app
from graphql_api.ratelimit import (
    CONTEXT_KEY,
    RATE_LIMITED,
    RateLimited,
    ViewRateLimiter,
    client_key,
)
from graphql_api.schema import ApiSchema
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
        context = Context(handlers=handlers, principal=principal, extra={CONTEXT_KEY: limiter})
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
            extra={CONTEXT_KEY: limiter},
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
