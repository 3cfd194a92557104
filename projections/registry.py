"""The serializer for the domain's events: type names, schema versions and upcasters."""

from __future__ import annotations

from domain.events import EVENT_TYPES
from eventstore import EventRegistry
from projections.upcasters import UPCASTERS, VERSIONS


def event_registry() -> EventRegistry:
    """A registry of every domain event; refuses to build when an upcaster chain has a gap."""
    registry = EventRegistry()
    for cls in EVENT_TYPES:
        registry.register(cls, version=VERSIONS.get(cls.__name__, 1))
    for (name, version), upcaster in UPCASTERS.items():
        registry.add_upcaster(name, version, upcaster)
    registry.check()
    return registry
