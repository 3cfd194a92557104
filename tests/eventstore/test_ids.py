"""Event ids: UUIDv7, increasing within a process, even many in one millisecond."""

from __future__ import annotations

import itertools
import threading
import time
import uuid

from eventstore.ids import uuid7, uuid_from_int, uuid_from_text


def test_ids_are_version_7_increasing_and_carry_the_time() -> None:
    before = time.time_ns() // 1_000_000
    ids = [uuid7() for _ in range(50_000)]  # far more than one millisecond's worth
    after = time.time_ns() // 1_000_000
    assert all(isinstance(i, uuid.UUID) for i in ids)
    assert {(i.version, i.variant) for i in ids} == {(7, uuid.RFC_4122)}
    assert all(a.int < b.int for a, b in itertools.pairwise(ids))
    assert before <= ids[0].int >> 80 <= ids[-1].int >> 80 <= after + 1


def test_ids_made_by_several_threads_are_unique() -> None:
    made: list[list[uuid.UUID]] = [[] for _ in range(4)]

    def make(out: list[uuid.UUID]) -> None:
        out.extend(uuid7() for _ in range(10_000))

    threads = [threading.Thread(target=make, args=(out,)) for out in made]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len({i for out in made for i in out}) == 40_000
    assert all(all(a.int < b.int for a, b in itertools.pairwise(out)) for out in made)


def test_ids_round_trip_through_text_and_int() -> None:
    made = uuid7()
    assert uuid_from_text(str(made)) == made == uuid_from_int(made.int)
    assert str(uuid_from_text(str(made))) == str(made)
