"""The Relay ``Node`` interface and global ids.

A global id is the standard base64 of ``"<Type>:<id>"`` (``Statement:<uuid>``,
``Minister:<slug>``, ``Topic:<slug>``), the format Strawberry's relay module and
:func:`graphql_api.inputs.statement_id_of` use. Arguments that name an object (``statement(id)``,
``minister(id)``, ``filter.ministerId``, ...) take either its global id or its own id.
"""

from __future__ import annotations

import base64
import binascii
import functools
from typing import Final

import strawberry

STATEMENT: Final = "Statement"
MINISTER: Final = "Minister"
TOPIC: Final = "Topic"
NODE_TYPES: Final = (STATEMENT, MINISTER, TOPIC)
_MAX_GLOBAL_ID: Final = 1_000


@strawberry.interface(description="An object with a global id (Relay).")
class Node:
    id: strawberry.ID = strawberry.field(
        description="The object's global id: pass it to `node(id:)` to fetch it again."
    )


@functools.lru_cache(maxsize=65_536)
def global_id(type_name: str, local_id: str) -> strawberry.ID:
    """The global id of the object of ``type_name`` whose own id is ``local_id``."""
    raw = f"{type_name}:{local_id}".encode()
    return strawberry.ID(base64.b64encode(raw).decode("ascii"))


def parse_global_id(value: str) -> tuple[str, str] | None:
    """``(type name, own id)`` of a global id of one of our types; None if it is not one."""
    if len(value) > _MAX_GLOBAL_ID:
        return None
    try:
        decoded = base64.b64decode(value, validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        return None
    type_name, separator, local_id = decoded.partition(":")
    if not separator or not local_id or type_name not in NODE_TYPES:
        return None
    return type_name, local_id


def local_id(value: str, type_name: str) -> str:
    """The own id in ``value``: a global id of ``type_name``, or else ``value`` itself."""
    parsed = parse_global_id(value.strip())
    if parsed is not None and parsed[0] == type_name:
        return parsed[1]
    return value.strip()
