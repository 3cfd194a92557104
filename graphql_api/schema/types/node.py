"""The Relay ``Node`` interface; global ids are parsed in :mod:`graphql_api.schema.ids`."""

from __future__ import annotations

import strawberry

from graphql_api.schema.ids import (
    MINISTER,
    NODE_TYPES,
    STATEMENT,
    TOPIC,
    global_id,
    parse_global_id,
    statement_global_id,
)

__all__ = [
    "MINISTER",
    "NODE_TYPES",
    "STATEMENT",
    "TOPIC",
    "Node",
    "global_id",
    "parse_global_id",
    "statement_global_id",
]


@strawberry.interface(description="An object with a global id (Relay).")
class Node:
    id: strawberry.ID = strawberry.field(
        description="The object's global id: pass it to `node(id:)` to fetch it again. Every "
        "object with a given `__typename` and `id` has the same fields wherever it appears."
    )
