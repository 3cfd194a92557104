"""Settings: the one place that reads the environment."""

from __future__ import annotations

import ipaddress
import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Self
from urllib.parse import urlsplit

from domain.limits import MAX_VIEWS_PER_BATCH

DEFAULT_DATABASE_URL = "sqlite:///./statements.db"
#: About 30 MB at the demo's statement sizes.
DEFAULT_READ_CACHE_ROWS = 20_000
#: The largest HTTP request body or WebSocket message accepted: 1 MB.
DEFAULT_MAX_REQUEST_BYTES = 1_000_000
#: The log's name in its checkpoints when it has no signing key (a key's name wins).
DEFAULT_LOG_ORIGIN = "localhost/statements"
#: Seconds between checkpoints while the log grows (auditors may ask for one at any time).
DEFAULT_CHECKPOINT_INTERVAL = 60
#: User-Agents the site does not count views of: crawlers, link previews and fetch tools.
DEFAULT_SITE_BOT_AGENTS = (
    r"bot|crawl|spider|slurp|archiver|facebookexternalhit|embedly|preview|curl|wget|"
    r"python-requests|go-http-client|headlesschrome.*lighthouse"
)
#: Seconds a read replica may trail the primary's read models before it is left out.
DEFAULT_REPLICA_MAX_LAG = 2.0


def _count(env: Mapping[str, str], name: str, default: int, minimum: int = 0) -> int:
    text = env.get(name, "").strip()
    if not text:
        return default
    try:
        value = int(text)
    except ValueError:
        value = minimum - 1
    if value < minimum:
        raise ValueError(f"{name} must be a whole number >= {minimum}, not {text!r}")
    return value


def _access_log_mode(env: Mapping[str, str], name: str) -> str:
    text = env.get(name, "").strip().lower() or "off"
    if text not in ("off", "sampled", "full"):
        raise ValueError(f"{name} must be off, sampled or full, not {env[name]!r}")
    return text


def _rate(env: Mapping[str, str], name: str, default: float) -> float:
    value = _number(env, name, default, minimum=0.0)
    if value > 1.0:
        raise ValueError(f"{name} must be a share between 0 and 1, not {env[name]!r}")
    return value


def _number(env: Mapping[str, str], name: str, default: float, *, minimum: float) -> float:
    text = env.get(name, "").strip()
    if not text:
        return default
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value < minimum:
        raise ValueError(f"{name} must be a number >= {minimum:g}, not {text!r}")
    return value


def _switch(env: Mapping[str, str], name: str, default: bool) -> bool:
    text = env.get(name, "").strip().lower()
    if not text:
        return default
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"{name} must be 1 or 0 (true/false, yes/no, on/off), not {text!r}")


def _pattern(env: Mapping[str, str], name: str, default: str) -> str:
    text = env.get(name, default)
    try:
        re.compile(text)
    except re.error as exc:
        raise ValueError(f"{name} must be a regular expression: {exc}") from None
    return text


def _networks(env: Mapping[str, str], name: str) -> tuple[str, ...]:
    """Comma-separated addresses or CIDR blocks, each checked and normalised."""
    networks: list[str] = []
    for part in env.get(name, "").split(","):
        text = part.strip()
        if not text:
            continue
        try:
            networks.append(str(ipaddress.ip_network(text, strict=False)))
        except ValueError:
            raise ValueError(
                f"{name} must list IP addresses or CIDR blocks separated by commas; "
                f"{text!r} is neither"
            ) from None
    return tuple(networks)


def _replica_urls(env: Mapping[str, str], name: str) -> tuple[str, ...]:
    """Comma-separated PostgreSQL URLs, each checked to be one."""
    urls: list[str] = []
    for part in env.get(name, "").split(","):
        text = part.strip()
        if not text:
            continue
        scheme = urlsplit(text).scheme.lower()
        if not (scheme.startswith(("postgresql", "postgres")) and urlsplit(text).hostname):
            raise ValueError(
                f"{name} must list PostgreSQL URLs (postgresql://user@host:port/database) "
                f"separated by commas; {text!r} is not one"
            )
        urls.append(text)
    return tuple(dict.fromkeys(urls))


