"""Bearer tokens: a ``tokens`` table that keeps only hashes, and the role checks resolvers use.

A token is ``st_`` followed by 43 random URL-safe characters (32 bytes from ``secrets``); it is
shown once by :func:`create_token` and only its SHA-256 is stored. Lookups go by the hash (an
index), then compare the stored and computed hashes in constant time. Tokens are never logged.

Roles: ``editor`` may call every mutation but ``recordViews``, ``auditor`` may read the audit
fields, ``ingest`` records views for many readers, one by one or in ``recordViews`` batches,
under a limit of its own (:mod:`graphql_api.security.ratelimit`);
anyone, without a token, may query and call ``recordView``. A token's ``name`` is the actor
recorded in the metadata of the events its requests cause.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final, Literal, cast, get_args

import sqlalchemy as sa
from cachetools import TTLCache
from sqlalchemy.ext.asyncio import AsyncEngine
from strawberry.permission import BasePermission

from graphql_api.errors import Forbidden, Unauthenticated

Role = Literal["editor", "auditor", "ingest"]
ROLES: Final[tuple[str, ...]] = get_args(Role)
TOKEN_PREFIX: Final = "st_"
MAX_TOKEN_LENGTH: Final = 200
MAX_NAME_LENGTH: Final = 100

metadata = sa.MetaData()

tokens = sa.Table(
    "tokens",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("name", sa.Text(), nullable=False),
    sa.Column("role", sa.Text(), nullable=False),
    sa.Column("token_hash", sa.String(64), nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
    sa.UniqueConstraint("name", name="tokens_name"),
    sa.UniqueConstraint("token_hash", name="tokens_token_hash"),
)

_SETUP_LOCK_KEY: Final = 0x5354_4B4E  # "STKN", for pg_advisory_xact_lock


class TokenNameTaken(ValueError):
    """A token with this name exists already (names are actors: they stay unique)."""


@dataclass(frozen=True, slots=True)
class Principal:
    """Who a request acts as: the token's id, its name (the actor) and its role."""

    token_id: str
    name: str
    role: Role

    def has_role(self, role: str) -> bool:
        return self.role == role


@dataclass(frozen=True, slots=True)
class TokenRecord:
    """A stored token, without the secret."""

    id: str
    name: str
    role: Role
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None

    def is_active(self, now: datetime) -> bool:
        return self.revoked_at is None and (self.expires_at is None or now < self.expires_at)


