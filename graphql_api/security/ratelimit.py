"""Rate limiting of ``recordView`` and ``recordViews``: one client cannot inflate view counts
without bound.

Policy
------
Anyone may call ``recordView``; every view is taken from a token bucket, chosen by who asks:

* a request with a token of the ``ingest`` role (a site or a log shipper that records views
  for many readers) has one bucket per token (``ingest:NAME``), holding ``ingest_burst`` views
  (default 2,000) and refilled at ``ingest_rate`` views a second (default 1,000);
* any other request has one bucket per client, holding ``burst`` views (default 20) and
  refilled at ``rate`` views a second (default 10). The client is the token's name when the
  request carries another valid token (``token:NAME``), else its address (``ip:ADDR``);
* the address is the peer's, from the connection. Behind a reverse proxy that is the proxy's,
  unless the proxy is listed in ``trusted_proxies`` (``STATEMENTS_TRUSTED_PROXIES``: addresses
  or CIDR blocks): then ``X-Forwarded-For`` names the client, read from the right, skipping the
  listed proxies, so the first address no listed proxy vouches for is the client. A peer that
  is not listed cannot pick its key by sending the header: it is ignored;
* a ``recordViews`` batch takes as many tokens as it holds views, all or none: a batch that
  finds fewer in its bucket is refused whole; one larger than the bucket can ever hold is
  ``BAD_USER_INPUT``;
* a view that finds its bucket empty is refused with a GraphQL error whose
  ``extensions.code`` is ``RATE_LIMITED`` (with ``retryable: true`` and ``retryAfter`` in
  seconds), and nothing is written;
* memory is bounded: at most ``max_clients`` buckets (default 10,000) are kept per kind, the
  least recently used is forgotten first. A forgotten client starts again with a full bucket,
  so a client that controls more than ``max_clients`` addresses can get ``burst`` extra views
  per eviction cycle; that is the price of bounded memory.

One process has one policy: with ``--workers N`` each worker limits on its own, so a client
gets at most N times the rate. ``docs/API.md`` says the same for client authors.
"""

from __future__ import annotations

import ipaddress
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import ClassVar, Final

from cachetools import LRUCache

from graphql_api.context import Context
from graphql_api.errors import ApiError, BadUserInput

RATE_LIMITED: Final = "RATE_LIMITED"

DEFAULT_RATE: Final = 10.0
DEFAULT_BURST: Final = 20.0
DEFAULT_INGEST_RATE: Final = 1000.0
DEFAULT_INGEST_BURST: Final = 2000.0
DEFAULT_MAX_CLIENTS: Final = 10_000
#: The role of tokens that record views for many readers.
INGEST: Final = "ingest"


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
        self._buckets: LRUCache[str, _Bucket] = LRUCache(maxsize=max_clients)

    def __len__(self) -> int:
        return len(self._buckets)

    def try_acquire(self, key: str, tokens: float = 1.0) -> float:
        """Take ``tokens`` for ``key``: 0.0 when granted, else the seconds until they are free
        (nothing is taken then)."""
        now = self._clock()
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = _Bucket(self.burst, now)
        else:
            elapsed = max(0.0, now - bucket.updated)
            bucket.tokens = min(self.burst, bucket.tokens + elapsed * self.rate)
            bucket.updated = now
        if bucket.tokens >= tokens:
            bucket.tokens -= tokens
            return 0.0
        return (tokens - bucket.tokens) / self.rate

    def check(self, key: str, views: int = 1, field: str = "recordView") -> None:
        """Take ``views`` tokens for ``key`` or raise :class:`RateLimited` (``field`` names the
        mutation in the message)."""
        if views > self.burst:
            raise BadUserInput(
                f"views: holds {views:,} views; this client may send at most "
                f"{self.burst:,.0f} at once"
            )
        wait = self.try_acquire(key, views)
        if wait > 0.0:
            retry_after = math.ceil(wait * 1000) / 1000
            raise RateLimited(
                f"{field}: too many views from this client; retry in {retry_after:g} s",
                retryable=True,
                retryAfter=retry_after,
            )


IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


def _address(text: str) -> str | None:
    """An address from a header entry, normalised; None if it is not one.

    Entries are bare addresses; some proxies add a port (``192.0.2.1:80``, ``[2001:db8::1]:80``).
    """
    text = text.strip()
    if text.startswith("["):
        text = text[1 : text.find("]")] if "]" in text else ""
    elif text.count(":") == 1:
        text = text.partition(":")[0]
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        return None


class TrustedProxies:
    """The proxies whose ``X-Forwarded-For`` is believed: addresses or CIDR blocks."""

    def __init__(self, networks: Iterable[str] = ()) -> None:
        self.networks: tuple[IPNetwork, ...] = tuple(
            ipaddress.ip_network(n, strict=False) for n in networks
        )

    def __bool__(self) -> bool:
        return bool(self.networks)

    def trusts(self, address: str) -> bool:
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in network for network in self.networks)

    def client(self, peer: str | None, forwarded_for: Iterable[str]) -> str | None:
        """The client's address: the peer's, unless the peer is a trusted proxy; then the
        right-most ``X-Forwarded-For`` entry that is not a trusted proxy (the left-most if all
        are). An entry that is not an address ends the walk at the proxy after it."""
        if peer is None or not self.networks or not self.trusts(peer):
            return peer
        client = peer
        entries = [e for header in forwarded_for for e in header.split(",") if e.strip()]
        for entry in reversed(entries):
            address = _address(entry)
            if address is None:
                break
            client = address
            if not self.trusts(address):
                break
        return client


def client_key(context: Context, proxies: TrustedProxies | None = None) -> str:
    """Who a request is, for rate limiting: its token's name, else its client address."""
    if context.principal is not None:
        return f"token:{context.principal.name}"
    request = context.request
    client = request.client if request is not None else None
    peer = client.host if client is not None else None
    if proxies and request is not None:
        peer = proxies.client(peer, request.headers.getlist("x-forwarded-for"))
    return f"ip:{peer}" if peer is not None else "ip:unknown"


class ViewRatePolicy:
    """The module's policy: a bucket per ``ingest`` token, and one per other client."""

    def __init__(
        self,
        *,
        rate: float = DEFAULT_RATE,
        burst: float = DEFAULT_BURST,
        ingest_rate: float = DEFAULT_INGEST_RATE,
        ingest_burst: float = DEFAULT_INGEST_BURST,
        trusted_proxies: Iterable[str] = (),
        max_clients: int = DEFAULT_MAX_CLIENTS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.clients = ViewRateLimiter(rate, burst, max_clients, clock)
        self.ingest = ViewRateLimiter(ingest_rate, ingest_burst, max_clients, clock)
        self.proxies = TrustedProxies(trusted_proxies)

    def bucket(self, context: Context) -> tuple[ViewRateLimiter, str]:
        """The limiter and key a request's views are counted under."""
        principal = context.principal
        if principal is not None and principal.role == INGEST:
            return self.ingest, f"ingest:{principal.name}"
        return self.clients, client_key(context, self.proxies)

    def check(self, context: Context, views: int = 1, field: str = "recordView") -> None:
        limiter, key = self.bucket(context)
        limiter.check(key, views, field)


def check_view_rate(context: Context, views: int = 1, field: str = "recordView") -> None:
    """Refuse ``views`` views over the client's rate; a no-op when the app has no limiter."""
    limiter = context.rate_limiter
    if isinstance(limiter, ViewRatePolicy):
        limiter.check(context, views, field)
    elif isinstance(limiter, ViewRateLimiter):
        limiter.check(client_key(context), views, field)
