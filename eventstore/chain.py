"""The hash chain that makes the log tamper-evident, and the record encoding it shares with the
Merkle tree's leaves (both in docs/AUDIT.md)."""

from __future__ import annotations

import struct
from hashlib import sha256
from typing import Final

GENESIS_HASH: Final = bytes(32)

_length: Final = struct.Struct(">Q").pack  # F(text)'s 8-byte big-endian length prefix


#: Length prefixes of short fields, looked up rather than packed: this runs twice for every
#: appended event (chain and Merkle leaf) and once per event in every verification.
_SHORT: Final = tuple(_length(n) for n in range(2048))


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
    # instead of eighteen hash updates, and prefixes from a table: the calls were most of the
    # cost of this function.
    short = _SHORT
    position_b = b"%d" % position
    stream_b = stream_id.encode()
    version_b = b"%d" % version
    event_b = event_id.encode()
    type_b = type_.encode()
    schema_b = b"%d" % schema_version
    data_b = data.encode()
    metadata_b = metadata.encode()
    recorded_b = b"%d" % recorded_at_us
    n1, n2, n3, n4 = len(position_b), len(stream_b), len(version_b), len(event_b)
    n5, n6, n9 = len(type_b), len(schema_b), len(recorded_b)
    return b"".join(
        (
            short[n1] if n1 < 2048 else _length(n1),
            position_b,
            short[n2] if n2 < 2048 else _length(n2),
            stream_b,
            short[n3] if n3 < 2048 else _length(n3),
            version_b,
            short[n4] if n4 < 2048 else _length(n4),
            event_b,
            short[n5] if n5 < 2048 else _length(n5),
            type_b,
            short[n6] if n6 < 2048 else _length(n6),
            schema_b,
            _length(len(data_b)),
            data_b,
            _length(len(metadata_b)),
            metadata_b,
            short[n9] if n9 < 2048 else _length(n9),
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
