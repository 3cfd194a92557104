"""The hash chain that makes the log tamper-evident, and the record encoding it shares with the
Merkle tree's leaves (both in docs/AUDIT.md)."""

from __future__ import annotations

import struct
from hashlib import sha256
from typing import Final

GENESIS_HASH: Final = bytes(32)

_length: Final = struct.Struct(">Q").pack  # F(text)'s 8-byte big-endian length prefix


def record_encoding(
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
    """Every field, each length-prefixed: record(P), which the chain and the Merkle leaf hash."""
    # Length prefixes make the encoding unambiguous whatever bytes the fields hold. One join
    # instead of eighteen hash updates: this runs for every appended event, and the method
    # calls were most of its cost (2.7 -> 2.4 µs for a 500-byte event).
    position_b = b"%d" % position
    stream_b = stream_id.encode()
    version_b = b"%d" % version
    event_b = event_id.encode()
    type_b = type_.encode()
    schema_b = b"%d" % schema_version
    data_b = data.encode()
    metadata_b = metadata.encode()
    recorded_b = b"%d" % recorded_at_us
    return b"".join(
        (
            _length(len(position_b)),
            position_b,
            _length(len(stream_b)),
            stream_b,
            _length(len(version_b)),
            version_b,
            _length(len(event_b)),
            event_b,
            _length(len(type_b)),
            type_b,
            _length(len(schema_b)),
            schema_b,
            _length(len(data_b)),
            data_b,
            _length(len(metadata_b)),
            metadata_b,
            _length(len(recorded_b)),
            recorded_b,
        )
    )


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
    return sha256(
        previous
        + record_encoding(
            position,
            stream_id,
            version,
            event_id,
            type_,
            schema_version,
            data,
            metadata,
            recorded_at_us,
        )
    ).digest()
