"""Random, domain-valid event logs, and a pure in-memory fold of what the read models must say."""

from __future__ import annotations

import collections
import random
import uuid
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta, timezone

from domain import events as E
from domain.streams import statement_stream, views_stream
from eventstore import EventStore, RecordedEvent
from projections.registry import event_registry
from projections.rows import ArchiveMonthRow, MinisterRow, MinisterTopicRow, TopicRow
from tests.projections.conftest import META

REGISTRY = event_registry()
MINISTERS = [
    E.MinisterRef("sergey-lavrov", "Sergey Lavrov", "Minister"),
    E.MinisterRef("sergey-ryabkov", "Sergey Ryabkov", "Deputy Minister"),
    E.MinisterRef("maria-zakharova", "Maria Zakharova", "Spokeswoman"),
    E.MinisterRef("sergey-lavrov", "Sergey V. Lavrov", "Minister of Foreign Affairs"),
]
TOPICS = ["Syria", "Iran", "Arms Control", "Trade", "Climate", "Arctic"]
WORDS = ["peace", "talks", "treaty", "sanctions", "trade", "border", "energy", "visit"]
OFFSETS = [timezone(timedelta(hours=3)), UTC, timezone(timedelta(hours=-5))]


@dataclass
class Model:
    """The read models' meaning, folded from events in log order."""

    statements: dict[str, E.StatementPublished] = field(default_factory=dict)
    withdrawn: set[str] = field(default_factory=set)
    topics: dict[str, dict[str, tuple[str, int]]] = field(default_factory=dict)  # slug->(name,pos)
    topic_names: dict[str, str] = field(default_factory=dict)
    minister_names: dict[str, E.MinisterRef] = field(default_factory=dict)
    links: dict[tuple[str, str], int] = field(default_factory=dict)
    views: collections.Counter[str] = field(default_factory=collections.Counter)
    versions: dict[str, int] = field(default_factory=dict)

    def apply(self, record: RecordedEvent) -> None:
        event = REGISTRY.decode(record)
        match event:
            case E.StatementPublished():
                self.statements[event.statement_id] = event
                self.topics.setdefault(event.statement_id, {})
                self.minister_names[event.minister.id] = event.minister
            case E.StatementRevised():
                current = self.statements[event.statement_id]
                if event.minister is not None:
                    self.minister_names[event.minister.new.id] = event.minister.new
                self.statements[event.statement_id] = replace(
                    current,
                    title=event.title.new if event.title else current.title,
                    minister=event.minister.new if event.minister else current.minister,
                    paragraphs=event.paragraphs.new if event.paragraphs else current.paragraphs,
                )
            case E.StatementWithdrawn():
                self.withdrawn.add(event.statement_id)
            case E.Tagged():
                self.topics[event.statement_id][event.topic_slug] = (
                    event.topic_name,
                    record.position,
                )
                self.topic_names[event.topic_slug] = event.topic_name
            case E.Untagged():
                del self.topics[event.statement_id][event.topic_slug]
            case E.LinkedRelated():
                self.links[(event.statement_id, event.related_id)] = record.position
            case E.UnlinkedRelated():
                del self.links[(event.statement_id, event.related_id)]
            case E.Viewed():
                self.views[event.statement_id] += 1
            case E.ViewsImported():
                self.views[event.statement_id] += event.count
        if record.stream_id.startswith("statement-") and not record.stream_id.startswith(
            "statement-views-"
        ):
            self.versions[getattr(event, "statement_id")] = record.version  # noqa: B009

    def live(self) -> list[str]:
        return [i for i in self.statements if i not in self.withdrawn]

    def archive(self) -> list[ArchiveMonthRow]:
        counts = collections.Counter(
            (self.statements[i].published_at.year, self.statements[i].published_at.month)
            for i in self.live()
        )
        return [ArchiveMonthRow(y, m, n) for (y, m), n in sorted(counts.items(), reverse=True)]

    def topic_counts(self) -> dict[str, int]:
        return dict(collections.Counter(slug for i in self.live() for slug in self.topics[i]))

    def topic_rows(self) -> list[TopicRow]:
        counts = self.topic_counts()
        rows = [TopicRow(s, self.topic_names[s], n) for s, n in counts.items() if n > 0]
        return sorted(rows, key=lambda t: (-t.statement_count, t.slug))

    def topics_of(self, statement_id: str) -> list[TopicRow]:
        counts = self.topic_counts()
        tagged = sorted(self.topics[statement_id].items(), key=lambda kv: kv[1][1])
        return [TopicRow(s, self.topic_names[s], counts.get(s, 0)) for s, _ in tagged]

    def ministers(self) -> list[MinisterRow]:
        counts = collections.Counter(self.statements[i].minister.id for i in self.live())
        rows = [
            MinisterRow(m, self.minister_names[m].name, self.minister_names[m].title, n)
            for m, n in counts.items()
        ]
        return sorted(rows, key=lambda r: (-r.statement_count, r.name, r.id))

    def minister_topics(self, minister_id: str) -> list[MinisterTopicRow]:
        counts = collections.Counter(
            slug
            for i in self.live()
            if self.statements[i].minister.id == minister_id
            for slug in self.topics[i]
        )
        overall = self.topic_counts()
        rows = [
            MinisterTopicRow(minister_id, TopicRow(s, self.topic_names[s], overall[s]), n)
            for s, n in counts.items()
        ]
        return sorted(rows, key=lambda r: (-r.statement_count, r.topic.slug))

    def minister_topic_statements(self, minister_id: str, slug: str) -> list[str]:
        """The minister's live statements tagged with the topic, newest first."""
        return [
            i
            for i in self.newest_first()
            if self.statements[i].minister.id == minister_id and slug in self.topics[i]
        ]

    def related_of(self, statement_id: str) -> list[str]:
        first: dict[str, int] = {}
        for (a, b), position in self.links.items():
            other = b if a == statement_id else a if b == statement_id else None
            if other is not None and other not in self.withdrawn:
                first[other] = min(position, first.get(other, position))
        return sorted(first, key=lambda r: (first[r], r))

    def newest_first(self) -> list[str]:
        return sorted(self.live(), key=lambda i: (self.statements[i].published_at, i), reverse=True)


