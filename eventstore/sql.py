"""The event store's tables, shared by the SQLite and PostgreSQL backends."""

from __future__ import annotations

from typing import Any, Final

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from eventstore.records import RecordedEvent

#: Bumped whenever the tables change; setup() refuses a database with a newer one.
#: 2: the Merkle tree (``events.tree``, ``merkle_nodes``) and ``eventstore_checkpoints``.
SCHEMA_VERSION: Final = 2

metadata = sa.MetaData()

events = sa.Table(
    "events",
    metadata,
    # Positions are assigned under the append lock, so they are gapless and commit in order.
    sa.Column(
        "position",
        sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
        primary_key=True,
        autoincrement=False,
    ),
    sa.Column("stream_id", sa.Text(), nullable=False),
    sa.Column("version", sa.BigInteger(), nullable=False),
    sa.Column(
        "event_id",
        sa.Text().with_variant(postgresql.UUID(as_uuid=False), "postgresql"),
        nullable=False,
    ),
    sa.Column("type", sa.Text(), nullable=False),
    sa.Column("schema_version", sa.Integer(), nullable=False),
    # Text, not JSONB: the exact bytes are hashed and must never be rewritten.
    sa.Column("data", sa.Text(), nullable=False),
    sa.Column("metadata", sa.Text(), nullable=False),
    sa.Column("recorded_at", sa.BigInteger(), nullable=False),  # microseconds since the epoch, UTC
    sa.Column("hash", sa.LargeBinary(), nullable=False),
    # The Merkle nodes that end at this event (eventstore.merkle), written with it. Null for
    # events written before the store kept a tree: theirs are in merkle_nodes, since
    # triggers refuse any UPDATE of an event.
    sa.Column("tree", sa.LargeBinary(), nullable=True),
    sa.UniqueConstraint("stream_id", "version", name="events_stream_version"),
    sa.UniqueConstraint("event_id", name="events_event_id"),
)

merkle_nodes = sa.Table(
    "merkle_nodes",
    metadata,
    sa.Column(
        "position",
        sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
        primary_key=True,
        autoincrement=False,
    ),
    sa.Column("nodes", sa.LargeBinary(), nullable=False),
)

#: Every checkpoint the store made, signed or not, so any saved one can be proven later.
checkpoints = sa.Table(
    "eventstore_checkpoints",
    metadata,
    sa.Column(
        "id",
        sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
        primary_key=True,
        autoincrement=True,
    ),
    sa.Column("tree_size", sa.BigInteger(), nullable=False, index=True),
    sa.Column("root_hash", sa.LargeBinary(), nullable=False),
    sa.Column("origin", sa.Text(), nullable=False),
    sa.Column("note", sa.Text(), nullable=False),  # the signed note, or the bare body
    sa.Column("signed", sa.Boolean(), nullable=False),
    sa.Column("created_at", sa.BigInteger(), nullable=False),  # microseconds since the epoch
)

schema_info = sa.Table(
    "eventstore_schema",
    metadata,
    sa.Column("component", sa.Text(), primary_key=True),
    sa.Column("version", sa.Integer(), nullable=False),
)

COLUMNS: Final = (
    "position, stream_id, version, event_id, type, schema_version, data, metadata, "
    "recorded_at, hash"
)
#: What an append writes when the store keeps the Merkle tree.
TREE_COLUMNS: Final = f"{COLUMNS}, tree"

SQLITE_GUARDS: Final = (
    """CREATE TRIGGER IF NOT EXISTS events_refuse_update BEFORE UPDATE ON events
       BEGIN SELECT RAISE(ABORT, 'events are append-only: UPDATE refused'); END""",
    """CREATE TRIGGER IF NOT EXISTS events_refuse_delete BEFORE DELETE ON events
       BEGIN SELECT RAISE(ABORT, 'events are append-only: DELETE refused'); END""",
)

POSTGRES_GUARDS: Final = (
    """CREATE OR REPLACE FUNCTION events_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
       BEGIN RAISE EXCEPTION 'events are append-only: % refused', TG_OP; END $$""",
    "DROP TRIGGER IF EXISTS events_refuse_change ON events",
    """CREATE TRIGGER events_refuse_change BEFORE UPDATE OR DELETE OR TRUNCATE ON events
       FOR EACH STATEMENT EXECUTE FUNCTION events_refuse_change()""",
)


def record_from_row(row: Any) -> RecordedEvent:
    """Build a RecordedEvent from a row in COLUMNS order."""
    return RecordedEvent(*row)
