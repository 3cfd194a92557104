"""Ids: the global ids every ``id`` field gives, and the one parser of every argument that
names a statement, a minister or a topic.

A global id is the standard base64 of ``"<Type>:<own id>"`` (Relay's format):
``Statement:<uuid>``, ``Minister:<slug>``, ``Topic:<slug>``. A statement replayed from the log
(time travel, auditors) is not the statement as it is now, so it has an id of its own:
``Statement:<uuid>@<position>`` for ``atPosition`` and ``Statement:<uuid>@<UTC ISO time>`` for
``asOf``.

Arguments that name an object take its global id or its own id (a statement's UUID, a
minister's or topic's slug). Anything else is refused with ``BAD_USER_INPUT`` naming the
argument, rather than passed on to find nothing.
"""

from __future__ import annotations

import base64
import binascii
import functools
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final

import strawberry

from domain.slugs import slug_problem, slugify
from graphql_api.errors import BadUserInput

STATEMENT: Final = "Statement"
MINISTER: Final = "Minister"
TOPIC: Final = "Topic"
NODE_TYPES: Final = (STATEMENT, MINISTER, TOPIC)
#: Longer values are no id of ours; they are refused before any decoding.
MAX_ID_LENGTH: Final = 1_000
#: Separates a statement's UUID from the moment of a time-travel id.
_AT: Final = "@"


@functools.lru_cache(maxsize=65_536)
def global_id(type_name: str, local_id: str) -> strawberry.ID:
    """The global id of the object of ``type_name`` whose own id is ``local_id``."""
    raw = f"{type_name}:{local_id}".encode()
    return strawberry.ID(base64.b64encode(raw).decode("ascii"))


def parse_global_id(value: str) -> tuple[str, str] | None:
    """``(type name, own id)`` of a global id of one of our types; None if it is not one."""
    if len(value) > MAX_ID_LENGTH:
        return None
    try:
        decoded = base64.b64decode(value, validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        return None
    type_name, separator, local_id = decoded.partition(":")
    if not separator or not local_id or type_name not in NODE_TYPES:
        return None
    return type_name, local_id


@dataclass(frozen=True, slots=True)
class StatementRef:
    """A statement an argument names: now, or (time travel) at a log position or a moment."""

    statement_id: str
    at_position: int | None = None
    as_of: datetime | None = None

    @property
    def dated(self) -> bool:
        return self.at_position is not None or self.as_of is not None


def statement_global_id(
    statement_id: str, at_position: int | None = None, as_of: datetime | None = None
) -> strawberry.ID:
    """The global id of a statement now, or as it stood at a log position or a moment."""
    if at_position is not None:
        return global_id(STATEMENT, f"{statement_id}{_AT}{at_position}")
    if as_of is not None:
        return global_id(STATEMENT, f"{statement_id}{_AT}{as_of.astimezone(UTC).isoformat()}")
    return global_id(STATEMENT, statement_id)


def _canonical_uuid(text: str) -> str | None:
    try:
        return str(uuid.UUID(text))
    except ValueError:
        return None


def statement_ref(value: str, argument: str) -> StatementRef:
    """The statement ``value`` names: a UUID, or a Statement's global id (perhaps dated)."""
    text = value.strip()
    wrong = f"{argument}: not a statement id (a UUID, or the `id` of a Statement)"
    if len(text) > MAX_ID_LENGTH:
        raise BadUserInput(wrong)
    plain = _canonical_uuid(text)
    if plain is not None:
        return StatementRef(plain)
    parsed = parse_global_id(text)
    if parsed is None:
        raise BadUserInput(wrong)
    type_name, local = parsed
    if type_name != STATEMENT:
        raise BadUserInput(f"{argument}: the `id` of a {type_name}, not of a Statement")
    own, dated, moment = local.partition(_AT)
    statement_id = _canonical_uuid(own)
    if statement_id is None or (dated and not moment):
        raise BadUserInput(wrong)
    if not dated:
        return StatementRef(statement_id)
    if moment.isdigit():
        return StatementRef(statement_id, at_position=int(moment))
    try:
        as_of = datetime.fromisoformat(moment)
    except ValueError:
        raise BadUserInput(wrong) from None
    if as_of.utcoffset() is None:
        raise BadUserInput(wrong)
    return StatementRef(statement_id, as_of=as_of)


def statement_id_of(value: str, argument: str = "statementId") -> str:
    """The UUID of the statement ``value`` names now (a time-travel id is refused: a change or
    a live count concerns the statement as it is)."""
    ref = statement_ref(value, argument)
    if ref.dated:
        raise BadUserInput(
            f"{argument}: names a statement as it stood at a past moment; give its statementId"
        )
    return ref.statement_id


def _own_id(value: str, argument: str, type_name: str, example: str) -> str:
    """The slug ``value`` names: a global id of ``type_name``, or the slug itself."""
    text = value.strip()
    parsed = parse_global_id(text)
    if parsed is not None:
        if parsed[0] != type_name:
            raise BadUserInput(f"{argument}: the `id` of a {parsed[0]}, not of a {type_name}")
        text = parsed[1]
    if len(text) > MAX_ID_LENGTH or slug_problem(text) is not None:
        hint = slugify(text[:MAX_ID_LENGTH])
        if slug_problem(hint) is not None:
            hint = example
        raise BadUserInput(
            f"{argument}: not a {type_name.lower()} id (a slug such as {hint!r}, or the `id` "
            f"of a {type_name})"
        )
    return text


def minister_id_of(value: str, argument: str) -> str:
    """The minister ``value`` names: a slug such as ``sergey-lavrov``, or a global id."""
    return _own_id(value, argument, MINISTER, "sergey-lavrov")


def topic_slug_of(value: str, argument: str) -> str:
    """The topic ``value`` names: a slug such as ``arms-control``, or a global id."""
    return _own_id(value, argument, TOPIC, "arms-control")


def topic_name_or_slug(value: str) -> str:
    """A topic named by its name or slug (left to the domain) or by its global id (its slug)."""
    parsed = parse_global_id(value.strip())
    if parsed is not None and parsed[0] == TOPIC:
        return parsed[1]
    return value
