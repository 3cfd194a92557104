"""record_hash against the encoding docs/AUDIT.md specifies, so a faster version cannot drift."""

from __future__ import annotations

from hashlib import sha256

from hypothesis import given
from hypothesis import strategies as st

from eventstore.chain import GENESIS_HASH, record_hash


def reference(previous: bytes, *fields: object) -> bytes:
    """H(previous || F(position) || F(stream_id) || ...), F = 8-byte big-endian length + UTF-8."""
    h = sha256(previous)
    for field in fields:
        raw = str(field).encode("utf-8")
        h.update(len(raw).to_bytes(8, "big") + raw)
    return h.digest()


def test_a_known_record_keeps_its_digest() -> None:
    # Computed by the original implementation: stored chains must keep verifying.
    digest = record_hash(
        GENESIS_HASH,
        1,
        "s",
        1,
        "0190b6f0-0000-7000-8000-000000000000",
        "Published",
        2,
        '{"n":1,"title":"Привет"}',
        '{"actor":"ed"}',
        1732752000000000,
    )
    assert digest.hex() == "1b05d86c9f9848b8a5357b1021a335b41392426ccd71bde44fd4dcb9c9c422e4"


@given(
    previous=st.binary(min_size=32, max_size=32),
    position=st.integers(min_value=1, max_value=2**63 - 1),
    stream_id=st.text(min_size=1),
    version=st.integers(min_value=1, max_value=2**63 - 1),
    event_id=st.uuids().map(str),
    type_=st.text(min_size=1),
    schema_version=st.integers(min_value=1, max_value=2**31 - 1),
    data=st.text(),
    metadata=st.text(),
    recorded_at_us=st.integers(min_value=0, max_value=2**63 - 1),
)
def test_record_hash_follows_the_documented_encoding(
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
) -> None:
    fields = (position, stream_id, version, event_id, type_, schema_version, data, metadata)
    assert record_hash(previous, *fields, recorded_at_us) == reference(
        previous, *fields, recorded_at_us
    )
