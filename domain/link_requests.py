"""Pending related links: requests to link a statement to one that does not exist yet."""

from __future__ import annotations

from collections.abc import Iterable

from domain.commands import RequestRelatedLink
from domain.errors import MissingActor, SelfRelation
from domain.events import RelatedLinkRequested
from domain.ids import check_statement_id


def requesters(events: Iterable[object]) -> tuple[str, ...]:
    """The statements that asked to be linked, in request order, without repeats."""
    seen: dict[str, None] = {}
    for event in events:
        if isinstance(event, RelatedLinkRequested):
            seen.setdefault(event.requested_by, None)
    return tuple(seen)


def decide_link_request(
    command: RequestRelatedLink, existing: tuple[str, ...]
) -> list[RelatedLinkRequested]:
    """Record the request unless it is already recorded."""
    if not command.meta.actor.strip():
        raise MissingActor()
    check_statement_id(command.statement_id)
    check_statement_id(command.requested_by, "requested_by")
    if command.statement_id == command.requested_by:
        raise SelfRelation(command.statement_id)
    if command.requested_by in existing:
        return []
    return [
        RelatedLinkRequested(statement_id=command.statement_id, requested_by=command.requested_by)
    ]
