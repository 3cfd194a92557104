"""Mapping event classes to stored (type, schema_version, data) and back, with upcasting on read."""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import types
import typing
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from eventstore.errors import SerializationError
from eventstore.records import NewEvent, RecordedEvent

Upcaster = Callable[[dict[str, Any]], dict[str, Any]]
_Codec = tuple[Callable[[Any], Any], Callable[[Any], Any]]


def _identity(value: Any) -> Any:
    return value


def _codec_for(hint: Any) -> _Codec:
    """Encoder and decoder for one annotated type; built once per class, not per event."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        inner = [a for a in args if a is not type(None)]
        if len(inner) == 1:
            enc, dec = _codec_for(inner[0])
            return (
                lambda v: None if v is None else enc(v),
                lambda v: None if v is None else dec(v),
            )
        return _identity, _identity
    if origin is tuple:
        item = args[0] if args else Any
        enc, dec = _codec_for(item)
        return (lambda v: [enc(x) for x in v], lambda v: tuple(dec(x) for x in v))
    if origin in (list, frozenset, set):
        item = args[0] if args else Any
        enc, dec = _codec_for(item)
        ctor = origin
        return (lambda v: [enc(x) for x in v], lambda v: ctor(dec(x) for x in v))
    if hint is dt.datetime:
        return (lambda v: v.isoformat(), dt.datetime.fromisoformat)
    if hint is dt.date:
        return (lambda v: v.isoformat(), dt.date.fromisoformat)
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        enum_type = hint
        return (lambda v: v.value, enum_type)
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        to_dict, from_dict = _dataclass_codec(hint)
        return to_dict, from_dict
    return _identity, _identity


def _dataclass_codec(cls: type) -> _Codec:
    hints = typing.get_type_hints(cls)
    fields = [f for f in dataclasses.fields(cls) if f.init]
    codecs = [(f.name, *_codec_for(hints[f.name])) for f in fields]
    required = {
        f.name
        for f in fields
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    }

    def encode(obj: Any) -> dict[str, Any]:
        return {name: enc(getattr(obj, name)) for name, enc, _ in codecs}

    def decode(data: Any) -> Any:
        if not isinstance(data, Mapping):
            raise SerializationError(f"{cls.__name__} expects an object, got {type(data).__name__}")
        missing = required - data.keys()
        if missing:
            raise SerializationError(f"{cls.__name__} is missing {sorted(missing)}")
        kwargs = {name: dec(data[name]) for name, _, dec in codecs if name in data}
        return cls(**kwargs)

    names = frozenset(f.name for f in fields)
    if all(dec is _identity for _, _, dec in codecs):
        # Plain JSON fields only: the stored mapping is already the constructor's arguments.
        def decode_plain(data: Any) -> Any:
            if isinstance(data, dict) and data.keys() == names:
                return cls(**data)
            return decode(data)

        return encode, decode_plain

    return encode, decode


@dataclasses.dataclass(frozen=True)
class _Entry:
    cls: type
    name: str
    version: int
    encode: Callable[[Any], Any]
    decode: Callable[[Any], Any]


class EventRegistry:
    """Maps event classes to (type name, schema version) and back; upcasts old versions on read."""

    def __init__(self) -> None:
        self._by_class: dict[type, _Entry] = {}
        self._by_name: dict[str, _Entry] = {}
        self._upcasters: dict[tuple[str, int], Upcaster] = {}

    def register(self, cls: type, *, name: str | None = None, version: int = 1) -> None:
        """Register a dataclass event under a type name at its current schema version."""
        if not dataclasses.is_dataclass(cls):
            raise TypeError(f"{cls.__name__} is not a dataclass")
        name = name or cls.__name__
        if name in self._by_name and self._by_name[name].cls is not cls:
            raise ValueError(f"event type {name!r} is already registered")
        encode, decode = _dataclass_codec(cls)
        entry = _Entry(cls, name, version, encode, decode)
        self._by_class[cls] = entry
        self._by_name[name] = entry

    def register_all(self, classes: Iterable[type]) -> None:
        for cls in classes:
            self.register(cls)

    def add_upcaster(self, name: str, from_version: int, upcaster: Upcaster) -> None:
        """Register a function turning ``name`` data at ``from_version`` into from_version + 1."""
        self._upcasters[(name, from_version)] = upcaster

    def check(self) -> None:
        """Refuse to start when a registered type's upcaster chain has a gap."""
        problems = []
        for entry in self._by_name.values():
            known = [v for (n, v) in self._upcasters if n == entry.name]
            lowest = min(known, default=entry.version)
            for version in range(lowest, entry.version):
                if (entry.name, version) not in self._upcasters:
                    problems.append(f"{entry.name} v{version}→v{version + 1}")
        if problems:
            raise SerializationError("missing upcasters: " + ", ".join(problems))

    def type_of(self, cls: type) -> tuple[str, int]:
        entry = self._by_class.get(cls)
        if entry is None:
            raise SerializationError(f"{cls.__name__} is not a registered event type")
        return entry.name, entry.version

    def new_event(
        self,
        event: object,
        metadata: Mapping[str, Any] | None = None,
        event_id: Any = None,
    ) -> NewEvent:
        """The NewEvent that stores a domain event."""
        entry = self._by_class.get(type(event))
        if entry is None:
            raise SerializationError(f"{type(event).__name__} is not a registered event type")
        kwargs: dict[str, Any] = {}
        if event_id is not None:
            kwargs["event_id"] = event_id
        return NewEvent(
            entry.name,
            entry.encode(event),
            dict(metadata or {}),
            schema_version=entry.version,
            **kwargs,
        )

    def decode(self, record: RecordedEvent) -> object:
        """The domain event a record holds, upcast to the current schema version."""
        return self.decode_data(record.type, record.schema_version, record.data, record.position)

    def decode_data(
        self, name: str, version: int, data: dict[str, Any], position: int | None = None
    ) -> object:
        where = f" at position {position}" if position is not None else ""
        entry = self._by_name.get(name)
        if entry is None:
            raise SerializationError(f"unknown event type {name!r} v{version}{where}")
        while version < entry.version:
            upcaster = self._upcasters.get((name, version))
            if upcaster is None:
                raise SerializationError(
                    f"no upcaster for {name!r} from v{version} to v{version + 1}{where}"
                )
            data = upcaster(data)
            version += 1
        if version > entry.version:
            raise SerializationError(
                f"event {name!r} v{version}{where} is newer than this code (v{entry.version})"
            )
        try:
            return entry.decode(data)
        except SerializationError as exc:
            raise SerializationError(f"cannot decode {name!r} v{version}{where}: {exc}") from exc
        except (TypeError, ValueError, KeyError) as exc:
            raise SerializationError(f"cannot decode {name!r} v{version}{where}: {exc}") from exc