_DEFAULT_PORTS = {"http": 80, "https": 443}


def _origin(name: str, text: str) -> str:
    """One origin as browsers send it in ``Origin``: lower-case, default port left out."""
    problem = f"{name}: {text!r} is not an origin such as https://app.example.com"
    if text in ("*", "null"):
        raise ValueError(f"{problem}; list each origin that may call the API")
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError:
        raise ValueError(problem) from None
    scheme = parts.scheme.lower()
    if (
        scheme not in _DEFAULT_PORTS
        or not parts.hostname
        or parts.username is not None
        or parts.path not in ("", "/")
        or parts.query
        or parts.fragment
    ):
        raise ValueError(f"{problem} (a scheme, a host and an optional port; no path)")
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    if port is not None and port != _DEFAULT_PORTS[scheme]:
        host = f"{host}:{port}"
    return f"{scheme}://{host}"


def _origins(env: Mapping[str, str], name: str) -> tuple[str, ...]:
    items = (item.strip() for item in env.get(name, "").split(","))
    return tuple(dict.fromkeys(_origin(name, item) for item in items if item))


@dataclass(frozen=True)
class Settings:
    """Everything the app and the CLI need to know about their environment."""

    database_url: str = DEFAULT_DATABASE_URL
    database_schema: str | None = None
    production: bool = False
    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = 1
    run_projections: bool = True
    #: With production: a file of allowed GraphQL documents (one per blank-line-separated
    #: block, or a JSON list); only those are accepted.
    allow_list_path: str | None = None
    #: Rows of recent read-model results kept in memory while they are known to be current
    #: (``eventstore.read_cache``: the SQLite file unchanged, or on PostgreSQL no checkpoint
    #: notification for their read models); 0 turns that cache off.
    read_cache_rows: int = DEFAULT_READ_CACHE_ROWS
    #: The largest HTTP request body (``/graphql``, ``/graphql/stream``) and WebSocket message
    #: accepted, in bytes. Both are refused before they are parsed: 413, or close code 1009.
    max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES
    #: How long a mutation waits for the read models to show its write, and a read with
    #: ``X-Min-Position`` for them to reach that position, before POSITION_NOT_REACHED; 0
    #: turns the mutations' wait off (reads with X-Min-Position then never wait).
    position_wait_seconds: float = 5.0
    #: ``recordView`` per client without an ``ingest`` token: views per second and burst.
    view_rate: float = 10.0
    view_burst: float = 20.0
    #: ``recordView`` per ``ingest`` token (a site or log shipper recording many readers).
    ingest_view_rate: float = 1000.0
    ingest_view_burst: float = 2000.0
    #: The most views one ``recordViews`` request may carry; more is BAD_USER_INPUT.
    ingest_max_batch_views: int = MAX_VIEWS_PER_BATCH
    #: Proxies (addresses or CIDR blocks) whose ``X-Forwarded-For`` names the client.
    trusted_proxies: tuple[str, ...] = ()
    #: The file of the Ed25519 key that signs the log's checkpoints (``statements keys
    #: create`` writes it); without one, checkpoints are made unsigned.
    signing_key_path: str | None = None
    log_origin: str = DEFAULT_LOG_ORIGIN
    checkpoint_interval: int = DEFAULT_CHECKPOINT_INTERVAL
    #: Browser origins (``https://app.example.com``) whose pages may call the API (CORS);
    #: empty, the default, lets none.
    cors_origins: tuple[str, ...] = ()
    #: Request logging (``graphql_api.transport.access_log``): ``off`` (the default: request
    #: figures are on /metrics), ``sampled`` (each request with probability
    #: ``access_log_rate``) or ``full``; 5xx responses and requests slower than
    #: ``slow_request_ms`` are logged whatever the mode.
    access_log: str = "off"
    access_log_rate: float = 0.01
    slow_request_ms: float = 1000.0
    #: Streaming replicas of the PostgreSQL primary that answer queries (projections.replicas):
    #: a query goes to one whose read models reach the request's X-Min-Position, else to the
    #: primary. Mutations, proofs and verifyLog always read the primary.
    read_replica_urls: tuple[str, ...] = ()
    #: Seconds a replica's read models may trail the primary's before it is left out (until it
    #: is back within the bound).
    replica_max_lag: float = DEFAULT_REPLICA_MAX_LAG
    #: Query operations run on the compiled executor (``graphql_api.execution``);
    #: ``STATEMENTS_COMPILED_EXECUTOR=0`` runs them on graphql-core's, which gives the same
    #: answers at a higher cost per field.
    compiled_executor: bool = True
    #: Whether opening a statement page on the site records a view (``recordView``'s command).
    site_count_views: bool = True
    #: A regular expression (searched case-insensitively) for User-Agents whose views the site
    #: does not count; empty counts every reader.
    site_bot_agents: str = DEFAULT_SITE_BOT_AGENTS

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Self:
        env = os.environ if environ is None else environ
        return cls(
            database_url=env.get("STATEMENTS_DATABASE_URL") or DEFAULT_DATABASE_URL,
            database_schema=env.get("STATEMENTS_DATABASE_SCHEMA") or None,
            production=env.get("STATEMENTS_PRODUCTION", "").lower() in ("1", "true", "yes"),
            allow_list_path=env.get("STATEMENTS_ALLOW_LIST") or None,
            run_projections=env.get("STATEMENTS_RUN_PROJECTIONS", "1").lower()
            not in ("0", "false", "no"),
            read_cache_rows=_count(env, "STATEMENTS_READ_CACHE_ROWS", DEFAULT_READ_CACHE_ROWS),
            max_request_bytes=_count(
                env, "STATEMENTS_MAX_REQUEST_BYTES", DEFAULT_MAX_REQUEST_BYTES, minimum=1
            ),
            position_wait_seconds=_number(
                env, "STATEMENTS_POSITION_WAIT_SECONDS", 5.0, minimum=0.0
            ),
            view_rate=_number(env, "STATEMENTS_VIEW_RATE", 10.0, minimum=0.001),
            view_burst=_number(env, "STATEMENTS_VIEW_BURST", 20.0, minimum=1.0),
            ingest_view_rate=_number(env, "STATEMENTS_INGEST_VIEW_RATE", 1000.0, minimum=0.001),
            ingest_view_burst=_number(env, "STATEMENTS_INGEST_VIEW_BURST", 2000.0, minimum=1.0),
            ingest_max_batch_views=_count(
                env, "STATEMENTS_INGEST_MAX_BATCH", MAX_VIEWS_PER_BATCH, minimum=1
            ),
            trusted_proxies=_networks(env, "STATEMENTS_TRUSTED_PROXIES"),
            signing_key_path=env.get("STATEMENTS_SIGNING_KEY") or None,
            log_origin=env.get("STATEMENTS_LOG_ORIGIN") or DEFAULT_LOG_ORIGIN,
            checkpoint_interval=_count(
                env, "STATEMENTS_CHECKPOINT_INTERVAL", DEFAULT_CHECKPOINT_INTERVAL
            ),
            cors_origins=_origins(env, "STATEMENTS_CORS_ORIGINS"),
            access_log=_access_log_mode(env, "STATEMENTS_ACCESS_LOG"),
            access_log_rate=_rate(env, "STATEMENTS_ACCESS_LOG_RATE", 0.01),
            slow_request_ms=_number(env, "STATEMENTS_SLOW_REQUEST_MS", 1000.0, minimum=0.0),
            read_replica_urls=_replica_urls(env, "STATEMENTS_READ_REPLICA_URLS"),
            replica_max_lag=_number(
                env, "STATEMENTS_REPLICA_MAX_LAG", DEFAULT_REPLICA_MAX_LAG, minimum=0.1
            ),
            compiled_executor=_switch(env, "STATEMENTS_COMPILED_EXECUTOR", True),
            site_count_views=_switch(env, "STATEMENTS_SITE_COUNT_VIEWS", True),
            site_bot_agents=_pattern(env, "STATEMENTS_SITE_BOT_AGENTS", DEFAULT_SITE_BOT_AGENTS),
        )

    def with_changes(self, **changes: object) -> Self:
        return replace(self, **changes)  # type: ignore[arg-type]
