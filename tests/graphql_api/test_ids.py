"""The one parser of ids: both forms of each, time-travel ids, and what it refuses."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta, timezone

import pytest

from graphql_api.errors import BadUserInput
from graphql_api.schema.ids import (
    MAX_ID_LENGTH,
    StatementRef,
    minister_id_of,
    parse_global_id,
    statement_global_id,
    statement_id_of,
    statement_ref,
    topic_name_or_slug,
    topic_slug_of,
)

UUID = "0b5f3c5e-8d4e-4c1a-9a57-3f0e7a3c1d2b"


def gid(type_name: str, own_id: str) -> str:
    return base64.b64encode(f"{type_name}:{own_id}".encode()).decode()


def test_a_statement_by_uuid_or_global_id() -> None:
    for value in (UUID, UUID.upper(), f"  {UUID} ", gid("Statement", UUID)):
        assert statement_ref(value, "id") == StatementRef(UUID)
        assert statement_id_of(value) == UUID
    assert statement_global_id(UUID) == gid("Statement", UUID)


def test_a_statement_at_a_moment_round_trips() -> None:
    at = statement_global_id(UUID, at_position=42)
    assert at == gid("Statement", f"{UUID}@42")
    assert statement_ref(at, "id") == StatementRef(UUID, at_position=42)
    moscow = datetime(2024, 3, 1, 12, 30, tzinfo=timezone(timedelta(hours=3)))
    as_of = statement_global_id(UUID, as_of=moscow)
    # The same instant in any offset is the same id.
    assert as_of == statement_global_id(UUID, as_of=moscow.astimezone(UTC))
    assert as_of == gid("Statement", f"{UUID}@2024-03-01T09:30:00+00:00")
    assert statement_ref(as_of, "id") == StatementRef(UUID, as_of=moscow)
    # A change or a live count concerns the statement as it is now.
    with pytest.raises(BadUserInput, match=r"^statementId: .*past moment"):
        statement_id_of(at)


@pytest.mark.parametrize(
    "value",
    [
        "",
        "whatever",
        UUID[:-1],
        "x" * (MAX_ID_LENGTH + 1),
        gid("Statement", "not-a-uuid"),
        gid("Statement", f"{UUID}@"),
        gid("Statement", f"{UUID}@yesterday"),
        gid("Statement", f"{UUID}@2024-03-01T12:00:00"),  # a time without an offset
        gid("Minister", "sergey-lavrov"),
        gid("Topic", UUID),
        gid("Nothing", UUID),
    ],
)
def test_anything_else_is_not_a_statement_id(value: str) -> None:
    with pytest.raises(BadUserInput, match=r"^relatedId: "):
        statement_ref(value, "relatedId")


def test_ministers_and_topics_by_slug_or_global_id() -> None:
    assert minister_id_of("sergey-lavrov", "id") == "sergey-lavrov"
    assert minister_id_of(gid("Minister", "sergey-lavrov"), "id") == "sergey-lavrov"
    assert topic_slug_of(" arms-control ", "slug") == "arms-control"
    assert topic_slug_of(gid("Topic", "arms-control"), "slug") == "arms-control"
    with pytest.raises(BadUserInput, match=r"^filter\.topic: .*'nato'"):
        topic_slug_of("NATO", "filter.topic")  # a name: the message says the slug
    with pytest.raises(BadUserInput, match=r"^id: the `id` of a Topic, not of a Minister"):
        minister_id_of(gid("Topic", "syria"), "id")
    with pytest.raises(BadUserInput, match=r"^filter\.ministerId: "):
        minister_id_of("Sergey Lavrov", "filter.ministerId")
    with pytest.raises(BadUserInput):
        minister_id_of(gid("Minister", "Not A Slug"), "id")


def test_an_untag_takes_a_topic_by_name_slug_or_global_id() -> None:
    assert topic_name_or_slug("Arms Control") == "Arms Control"
    assert topic_name_or_slug(gid("Topic", "arms-control")) == "arms-control"
    assert topic_name_or_slug(gid("Minister", "x")) == gid("Minister", "x")


def test_parse_global_id_knows_only_our_types() -> None:
    assert parse_global_id(gid("Statement", UUID)) == ("Statement", UUID)
    assert parse_global_id(gid("User", "1")) is None
    assert parse_global_id("not base64!") is None
    assert parse_global_id(gid("Topic", "")) is None
