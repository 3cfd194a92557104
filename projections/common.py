"""What the projections share: decoding, dialect-neutral upserts, batched loads and DDL."""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, Final, TypeVar

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from eventstore import RecordedEvent
from projections.registry import event_registry

_REGISTRY: Final = event_registry()

#: Rows per statement when loading by key: far below SQLite's and asyncpg's parameter limits.
CHUNK: Final = 500

T = TypeVar("T")


def type_name(cls: type) -> str:
    """The stored type name of a domain event class."""
    return _REGISTRY.type_of(cls)[0]


def type_version(cls: type) -> int:
    """The current schema version of a domain event class."""
    return _REGISTRY.type_of(cls)[1]


def type_names(*classes: type) -> frozenset[str]:
    """The stored type names of domain event classes: a projection's ``types``."""
    return frozenset(type_name(cls) for cls in classes)


def decode(record: RecordedEvent) -> object:
    """The domain event a record holds, upcast to the current schema."""
    return _REGISTRY.decode(record)


def chunks(items: Sequence[T], size: int = CHUNK) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def dumps(value: Any) -> str:
    """Compact JSON for text columns; deterministic so that replays give equal tables."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def is_postgres(conn: AsyncConnection) -> bool:
    return conn.dialect.name == "postgresql"


async def upsert(
    conn: AsyncConnection,
    table: sa.Table,
    rows: Sequence[Mapping[str, Any]],
    keys: Sequence[str],
    *,
    replace: Iterable[str] = (),
    add: Iterable[str] = (),
) -> None:
    """INSERT each row, or on a key conflict set ``replace`` columns and add to ``add`` ones.

    Callers aggregate first, so no key appears twice in ``rows`` (PostgreSQL rejects a multi-row
    upsert that touches one row twice).
    """
    if not rows:
        return
    statement = _upsert_statement(conn.dialect.name, table, tuple(keys), tuple(replace), tuple(add))
    await conn.execute(statement, list(rows))


@functools.lru_cache(maxsize=256)
def _upsert_statement(
    dialect: str,
    table: sa.Table,
    keys: tuple[str, ...],
    replace: tuple[str, ...],
    add: tuple[str, ...],
) -> Any:
    # Both dialects' insert() constructs support ON CONFLICT with identical signatures.
    # Cached: building the construct (its ``excluded`` alias above all) cost more than running
    # it for the handful of rows a live batch writes.
    statement = postgresql.insert(table) if dialect == "postgresql" else sqlite.insert(table)
    excluded = statement.excluded
    updates: dict[str, Any] = {name: excluded[name] for name in replace}
    for name in add:
        updates[name] = table.c[name] + excluded[name]
    if updates:
        return statement.on_conflict_do_update(index_elements=list(keys), set_=updates)
    return statement.on_conflict_do_nothing(index_elements=list(keys))


async def delete_keys(
    conn: AsyncConnection, table: sa.Table, keys: Sequence[str], rows: Sequence[Mapping[str, Any]]
) -> None:
    """DELETE the rows whose key columns equal each mapping in ``rows`` (one executemany)."""
    if not rows:
        return
    where = [table.c[name] == sa.bindparam(f"k_{name}") for name in keys]
    params = [{f"k_{name}": row[name] for name in keys} for row in rows]
    await conn.execute(table.delete().where(*where), params)


async def add_to(
    conn: AsyncConnection,
    table: sa.Table,
    key: str,
    column: str,
    deltas: Mapping[Any, int],
) -> None:
    """UPDATE ``column = column + delta`` for each key; rows that do not exist stay absent."""
    params = [{"k_key": k, "k_delta": d} for k, d in deltas.items() if d]
    if not params:
        return
    statement = (
        table.update()
        .where(table.c[key] == sa.bindparam("k_key"))
        .values({column: table.c[column] + sa.bindparam("k_delta")})
    )
    await conn.execute(statement, params)


async def load_by_ids(
    conn: AsyncConnection,
    table: sa.Table,
    key: str,
    ids: Iterable[str],
    convert: Callable[[Any], T],
) -> dict[str, T]:
    """The rows of ``table`` whose ``key`` is one of ``ids``, converted, by key."""
    wanted = sorted(set(ids))
    found: dict[str, T] = {}
    for part in chunks(wanted):
        result = await conn.execute(sa.select(table).where(table.c[key].in_(part)))
        for row in result:
            found[row._mapping[key]] = convert(row)
    return found


async def create_tables(conn: AsyncConnection, tables: Iterable[sa.Table]) -> None:
    """CREATE each table and its indexes (the index names already follow the mapped names)."""
    for table in tables:
        await conn.execute(sa.schema.CreateTable(table))
        for index in sorted(table.indexes, key=lambda i: str(i.name)):
            await conn.execute(sa.schema.CreateIndex(index))


def names_key(tables: Mapping[str, str], owned: Sequence[str]) -> tuple[str, ...]:
    """A hashable key for caching the Table objects of one mapping of names."""
    return tuple(tables[name] for name in owned)
