"""Time-ordered UUIDs (RFC 9562 version 7): they keep B-tree inserts local, unlike UUIDv4."""

from __future__ import annotations

import os
import random
import threading
import time
import uuid
from typing import Any

_lock = threading.Lock()
_last_ms = 0
_counter = 0
# Seeded from the OS once: uniqueness comes from the time, the counter and 62 random bits,
# and a syscall per id would double the cost of making an event.
_random = random.Random(os.urandom(32))


def uuid7() -> uuid.UUID:
    """Return a new UUIDv7; ids made in one process are strictly increasing."""
    global _last_ms, _counter
    with _lock:
        ms = time.time_ns() // 1_000_000
        if ms > _last_ms:
            _last_ms = ms
            _counter = _random.getrandbits(9)
        else:
            # Same millisecond (or a clock step back): keep order with a 12-bit counter,
            # borrowing the next millisecond when it overflows.
            _counter += 1
            if _counter > 0xFFF:
                _last_ms += 1
                _counter = 0
        ms, counter = _last_ms, _counter
        rand = _random.getrandbits(62)
    return uuid_from_int(
        (ms & 0xFFFF_FFFF_FFFF) << 80 | 0x7 << 76 | counter << 64 | 0b10 << 62 | rand
    )


def uuid_from_int(
    value: int, _new: Any = object.__new__, _set: Any = object.__setattr__
) -> uuid.UUID:
    """A UUID from a 128-bit integer known to be valid, without uuid.UUID's re-checks."""
    # Setting the two slots directly (what UUID's constructor ends with) halves the cost.
    made = _new(uuid.UUID)
    _set(made, "int", value)
    _set(made, "is_safe", uuid.SafeUUID.unknown)
    return made  # type: ignore[no-any-return]


def uuid_from_text(text: str) -> uuid.UUID:
    """A UUID from its canonical text (as the store writes it), without re-validation."""
    return uuid_from_int(int(text.replace("-", ""), 16))
