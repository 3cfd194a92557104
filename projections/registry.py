"""The serializer for the domain's events: type names, schema versions and upcasters."""

from __future__ import annotations

from domain.events import EVENT_TYPES
from eventstore import EventRegistry


def event_registry() -> EventRegistry:
    """A registry of every domain event, checked for gaps in its upcaster chains."""
    registry = EventRegistry()
    registry.register_all(EVENT_TYPES)
    registry.check()
    return registry
