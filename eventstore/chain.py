"""The hash chain that makes the log tamper-evident (its encoding is in docs/AUDIT.md)."""

from __future__ import annotations

from hashlib import sha256
from typing import Final

GENESIS_HASH: Final = bytes(32)


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
    fields = (
        str(position).encode(),
        stream_id.encode(),
        str(version).encode(),
        event_id.encode(),
        type_.encode(),
        str(schema_version).encode(),
        data.encode(),
        metadata.encode(),
        str(recorded_at_us).encode(),
    )
    h = sha256(previous)
    for raw in fields:
        h.update(len(raw).to_bytes(8, "big"))
        h.update(raw)
    return h.digest()
