"""Builders of commands and events for the domain tests."""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from domain.commands import CommandMetadata, PublishStatement
from domain.events import MinisterRef, StatementPublished
from domain.statement import INITIAL_STATE, decide

MOSCOW = ZoneInfo("Europe/Moscow")
LAVROV = MinisterRef(
    id="sergey-lavrov",
    name="Sergey Lavrov",
    title="Minister of Foreign Affairs of the Russian Federation",
)
RYABKOV = MinisterRef(
    id="sergey-ryabkov",
    name="Sergey Ryabkov",
    title="Deputy Minister of Foreign Affairs of the Russian Federation",
)
META = CommandMetadata(actor="editor-1", correlation_id="corr-1", causation_id="cause-1")


def new_id() -> str:
    return str(uuid.uuid4())


def publish(statement_id: str | None = None, **changes: Any) -> PublishStatement:
    command = PublishStatement(
        statement_id=new_id() if statement_id is None else statement_id,
        title="Comment on the talks, Beijing, 8 November 2014",
        kind="comment",
        minister=LAVROV,
        occurred_on=date(2014, 11, 8),
        published_at=datetime(2014, 11, 17, 16, 58, tzinfo=MOSCOW),
        paragraphs=("First paragraph.", "Second paragraph."),
        location="Beijing",
        meta=META,
    )
    return replace(command, **changes)


def published(statement_id: str | None = None, **changes: Any) -> StatementPublished:
    """The event a valid publish command produces."""
    (event,) = decide(publish(statement_id, **changes), INITIAL_STATE)
    assert isinstance(event, StatementPublished)
    return event
