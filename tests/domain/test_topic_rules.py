"""Renaming a topic: the rules of ``decide_rename`` and what a topic's stream says."""

from __future__ import annotations

import pytest

from domain.commands import CommandMetadata, RenameTopic
from domain.errors import (
    EmptyTopic,
    InvalidTopic,
    MissingActor,
    TopicNotFound,
    TopicSlugChanged,
    TopicTooLong,
)
from domain.events import TopicRenamed
from domain.limits import MAX_TOPIC_NAME_LENGTH
from domain.topics import decide_rename, renamed_to
from tests.domain.domain_builders import META


def rename(topic: str, name: str, meta: CommandMetadata = META) -> RenameTopic:
    return RenameTopic(topic=topic, name=name, meta=meta)


def test_a_new_spelling_of_the_same_slug_renames_the_topic() -> None:
    assert decide_rename(rename("nato", "  NATO "), "nato") == [
        TopicRenamed(topic_slug="nato", name="NATO")
    ]
    assert decide_rename(rename("middle-east", "Middle   East"), "middle east") == [
        TopicRenamed(topic_slug="middle-east", name="Middle East")
    ]


def test_renaming_to_the_current_name_changes_nothing() -> None:
    assert decide_rename(rename("nato", " NATO"), "NATO") == []


def test_an_unknown_topic_is_not_found() -> None:
    with pytest.raises(TopicNotFound, match=r"^topic: no topic has the slug 'nato'$") as caught:
        decide_rename(rename("nato", "NATO"), None)
    assert caught.value.code == "NOT_FOUND"


@pytest.mark.parametrize(
    ("name", "error"),
    [
        ("", EmptyTopic),
        ("  \t", EmptyTopic),
        ("!!!", InvalidTopic),
        ("N" * (MAX_TOPIC_NAME_LENGTH + 1), TopicTooLong),
        ("North Atlantic Treaty Organization", TopicSlugChanged),
    ],
)
def test_the_new_name_must_be_a_name_of_the_same_slug(name: str, error: type[Exception]) -> None:
    with pytest.raises(error) as caught:
        decide_rename(rename("nato", name), "NATO")
    assert str(caught.value).startswith("name: ")


def test_a_rename_needs_an_actor() -> None:
    with pytest.raises(MissingActor):
        decide_rename(rename("nato", "NATO", CommandMetadata(actor=" ", correlation_id="c")), "x")


def test_the_last_rename_in_the_stream_is_the_name() -> None:
    assert renamed_to([]) is None
    events = [TopicRenamed("nato", "Nato"), TopicRenamed("nato", "NATO")]
    assert renamed_to(events) == "NATO"
