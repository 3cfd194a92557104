"""Events, commands and errors keep the shapes the rest of the system relies on."""

from __future__ import annotations

import dataclasses
import inspect
import types
import typing
from datetime import date, datetime

import pytest

from domain import commands, errors, events
from domain.errors import DomainError

_SCALARS = (str, int, float, bool, type(None), date, datetime)


def _codec_friendly(hint: object) -> bool:
    origin = typing.get_origin(hint)
    if origin is None:
        if hint in _SCALARS:
            return True
        return (
            isinstance(hint, type)
            and dataclasses.is_dataclass(hint)
            and hint.__dataclass_params__.frozen  # type: ignore[attr-defined]
            and all(_codec_friendly(h) for h in typing.get_type_hints(hint).values())
        )
    args = typing.get_args(hint)
    if origin is tuple:
        return len(args) == 2 and args[1] is Ellipsis and _codec_friendly(args[0])
    if origin in (typing.Union, types.UnionType):
        return all(_codec_friendly(a) for a in args)
    return False


@pytest.mark.parametrize("event_type", events.EVENT_TYPES, ids=lambda t: t.__name__)
def test_events_are_frozen_slotted_dataclasses_of_codec_friendly_fields(
    event_type: type,
) -> None:
    assert dataclasses.is_dataclass(event_type)
    assert event_type.__dataclass_params__.frozen  # type: ignore[attr-defined]
    assert hasattr(event_type, "__slots__")
    for field in dataclasses.fields(event_type):
        # Real types, not strings, so that a codec can read them off the fields.
        assert not isinstance(field.type, str), field.name
        assert _codec_friendly(field.type), f"{event_type.__name__}.{field.name}: {field.type}"
    assert event_type.__doc__


def test_every_event_class_is_listed_once() -> None:
    defined = {
        obj
        for obj in vars(events).values()
        if inspect.isclass(obj) and obj.__module__ == events.__name__
    }
    assert set(events.EVENT_TYPES) | set(events.VALUE_TYPES) == defined
    assert len(set(events.EVENT_TYPES)) == len(events.EVENT_TYPES)
    names = [t.__name__ for t in events.EVENT_TYPES]
    assert len(set(names)) == len(names)


def test_commands_are_frozen_and_carry_metadata_and_expected_version() -> None:
    command_types = typing.get_args(commands.Command)
    assert len(command_types) == 10
    for command_type in command_types:
        assert command_type.__dataclass_params__.frozen
        names = {f.name for f in dataclasses.fields(command_type)}
        assert {"meta", "expected_version", "statement_id"} <= names


def test_every_error_has_a_known_code_and_a_docstring() -> None:
    classes = [
        obj
        for obj in vars(errors).values()
        if inspect.isclass(obj) and issubclass(obj, DomainError)
    ]
    assert len(classes) > 30
    for cls in classes:
        assert cls.code in ("BAD_USER_INPUT", "NOT_FOUND", "CONFLICT"), cls
        assert cls.__doc__, cls


def test_codes_of_notable_errors() -> None:
    assert errors.ConcurrencyConflict("s", 1, 2).code == "CONFLICT"
    assert errors.SlugTaken("a", "b").code == "CONFLICT"
    assert errors.StatementWithdrawnError("x").code == "CONFLICT"
    assert errors.StatementNotFound("x").code == "NOT_FOUND"
    assert errors.TagNotPresent("x", "y").code == "NOT_FOUND"
    assert errors.EmptyTitle().code == "BAD_USER_INPUT"
    assert errors.PageParseError("f.txt", "no title").code == "BAD_USER_INPUT"


def test_concurrency_conflict_carries_stream_and_versions() -> None:
    error = errors.ConcurrencyConflict("statement-1", 3, 5)
    assert (error.stream_id, error.expected, error.actual) == ("statement-1", 3, 5)
    assert error.field == "expected_version"
    assert error.problem == "stream 'statement-1' is at version 5, but version 3 was expected"
    assert str(error) == f"expected_version: {error.problem}"


def test_every_error_names_its_field_apart_from_what_is_wrong() -> None:
    error = errors.NaiveTimestamp("published_at")
    assert (error.field, error.problem) == ("published_at", "must include a timezone offset")
    assert error.message == str(error) == "published_at: must include a timezone offset"
    whole = errors.NothingToRevise()
    assert whole.field is None
    assert whole.message == whole.problem
