"""Rate limiting of ``recordView``: one client cannot inflate view counts without bound.

Policy
------
Anyone may call ``recordView``, but each *client* has one token bucket for all its views,
whatever statement they are for:

* the client is the token's name when the request carries a valid bearer token
  (``token:NAME``), else the peer address from the ASGI scope (``ip:ADDR``). Behind a reverse
  proxy that address is the proxy's unless uvicorn is told to trust ``X-Forwarded-For``
  (``--forwarded-allow-ips``); a client cannot pick its own key by sending headers;
* the bucket holds ``burst`` views (default 20) and refills at ``rate`` views per second
  (default 10); a view that finds the bucket empty is refused with a GraphQL error whose
  ``extensions.code`` is ``RATE_LIMITED`` (with ``retryable: true`` and ``retryAfter`` in
  seconds), and nothing is written;
* memory is bounded: at most ``max_clients`` buckets (default 10,000) are kept, the least
  recently used is forgotten first. A forgotten client starts again with a full bucket, so a
  client that controls more than ``max_clients`` addresses can get ``burst`` extra views per
  eviction cycle; that is the price of bounded memory.

One process has one limiter: with ``--workers N`` each worker limits on its own, so a client
gets at most N times the rate.
"""

from __future__ import annotations

import collections
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, Final

from graphql_api.context import Context
from graphql_api.errors import ApiError

RATE_LIMITED: Final = "RATE_LIMITED"
#: The key of ``Context.extra`` under which the app puts its :class:`ViewRateLimiter`.
CONTEXT_KEY: Final = "rate_limiter"

DEFAULT_RATE: Final = 10.0
DEFAULT_BURST: Final = 20.0
DEFAULT_MAX_CLIENTS: Final = 10_000


class RateLimited(ApiError):
    """Too many views from one client; retry after ``retryAfter`` seconds."""

    code: ClassVar[str] = RATE_LIMITED


@dataclass(slots=True)
class _Bucket:
    tokens: float
    updated: float


class ViewRateLimiter:
    """A token bucket per client key, in a bounded LRU map."""

    def __init__(
        self,
        rate: float = DEFAULT_RATE,
        burst: float = DEFAULT_BURST,
        max_clients: int = DEFAULT_MAX_CLIENTS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if rate <= 0 or burst < 1 or max_clients < 1:
            raise ValueError("rate must be > 0, burst >= 1 and max_clients >= 1")
        self.rate = rate
        self.burst = burst
        self.max_clients = max_clients
        self._clock = clock
        self._buckets: collections.OrderedDict[str, _Bucket] = collections.OrderedDict()

    def __len__(self) -> int:
        return len(self._buckets)

    def try_acquire(self, key: str) -> float:
        """Take one token for ``key``: 0.0 when granted, else the seconds until one is free."""
        now = self._clock()
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = _Bucket(self.burst, now)
            self._buckets[key] = bucket
            while len(self._buckets) > self.max_clients:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(key)
            elapsed = max(0.0, now - bucket.updated)
            bucket.tokens = min(self.burst, bucket.tokens + elapsed * self.rate)
            bucket.updated = now
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return 0.0
        return (1.0 - bucket.tokens) / self.rate

    def check(self, key: str) -> None:
        """Take one token for ``key`` or raise :class:`RateLimited`."""
        wait = self.try_acquire(key)
        if wait > 0.0:
            retry_after = math.ceil(wait * 1000) / 1000
            raise RateLimited(
                f"recordView: too many views from this client; retry in {retry_after:g} s",
                retryable=True,
                retryAfter=retry_after,
            )


def client_key(context: Context) -> str:
    """Who a request is, for rate limiting: its token's name, else its peer address."""
    if context.principal is not None:
        return f"token:{context.principal.name}"
    request = context.request
    client = request.client if request is not None else None
    return f"ip:{client.host}" if client is not None else "ip:unknown"


def check_view_rate(context: Context) -> None:
    """Refuse a view over the client's rate; a no-op when the app has no limiter."""
    limiter: Any = context.extra.get(CONTEXT_KEY)
    if isinstance(limiter, ViewRateLimiter):
        limiter.check(client_key(context))
