"""The kinds of statement a newsroom publishes."""

from __future__ import annotations

from typing import Final

STATEMENT_KINDS: Final = (
    "comment",
    "speech",
    "interview",
    "remarks",
    "answers",
    "article",
    "statement",
    "address",
    "briefing",
    "message",
    "other",
)
