"""Settings: the one place that reads the environment."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Self

DEFAULT_DATABASE_URL = "sqlite:///./statements.db"
#: About 30 MB at the demo's statement sizes.
DEFAULT_READ_CACHE_ROWS = 20_000
#: The log's name in its checkpoints when it has no signing key (a key's name wins).
DEFAULT_LOG_ORIGIN = "localhost/statements"
#: Seconds between checkpoints while the log grows (auditors may ask for one at any time).
DEFAULT_CHECKPOINT_INTERVAL = 60


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
    #: The file of the Ed25519 key that signs the log's checkpoints (``statements keys
    #: create`` writes it); without one, checkpoints are made unsigned.
    signing_key_path: str | None = None
    log_origin: str = DEFAULT_LOG_ORIGIN
    checkpoint_interval: int = DEFAULT_CHECKPOINT_INTERVAL

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
            signing_key_path=env.get("STATEMENTS_SIGNING_KEY") or None,
            log_origin=env.get("STATEMENTS_LOG_ORIGIN") or DEFAULT_LOG_ORIGIN,
            checkpoint_interval=_count(
                env, "STATEMENTS_CHECKPOINT_INTERVAL", DEFAULT_CHECKPOINT_INTERVAL
            ),
        )

    def with_changes(self, **changes: object) -> Self:
        return replace(self, **changes)  # type: ignore[arg-type]
