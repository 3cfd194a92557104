"""Database URLs: which backend a URL names, and the async SQLAlchemy engine for it."""

from __future__ import annotations

from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from eventstore.sqlite_inline import DRIVER as INLINE_DRIVER  # registers sqlite+inline

Backend = Literal["memory", "sqlite", "postgresql"]

#: Server-side TCP keepalives for every PostgreSQL connection. A process that dies has its
#: sockets closed by its kernel, but a host that vanishes (power, cable) closes nothing: without
#: these the server would keep its sessions, their advisory locks and any open transaction's row
#: locks for the kernel's default two hours. With them a silent peer is dropped after about 5 s
#: (probes from 2 s of silence, given up once 5 s pass unanswered), and with its session go the
#: leader locks that let another host take over its projections.
PG_KEEPALIVES: dict[str, str] = {
    "tcp_keepalives_idle": "2",
    "tcp_keepalives_interval": "1",
    "tcp_keepalives_count": "3",
    "tcp_user_timeout": "5000",
}


def backend_of(url: str) -> Backend:
    """Name the backend of a database URL, or raise ValueError naming what is wrong with it."""
    if url.startswith("memory:"):
        return "memory"
    try:
        driver = make_url(url).drivername
    except sa.exc.ArgumentError as exc:
        raise ValueError(f"not a database URL: {url!r}") from exc
    if driver.startswith("sqlite"):
        return "sqlite"
    if driver.startswith(("postgresql", "postgres")):
        return "postgresql"
    raise ValueError(f"unsupported database {driver!r} in {url!r}: use sqlite:/// or postgresql://")


def async_url(url: str) -> str:
    """The same URL with the async driver chosen: aiosqlite or asyncpg."""
    parsed = make_url(url)
    backend = backend_of(url)
    if backend == "sqlite":
        parsed = parsed.set(drivername="sqlite+aiosqlite")
    elif backend == "postgresql":
        parsed = parsed.set(drivername="postgresql+asyncpg")
    return parsed.render_as_string(hide_password=False)


def create_engine(
    url: str,
    *,
    schema: str | None = None,
    busy_timeout: float = 5.0,
    sqlite_inline: bool = True,
    **kwargs: Any,
) -> AsyncEngine:
    """An async engine for a sqlite or postgresql URL; ``schema`` sets PostgreSQL's search path.

    On SQLite the engine reads on the event loop's thread and writes on a thread per connection
    (:mod:`eventstore.sqlite_inline`); ``sqlite_inline=False`` uses aiosqlite for everything.
    """
    backend = backend_of(url)
    if backend == "memory":
        raise ValueError("the memory backend has no SQL engine")
    connect_args: dict[str, Any] = dict(kwargs.pop("connect_args", {}))
    if backend == "postgresql":
        settings = {**PG_KEEPALIVES, **dict(connect_args.get("server_settings", {}))}
        if schema is not None:
            settings["search_path"] = schema
        connect_args["server_settings"] = settings
    if backend == "sqlite":
        connect_args.setdefault("timeout", busy_timeout)
    engine_url = async_url(url)
    if backend == "sqlite" and sqlite_inline:
        inline = make_url(engine_url).set(drivername=f"sqlite+{INLINE_DRIVER}")
        engine_url = inline.render_as_string(hide_password=False)
    engine = create_async_engine(engine_url, connect_args=connect_args, **kwargs)
    if backend == "sqlite":
        timeout_ms = int(busy_timeout * 1000)

        @sa.event.listens_for(engine.sync_engine, "connect")
        def _pragmas(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute(f"PRAGMA busy_timeout = {timeout_ms}")
            cursor.execute("PRAGMA journal_mode")
            if str(cursor.fetchone()[0]).lower() != "wal":  # switching may wait for a lock
                cursor.execute("PRAGMA journal_mode = WAL")
            cursor.execute("PRAGMA synchronous = FULL")
            cursor.close()

    return engine
