"""Topic names: set when a topic is first used, changed only by a rename.

A topic is the slug of the name a statement was first tagged with; tagging finds it by that slug
and never renames it, however the name is written. An editor renames it with ``RenameTopic``,
which appends ``TopicRenamed`` to the topic's own stream (``topic-{slug}``). A new name must
make the same slug: tagging with the new name then still finds the topic, and no second topic
with the same display name can appear.
"""

from __future__ import annotations

from collections.abc import Iterable

from domain.commands import RenameTopic
from domain.errors import MissingActor, TopicNotFound, TopicSlugChanged, TopicTooLong
from domain.events import TopicRenamed
from domain.limits import MAX_TOPIC_NAME_LENGTH
from domain.statement import topic_slug


def renamed_to(events: Iterable[object]) -> str | None:
    """The name the last rename in a topic's stream gave it; None if it was never renamed."""
    name: str | None = None
    for event in events:
        if isinstance(event, TopicRenamed):
            name = event.name
    return name


def decide_rename(command: RenameTopic, current_name: str | None) -> list[TopicRenamed]:
    """The events renaming ``command.topic``, whose name is ``current_name`` (None: unknown)."""
    if not command.meta.actor.strip():
        raise MissingActor()
    name = " ".join(command.name.split())
    if len(name) > MAX_TOPIC_NAME_LENGTH:
        raise TopicTooLong(name, MAX_TOPIC_NAME_LENGTH, "name")
    new_slug = topic_slug(name, "name")
    slug = command.topic.strip()
    if current_name is None:
        raise TopicNotFound(slug)
    if new_slug != slug:
        raise TopicSlugChanged(name, slug, new_slug)
    if name == current_name:
        return []
    return [TopicRenamed(topic_slug=slug, name=name)]
