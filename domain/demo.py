"""Deterministic, realistic demo data, as the commands a newsroom would send.

Everything comes from ``random.Random(seed)``: the same arguments always give the same
commands (no global randomness, no clock). Topics and views follow Zipf-like distributions, so
a few topics and statements are far more popular than the rest, as on a real site.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Final

from domain.commands import (
    Command,
    CommandMetadata,
    ImportViews,
    LinkRelated,
    PublishStatement,
    RecordView,
    ReviseStatement,
    TagStatement,
    WithdrawStatement,
)
from domain.events import MinisterRef
from domain.ministers import DEPUTY_FOREIGN_MINISTER, KNOWN_MINISTERS
from domain.moscow_time import MOSCOW
from domain.slugs import slugify, truncate_slug

DEMO_ACTOR: Final = "demo"
DEMO_VIEWS_SOURCE: Final = "demo"
#: Individual views are RecordView commands (one event each); the rest come as bulk imports.
MAX_INDIVIDUAL_VIEWS: Final = 5_000
FIRST_DAY: Final = date(2008, 1, 1)
LAST_DAY: Final = date(2020, 12, 31)

# (minister, weight, how titles introduce them)
_MINISTERS: Final = (
    (KNOWN_MINISTERS[0], 12, "Russian Foreign Minister"),
    (KNOWN_MINISTERS[2], 3, "Deputy Foreign Minister"),
    (KNOWN_MINISTERS[3], 3, "Deputy Foreign Minister"),
    (KNOWN_MINISTERS[4], 2, "Deputy Foreign Minister"),
    (KNOWN_MINISTERS[5], 2, "Deputy Foreign Minister"),
    (KNOWN_MINISTERS[6], 1, "Deputy Foreign Minister"),
    (KNOWN_MINISTERS[7], 1, "First Deputy Foreign Minister"),
)

# Titles held before the current one (``KNOWN_MINISTERS`` has the current titles): a statement
# records the title of its day, so a minister's statements do not all title them alike.
# (minister id, first day, last day, title, how titles introduce them)
_EARLIER_TITLES: Final = (
    (
        "vladimir-titov",
        FIRST_DAY,
        date(2011, 6, 30),
        DEPUTY_FOREIGN_MINISTER,
        "Deputy Foreign Minister",
    ),
    (
        "alexander-grushko",
        date(2012, 1, 1),
        date(2017, 12, 31),
        "Permanent Representative of the Russian Federation to NATO",
        "Permanent Representative to NATO",
    ),
)

# Most popular first: weights fall off as 1/rank.
_TOPICS: Final = (
    "Syria",
    "Ukraine",
    "United States",
    "Middle East",
    "Iran nuclear programme",
    "European Union",
    "NATO",
    "China",
    "Terrorism",
    "United Nations",
    "Afghanistan",
    "Korean Peninsula",
    "Palestinian-Israeli settlement",
    "Arms control",
    "BRICS",
    "Libya",
    "CIS",
    "Shanghai Cooperation Organisation",
    "Arctic",
    "Balkans",
    "Caucasus",
    "Central Asia",
    "Japan",
    "India",
    "Latin America",
    "Africa",
    "Cybersecurity",
    "Energy security",
    "Human rights",
    "Cultural cooperation",
)

_PLACES: Final = (
    ("Moscow", 20),
    ("New York", 4),
    ("Geneva", 4),
    ("Beijing", 2),
    ("Brussels", 2),
    ("Paris", 2),
    ("Vienna", 2),
    ("Berlin", 1),
    ("Tehran", 1),
    ("Ankara", 1),
    ("New Delhi", 1),
    ("Tokyo", 1),
    ("Astana", 1),
    ("Minsk", 1),
    ("Havana", 1),
)

_COUNTERPARTS: Final = (
    "US Secretary of State",
    "German Foreign Minister",
    "French Foreign Minister",
    "Chinese Foreign Minister",
    "Iranian Foreign Minister",
    "UN Secretary-General",
    "Turkish Foreign Minister",
    "Indian External Affairs Minister",
    "Japanese Foreign Minister",
    "EU High Representative",
)

# Not strftime("%B"): that depends on the process locale.
_MONTH_NAMES: Final = (
    "January", "February", "March", "April", "May", "June",
    "July", "August", "September", "October", "November", "December",
)  # fmt: skip

_OUTLETS: Final = ("Kommersant", "RIA Novosti", "TASS", "Rossiyskaya Gazeta", "BBC", "CNN")

_TITLES: Final = (
    ("comment", 5, "Comment by {role} {name} on {topic}"),
    ("speech", 3, "Speech by {role} {name} at a meeting with the {counterpart}"),
    ("interview", 3, "Interview by {role} {name} with {outlet} on {topic}"),
    ("remarks", 3, "Remarks by {role} {name} at talks with the {counterpart}"),
    ("answers", 4, "{role} {name}'s answers to media questions on {topic}"),
    ("article", 1, "Article by {role} {name} on {topic} for {outlet}"),
    ("statement", 3, "Statement by {role} {name} on {topic}"),
    ("briefing", 1, "Briefing by {role} {name} on {topic}"),
)

_SENTENCES: Final = (
    "We discussed {topic} in detail with our partners.",
    "Russia's position on {topic} is well known and has not changed.",
    "We believe that questions of {topic} must be settled on the basis of international law.",
    "Our colleagues from the {counterpart_office} agreed to continue the dialogue on {topic}.",
    "There is no alternative to a political settlement; {topic} shows this once again.",
    "We are ready to cooperate on {topic} with everyone who is interested.",
    "The agreements reached must be implemented in full and in good faith.",
    "Unilateral steps only make the situation around {topic} more complicated.",
    "We will keep working with the United Nations Security Council on {topic}.",
    "I think the results of today's talks are useful for both sides.",
)

_REVISION_REASONS: Final = (
    "Corrected the transcript against the audio recording",
    "Fixed a typo in the title",
    "Added a paragraph omitted from the first version",
)

_WITHDRAWAL_REASONS: Final = (
    "Published twice by mistake",
    "Replaced by the official transcript",
)


@dataclass(frozen=True, slots=True)
class _Plan:
    statement_id: str
    meta: CommandMetadata
    topics: tuple[str, ...]
    publish: PublishStatement


def demo_commands(statements: int, views: int, seed: int) -> Iterator[Command]:
    """Commands that publish ``statements`` statements and record ``views`` views in total."""
    if statements < 0 or views < 0:
        raise ValueError("statements and views must not be negative")
    rng = random.Random(seed)
    plans = sorted(
        (_plan(rng, index) for index in range(statements)),
        key=lambda plan: (plan.publish.published_at, plan.statement_id),
    )
    withdrawn: set[str] = set()
    for position, plan in enumerate(plans):
        yield plan.publish
        yield TagStatement(statement_id=plan.statement_id, topics=plan.topics, meta=plan.meta)
        yield from _links(rng, plan, plans[:position])
        if rng.random() < 0.05:
            yield _revision(rng, plan)
    if plans:
        yield from _views(rng, plans, views)
    for plan in plans:
        if rng.random() < 0.01 and plan.statement_id not in withdrawn:
            withdrawn.add(plan.statement_id)
            yield WithdrawStatement(
                statement_id=plan.statement_id,
                reason=rng.choice(_WITHDRAWAL_REASONS),
                meta=plan.meta,
            )


def _uuid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def _zipf_weights(count: int, exponent: float = 1.0) -> list[float]:
    return [1.0 / (rank**exponent) for rank in range(1, count + 1)]


def _plan(rng: random.Random, index: int) -> _Plan:
    statement_id = _uuid(rng)
    meta = CommandMetadata(actor=DEMO_ACTOR, correlation_id=_uuid(rng), causation_id=None)
    minister, role = _pick_minister(rng)
    topic_count = rng.choice((1, 1, 2, 2, 2, 3, 3, 4))
    picked = rng.choices(_TOPICS, weights=_zipf_weights(len(_TOPICS)), k=topic_count)
    topics = tuple(dict.fromkeys(picked))
    kind, template = _pick_title(rng)
    place = rng.choices([p for p, _ in _PLACES], weights=[w for _, w in _PLACES])[0]
    occurred_on = FIRST_DAY + timedelta(days=rng.randrange((LAST_DAY - FIRST_DAY).days + 1))
    minister, role = _titled(minister, role, occurred_on)
    published_on = occurred_on + timedelta(days=rng.choice((0, 0, 0, 1, 1, 2, 4)))
    published_at = datetime.combine(
        published_on, time(rng.randrange(8, 22), rng.randrange(60)), tzinfo=MOSCOW
    )
    counterpart = rng.choice(_COUNTERPARTS)
    words = {
        "role": role,
        "name": minister.name,
        "topic": topics[0],
        "counterpart": counterpart,
        "outlet": rng.choice(_OUTLETS),
    }
    month = _MONTH_NAMES[occurred_on.month - 1]
    title = f"{template.format(**words)}, {place}, {occurred_on.day} {month} {occurred_on.year}"
    paragraphs = tuple(
        _paragraph(rng, rng.choice(topics), counterpart) for _ in range(rng.randint(3, 8))
    )
    slug = f"{truncate_slug(slugify(title), 80)}-{index + 1}"
    publish = PublishStatement(
        statement_id=statement_id,
        title=title,
        kind=kind,
        minister=minister,
        occurred_on=occurred_on,
        published_at=published_at,
        paragraphs=paragraphs,
        location=place,
        language="en",
        source_url=f"https://demo.invalid/statements/{slug}",
        slug=slug,
        meta=meta,
    )
    return _Plan(statement_id=statement_id, meta=meta, topics=topics, publish=publish)


def _pick_minister(rng: random.Random) -> tuple[MinisterRef, str]:
    minister, _, role = rng.choices(_MINISTERS, weights=[w for _, w, _ in _MINISTERS])[0]
    return minister, role


def _titled(minister: MinisterRef, role: str, day: date) -> tuple[MinisterRef, str]:
    """The minister as titled on ``day``, and how a statement's title introduces them."""
    for minister_id, first, last, title, earlier_role in _EARLIER_TITLES:
        if minister.id == minister_id and first <= day <= last:
            return MinisterRef(minister.id, minister.name, title), earlier_role
    return minister, role


