"""HTTP validators for the site's pages: ``ETag`` and ``Last-Modified`` from the read models.

A page shows what the read models held at their positions, so the positions (with the page's
address) name its content: the same positions give the same page. ``Last-Modified`` is when this
process first saw the read models at those positions, the closest time to them it knows without
reading the log.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from email.utils import format_datetime, parsedate_to_datetime

#: Where the read models stand (projection name -> position), or None when nothing tracks them.
Positions = Callable[[], Mapping[str, int] | None]


class Validators:
    """Makes and checks the validators of pages at the read models' current positions."""

    def __init__(self, positions: Positions, clock: Callable[[], datetime] | None = None) -> None:
        self.positions = positions
        self.clock = clock or (lambda: datetime.now(UTC))
        self._seen: tuple[tuple[tuple[str, int], ...], datetime] | None = None

    def current(self, key: str) -> tuple[str, datetime] | None:
        """The ETag and Last-Modified of the page ``key`` now, or None without positions."""
        positions = self.positions()
        if positions is None:
            return None
        state = tuple(sorted(positions.items()))
        if self._seen is None or self._seen[0] != state:
            # Whole seconds: HTTP dates have no finer resolution.
            self._seen = (state, self.clock().replace(microsecond=0))
        digest = hashlib.sha256(repr((key, state)).encode()).hexdigest()[:32]
        return f'W/"{digest}"', self._seen[1]


def headers(validators: tuple[str, datetime] | None) -> dict[str, str]:
    if validators is None:
        return {}
    etag, modified = validators
    return {"etag": etag, "last-modified": format_datetime(modified, usegmt=True)}


def not_modified(request_headers: Mapping[str, str], validators: tuple[str, datetime]) -> bool:
    """Whether a conditional GET may be answered 304 (RFC 9110 §13.2.2 precedence)."""
    etag, modified = validators
    if_none_match = request_headers.get("if-none-match")
    if if_none_match is not None:
        given = {tag.strip().removeprefix("W/") for tag in if_none_match.split(",")}
        return "*" in given or etag.removeprefix("W/") in given
    if_modified_since = request_headers.get("if-modified-since")
    if if_modified_since is None:
        return False
    try:
        since = parsedate_to_datetime(if_modified_since)
    except (TypeError, ValueError):
        return False
    if since.tzinfo is None:
        return False
    return modified <= since
