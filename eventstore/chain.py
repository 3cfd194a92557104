"""The hash chain that makes the log tamper-evident (its encoding is in docs/AUDIT.md)."""

from __future__ import annotations

import hashlib
from typing import Final

GENESIS_HASH: Final = bytes(32)


def _field(value: str) -> bytes:
    raw = value.encode("utf-8")
    return len(raw).to_bytes(8, "big") + raw


def record_hash(
    previous: bytes,
    position: int,
    stream_id: str,
    version: int,
    event_id: str,
    type_: str,
    schema_version: int,
    data: str,
    metadata: str,
    recorded_at_us: int,
) -> bytes:
    """SHA-256 of the previous hash followed by every field, each length-prefixed."""
    # Length prefixes make the encoding unambiguous whatever bytes the fields hold.
    h = hashlib.sha256(previous)
    h.update(
        b"".join(
            (
                _field(str(position)),
                _field(stream_id),
                _field(str(version)),
                _field(event_id),
                _field(type_),
                _field(str(schema_version)),
                _field(data),
                _field(metadata),
                _field(str(recorded_at_us)),
            )
        )
    )
    return h.digest()