def _pick_title(rng: random.Random) -> tuple[str, str]:
    kind, _, template = rng.choices(_TITLES, weights=[w for _, w, _ in _TITLES])[0]
    return kind, template


def _paragraph(rng: random.Random, topic: str, counterpart: str) -> str:
    office = counterpart.split(" ")[0] + " side"
    sentences = rng.sample(_SENTENCES, rng.randint(2, 5))
    return " ".join(s.format(topic=topic, counterpart_office=office) for s in sentences)


def _links(rng: random.Random, plan: _Plan, earlier: Sequence[_Plan]) -> Iterator[Command]:
    if not earlier or rng.random() < 0.4:
        return
    sharing = [other for other in earlier[-200:] if set(other.topics) & set(plan.topics)]
    pool = sharing or list(earlier)
    for other in rng.sample(pool, min(len(pool), rng.randint(1, 3))):
        yield LinkRelated(
            statement_id=plan.statement_id, related_id=other.statement_id, meta=plan.meta
        )


def _revision(rng: random.Random, plan: _Plan) -> ReviseStatement:
    reason = rng.choice(_REVISION_REASONS)
    paragraphs = plan.publish.paragraphs
    if reason.startswith("Fixed a typo"):
        return ReviseStatement(
            statement_id=plan.statement_id,
            reason=reason,
            title=plan.publish.title.replace(" on ", " regarding ", 1),
            meta=plan.meta,
        )
    extra = _paragraph(rng, plan.topics[-1], "Russian Foreign Minister")
    return ReviseStatement(
        statement_id=plan.statement_id,
        reason=reason,
        paragraphs=(*paragraphs, extra),
        meta=plan.meta,
    )


def _views(rng: random.Random, plans: Sequence[_Plan], total: int) -> Iterator[Command]:
    popularity = list(plans)
    rng.shuffle(popularity)
    weights = _zipf_weights(len(popularity), 1.2)
    individual = min(total // 20, MAX_INDIVIDUAL_VIEWS)
    for plan, count in zip(popularity, _apportion(total - individual, weights), strict=True):
        if count:
            yield ImportViews(
                statement_id=plan.statement_id,
                count=count,
                source=DEMO_VIEWS_SOURCE,
                meta=plan.meta,
            )
    for plan in rng.choices(popularity, weights=weights, k=individual):
        yield RecordView(statement_id=plan.statement_id, meta=plan.meta)


def _apportion(total: int, weights: Sequence[float]) -> list[int]:
    """Split ``total`` in proportion to ``weights`` exactly (largest remainders get the rest)."""
    weight_sum = sum(weights)
    shares = [total * w / weight_sum for w in weights]
    counts = [int(share) for share in shares]
    by_remainder = sorted(
        range(len(weights)), key=lambda i: (shares[i] - counts[i], -i), reverse=True
    )
    for i in by_remainder[: total - sum(counts)]:
        counts[i] += 1
    return counts