def hash_token(token: str) -> str:
    """The hex SHA-256 stored for a token."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def _utc(value: datetime | None) -> datetime | None:
    # SQLite hands back naive datetimes; everything stored here is UTC.
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _record(row: Any) -> TokenRecord:
    created = _utc(row.created_at)
    assert created is not None
    return TokenRecord(
        id=row.id,
        name=row.name,
        role=cast(Role, row.role),
        created_at=created,
        expires_at=_utc(row.expires_at),
        revoked_at=_utc(row.revoked_at),
    )


async def setup_tokens(engine: AsyncEngine) -> None:
    """Create the ``tokens`` table if it does not exist (safe to run from several processes)."""
    async with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            await conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": _SETUP_LOCK_KEY})
        await conn.run_sync(metadata.create_all)


def _check_name(name: str) -> str:
    cleaned = " ".join(name.split())
    if not cleaned:
        raise ValueError("a token needs a non-empty name")
    if len(cleaned) > MAX_NAME_LENGTH:
        raise ValueError(f"a token name has at most {MAX_NAME_LENGTH} characters")
    if not cleaned.isprintable():
        raise ValueError("a token name must be printable text")
    return cleaned


async def create_token(
    engine: AsyncEngine,
    role: str,
    name: str,
    expires_in: timedelta | None = None,
    *,
    now: datetime | None = None,
) -> tuple[str, TokenRecord]:
    """Make a token; returns its plaintext (show it once, it is not stored) and its record."""
    if role not in ROLES:
        raise ValueError(f"role {role!r} is not one of: {', '.join(ROLES)}")
    if expires_in is not None and expires_in <= timedelta(0):
        raise ValueError("expires_in must be positive")
    name = _check_name(name)
    created = (now or datetime.now(UTC)).astimezone(UTC)
    plaintext = TOKEN_PREFIX + secrets.token_urlsafe(32)
    record = TokenRecord(
        id=str(uuid.uuid4()),
        name=name,
        role=cast(Role, role),
        created_at=created,
        expires_at=created + expires_in if expires_in is not None else None,
        revoked_at=None,
    )
    try:
        async with engine.begin() as conn:
            await conn.execute(
                tokens.insert().values(
                    id=record.id,
                    name=record.name,
                    role=record.role,
                    token_hash=hash_token(plaintext),
                    created_at=record.created_at,
                    expires_at=record.expires_at,
                    revoked_at=None,
                )
            )
    except sa.exc.IntegrityError as exc:
        raise TokenNameTaken(f"a token named {name!r} exists already") from exc
    return plaintext, record


async def revoke_token(
    engine: AsyncEngine, name_or_id: str, *, now: datetime | None = None
) -> TokenRecord | None:
    """Revoke the token with this name or id; None if there is none. Revoking twice is a no-op.

    Processes that cache lookups (:class:`TokenAuthenticator`) see it within their TTL.
    """
    when = (now or datetime.now(UTC)).astimezone(UTC)
    match = sa.or_(tokens.c.name == name_or_id, tokens.c.id == name_or_id)
    async with engine.begin() as conn:
        await conn.execute(
            tokens.update().where(match, tokens.c.revoked_at.is_(None)).values(revoked_at=when)
        )
        row = (await conn.execute(sa.select(tokens).where(match))).first()
    return _record(row) if row is not None else None


async def list_tokens(engine: AsyncEngine) -> list[TokenRecord]:
    """Every token, oldest first (no secrets: only hashes are stored)."""
    async with engine.connect() as conn:
        rows = (await conn.execute(sa.select(tokens).order_by(tokens.c.created_at))).all()
    return [_record(row) for row in rows]


def well_formed(token: str) -> bool:
    """Whether ``token`` looks like one of ours (checked before any database lookup)."""
    return (
        token.startswith(TOKEN_PREFIX)
        and len(token) <= MAX_TOKEN_LENGTH
        and token.isascii()
        and token.isprintable()
    )


async def authenticate(
    engine: AsyncEngine, bearer: str, *, now: datetime | None = None
) -> Principal | None:
    """The principal of an active token, or None for an unknown, expired or revoked one."""
    if not well_formed(bearer):
        return None
    digest = hash_token(bearer)
    async with engine.connect() as conn:
        row = (await conn.execute(sa.select(tokens).where(tokens.c.token_hash == digest))).first()
    if row is None or not hmac.compare_digest(str(row.token_hash), digest):
        return None
    record = _record(row)
    if not record.is_active((now or datetime.now(UTC)).astimezone(UTC)):
        return None
    return Principal(token_id=record.id, name=record.name, role=record.role)


_MISSING: Final = object()


class TokenAuthenticator:
    """:func:`authenticate` with a short per-process cache (``ttl`` seconds, LRU-bounded).

    Revocation and expiry take effect within ``ttl`` (1 s by default). Unknown tokens are
    cached too, so a client repeating a bad token does not cost a query each time.
    """

    def __init__(self, engine: AsyncEngine, *, ttl: float = 1.0, max_entries: int = 10_000):
        self.engine = engine
        self.ttl = ttl
        self.max_entries = max_entries
        # Unknown tokens are cached as None, so a miss is told apart by a sentinel.
        self._cache: TTLCache[str, Principal | None] = TTLCache(maxsize=max_entries, ttl=ttl)

    async def __call__(self, bearer: str) -> Principal | None:
        if not well_formed(bearer):
            return None
        key = hash_token(bearer)
        cached = self._cache.get(key, _MISSING)
        if cached is not _MISSING:
            return cast("Principal | None", cached)
        principal = await authenticate(self.engine, bearer)
        self._cache[key] = principal
        return principal

    def clear(self) -> None:
        self._cache.clear()


# --- role checks for resolvers -------------------------------------------------------------


def require_role(info: Any, role: str) -> Principal:
    """The request's principal if it has ``role``; else UNAUTHENTICATED or FORBIDDEN.

    ``info`` is the resolver's ``strawberry.Info``; its context has a ``principal``.
    """
    principal: Principal | None = getattr(info.context, "principal", None)
    field = info.field_name
    if principal is None:
        raise Unauthenticated(
            f"{field}: needs a token with the {role} role (send 'Authorization: Bearer <token>')"
        )
    if not principal.has_role(role):
        raise Forbidden(f"{field}: needs the {role} role; the token has the {principal.role} role")
    return principal


class _RoleRequired(BasePermission):
    role: str = ""

    def has_permission(self, source: Any, info: Any, **kwargs: Any) -> bool:
        require_role(info, self.role)
        return True


class EditorRequired(_RoleRequired):
    """Strawberry permission: the field needs an editor token."""

    role = "editor"


class AuditorRequired(_RoleRequired):
    """Strawberry permission: the field needs an auditor token (for the audit fields)."""

    role = "auditor"
