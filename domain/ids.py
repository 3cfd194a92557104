"""Ids: statement ids are canonical UUID strings; some event ids are derived, not random."""

from __future__ import annotations

import uuid
from typing import Final

from domain.errors import InvalidStatementId

#: Namespace of the UUIDv5 event ids that make some appends idempotent. Never change it:
#: stored events carry ids derived from it.
EVENT_ID_NAMESPACE: Final = uuid.UUID("394052a5-d917-41f3-8780-6c830c2b1f70")


def check_statement_id(value: str, field: str = "statement_id") -> str:
    """Return ``value`` if it is a canonical (lowercase, hyphenated) UUID string, else raise
    (about ``field``)."""
    try:
        parsed = uuid.UUID(value)
    except (ValueError, TypeError, AttributeError):
        raise InvalidStatementId(value, field) from None
    if str(parsed) != value:
        raise InvalidStatementId(value, field)
    return value


def is_statement_id(value: str) -> bool:
    """Whether ``value`` is a canonical statement id (see :func:`check_statement_id`)."""
    try:
        check_statement_id(value)
    except InvalidStatementId:
        return False
    return True


def derived_id(namespace: uuid.UUID, *parts: str) -> str:
    """A UUIDv5 string determined by ``parts``; the same parts always give the same id."""
    # Length prefixes keep ("a/b", "c") and ("a", "b/c") apart.
    name = "".join(f"{len(part)}:{part};" for part in parts)
    return str(uuid.uuid5(namespace, name))


def views_import_event_id(statement_id: str, source: str) -> str:
    """The id of the one ViewsImported event a statement may have per source."""
    return derived_id(EVENT_ID_NAMESPACE, "views-imported", statement_id, source)


def link_request_event_id(statement_id: str, requested_by: str) -> str:
    """The id of the one RelatedLinkRequested event per (statement, requester) pair."""
    return derived_id(EVENT_ID_NAMESPACE, "related-link-requested", statement_id, requested_by)


def view_batch_id(actor: str, batch_id: str) -> str:
    """The key of a sender's batch of views: its stream's name and its one event's id.

    The actor is part of it, so two senders never collide on a batch id.
    """
    return derived_id(EVENT_ID_NAMESPACE, "view-batch", actor, batch_id)