async def random_log(store: EventStore, rng: random.Random, steps: int) -> None:
    """Append ``steps`` random commands' events, each valid for the domain at that point."""
    published: dict[str, E.StatementPublished] = {}
    withdrawn: set[str] = set()
    tags: dict[str, set[str]] = {}
    links: set[tuple[str, str]] = set()

    async def append(stream: str, *events: object) -> None:
        await store.append(stream, [REGISTRY.new_event(e, META) for e in events])

    for _ in range(steps):
        live = [i for i in published if i not in withdrawn]
        action = rng.random()
        if not live or action < 0.2:
            sid = str(uuid.UUID(int=rng.getrandbits(128), version=4))
            at = datetime(2020, rng.randint(1, 12), rng.randint(1, 28), rng.randint(0, 23), 30)
            event = E.StatementPublished(
                statement_id=sid,
                slug=f"s-{sid[:8]}",
                title=" ".join(rng.sample(WORDS, 3)),
                kind=rng.choice(["comment", "speech"]),
                minister=rng.choice(MINISTERS),
                location=rng.choice([None, "Moscow"]),
                occurred_on=date(2020, 1, 1),
                published_at=at.replace(tzinfo=rng.choice(OFFSETS)),
                paragraphs=tuple(" ".join(rng.sample(WORDS, 4)) for _ in range(2)),
                language="en",
                source_url=None,
            )
            published[sid] = event
            tags[sid] = set()
            await append(statement_stream(sid), event)
            continue
        sid = rng.choice(live)
        if action < 0.3:
            names = rng.sample(TOPICS, rng.randint(1, 3))
            new = [n for n in names if slug_of(n) not in tags[sid]]
            if new:
                tags[sid].update(slug_of(n) for n in new)
                await append(
                    statement_stream(sid),
                    *(E.Tagged(statement_id=sid, topic_slug=slug_of(n), topic_name=n) for n in new),
                )
        elif action < 0.36 and tags[sid]:
            slug = rng.choice(sorted(tags[sid]))
            tags[sid].discard(slug)
            await append(statement_stream(sid), E.Untagged(statement_id=sid, topic_slug=slug))
        elif action < 0.45:
            others = [o for o in live if o != sid and (sid, o) not in links]
            if others:
                other = rng.choice(others)
                links.add((sid, other))
                await append(
                    statement_stream(sid), E.LinkedRelated(statement_id=sid, related_id=other)
                )
        elif action < 0.5:
            mine = sorted(o for s, o in links if s == sid)
            if mine:
                other = rng.choice(mine)
                links.discard((sid, other))
                await append(
                    statement_stream(sid), E.UnlinkedRelated(statement_id=sid, related_id=other)
                )
        elif action < 0.56:
            current = published[sid]
            minister = rng.choice(MINISTERS)
            title = " ".join(rng.sample(WORDS, 2))
            revised = E.StatementRevised(
                statement_id=sid,
                reason="fix",
                title=E.TextChange(current.title, title) if title != current.title else None,
                minister=E.MinisterChange(current.minister, minister)
                if minister != current.minister
                else None,
            )
            if revised.title is None and revised.minister is None:
                continue  # the domain writes nothing for a revision that changes nothing
            published[sid] = replace(current, title=title, minister=minister)
            await append(statement_stream(sid), revised)
        elif action < 0.6:
            withdrawn.add(sid)
            await append(
                statement_stream(sid), E.StatementWithdrawn(statement_id=sid, reason="gone")
            )
        elif action < 0.65:
            await append(
                views_stream(sid),
                E.ViewsImported(statement_id=sid, count=rng.randint(1, 500), source="old"),
            )
        else:
            await append(
                views_stream(sid), *(E.Viewed(statement_id=sid) for _ in range(rng.randint(1, 5)))
            )


def slug_of(name: str) -> str:
    return "-".join(name.lower().split())


async def fold(store: EventStore) -> Model:
    model = Model()
    async for record in store.read_all(0):
        model.apply(record)
    return model
