"""The event registry: dataclass round trips, upcasting on read, and errors that say where."""

from __future__ import annotations

import dataclasses
import datetime as dt

import pytest

from eventstore import EventRegistry, SerializationError
from eventstore.memory import MemoryEventStore


@dataclasses.dataclass(frozen=True)
class Person:
    id: str
    name: str


@dataclasses.dataclass(frozen=True)
class Spoke:
    who: Person
    on: dt.date
    at: dt.datetime
    words: tuple[str, ...]
    place: str | None = None
    count: int = 0


@dataclasses.dataclass(frozen=True)
class Renamed:
    old: str
    new: str
    reason: str


def registry() -> EventRegistry:
    reg = EventRegistry()
    reg.register_all([Spoke])
    reg.register(Renamed, version=3)
    reg.add_upcaster("Renamed", 1, lambda d: {**d, "new": d.pop("name")})
    reg.add_upcaster("Renamed", 2, lambda d: {**d, "reason": "unknown"})
    return reg


async def test_round_trip_through_a_store() -> None:
    reg = registry()
    event = Spoke(
        Person("p1", "Sergey Lavrov"),
        dt.date(2014, 11, 8),
        dt.datetime(2014, 11, 17, 16, 58, tzinfo=dt.timezone(dt.timedelta(hours=3))),
        ("first", "second"),
        "Beijing",
        3,
    )
    async with MemoryEventStore() as store:
        await store.append("s", [reg.new_event(event, {"actor": "ed"})])
        (record,) = await store.load_stream("s")
    assert record.type == "Spoke" and record.schema_version == 1
    assert record.data["on"] == "2014-11-08"
    assert reg.decode(record) == event


def test_upcasters_run_in_a_chain() -> None:
    reg = registry()
    assert reg.decode_data("Renamed", 1, {"old": "a", "name": "b"}) == Renamed("a", "b", "unknown")
    assert reg.decode_data("Renamed", 3, {"old": "a", "new": "b", "reason": "r"}) == Renamed(
        "a", "b", "r"
    )
    reg.check()


def test_errors_name_type_version_and_position() -> None:
    reg = registry()
    with pytest.raises(SerializationError, match=r"unknown event type 'Nope' v1 at position 7"):
        reg.decode_data("Nope", 1, {}, 7)
    with pytest.raises(SerializationError, match=r"'Renamed' v4 at position 9 is newer"):
        reg.decode_data("Renamed", 4, {}, 9)
    with pytest.raises(SerializationError, match=r"'Spoke' v1 at position 1: Spoke is missing"):
        reg.decode_data("Spoke", 1, {"who": {"id": "x", "name": "y"}}, 1)


def test_a_gap_in_the_upcaster_chain_is_refused() -> None:
    reg = EventRegistry()
    reg.register(Renamed, version=3)
    reg.add_upcaster("Renamed", 1, lambda d: d)
    with pytest.raises(SerializationError, match="Renamed v2→v3"):
        reg.check()
    with pytest.raises(SerializationError, match="no upcaster for 'Renamed' from v2 to v3"):
        reg.decode_data("Renamed", 1, {"old": "a", "name": "b"}, 5)


def test_unregistered_class_is_refused() -> None:
    with pytest.raises(SerializationError, match="Person is not a registered event type"):
        registry().new_event(Person("a", "b"))
