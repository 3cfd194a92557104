"""Settings: the one place that reads the environment."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Self
from urllib.parse import urlsplit

DEFAULT_DATABASE_URL = "sqlite:///./statements.db"
#: About 30 MB at the demo's statement sizes.
DEFAULT_READ_CACHE_ROWS = 20_000


def _count(env: Mapping[str, str], name: str, default: int) -> int:
    text = env.get(name, "").strip()
    if not text:
        return default
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise ValueError(f"{name} must be a whole number >= 0, not {text!r}")
    return value


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
    #: Rows of recent read-model results kept in memory while the SQLite file is unchanged
    #: (``eventstore.reader``); 0 turns that cache off. PostgreSQL readers never cache.
    read_cache_rows: int = DEFAULT_READ_CACHE_ROWS
    #: Browser origins (``https://app.example.com``) whose pages may call the API (CORS);
    #: empty, the default, lets none.
    cors_origins: tuple[str, ...] = ()

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
            cors_origins=_origins(env, "STATEMENTS_CORS_ORIGINS"),
        )

    def with_changes(self, **changes: object) -> Self:
        return replace(self, **changes)  # type: ignore[arg-type]
