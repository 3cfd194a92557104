"""The domain's topic directory, answered by the topics read model."""

from __future__ import annotations

from projections.read_models import ReadModels


class ReadModelTopics:
    """The domain's TopicDirectory over the topics read model.

    The read model holds exactly the answer (one indexed row per topic); the log could only
    give it by reading every ``Tagged`` event. It lags the log by the projection's delay, so
    renaming a topic tagged a moment ago may find it unknown (NOT_FOUND) until the read models
    show that tag, as they do for any query the client sends.
    """

    def __init__(self, read_models: ReadModels) -> None:
        self._read_models = read_models

    async def topic_name(self, topic_slug: str) -> str | None:
        row = (await self._read_models.topics_by_slugs([topic_slug])).get(topic_slug)
        return row.name if row is not None else None
