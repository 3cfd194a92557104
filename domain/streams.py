"""Names of the streams the domain writes to."""

from __future__ import annotations


def statement_stream(statement_id: str) -> str:
    """The stream of a statement's own events (small: no views)."""
    return f"statement-{statement_id}"


def views_stream(statement_id: str) -> str:
    """The stream of a statement's views, kept apart so the statement never replays them."""
    return f"statement-views-{statement_id}"


def view_batch_stream(batch_key: str) -> str:
    """The stream of one batch of views (``domain.ids.view_batch_id``): one event, once."""
    return f"view-batch-{batch_key}"


def slug_stream(slug: str) -> str:
    """The stream whose first event reserves a slug."""
    return f"slug-{slug}"


def related_requests_stream(statement_id: str) -> str:
    """The stream of requests to link other statements to ``statement_id`` once it exists."""
    return f"related-requests-{statement_id}"


def topic_stream(topic_slug: str) -> str:
    """The stream of a topic's renames; tagging a statement never writes to it."""
    return f"topic-{topic_slug}"
