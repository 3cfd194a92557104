"""The Statement aggregate: its state, ``evolve`` (apply an event) and ``decide`` (rules).

Both functions are pure; the handlers do the loading and appending around them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime
from typing import Final, TypeAlias

from domain.commands import (
    ImportViews,
    LinkRelated,
    PublishStatement,
    RecordView,
    ReviseStatement,
    StatementCommand,
    TagStatement,
    UnlinkRelated,
    UntagStatement,
    WithdrawStatement,
)
from domain.errors import (
    BodyTooLarge,
    EmptyBody,
    EmptyTitle,
    EmptyTopic,
    InvalidKind,
    InvalidLanguage,
    InvalidMinisterId,
    InvalidSlug,
    InvalidSourceUrl,
    InvalidText,
    InvalidTopic,
    InvalidViewCount,
    LinkNotPresent,
    LocationTooLong,
    MissingActor,
    MissingMinister,
    MissingReason,
    MissingSource,
    NaiveTimestamp,
    NothingToRevise,
    NoTopics,
    OccurredAfterPublished,
    RelatedNotFound,
    RelatedWithdrawn,
    SelfRelation,
    StatementAlreadyExists,
    StatementNotFound,
    StatementWithdrawnError,
    TagNotPresent,
    TitleTooLong,
    TooManyRelated,
    TooManyTags,
    TopicTooLong,
)
from domain.events import (
    STATEMENT_EVENT_TYPES,
    DateChange,
    LinkedRelated,
    MinisterChange,
    MinisterRef,
    OptionalTextChange,
    ParagraphsChange,
    StatementEvent,
    StatementPublished,
    StatementRevised,
    StatementWithdrawn,
    Tagged,
    TextChange,
    UnlinkedRelated,
    Untagged,
    Viewed,
    ViewEvent,
    ViewsImported,
)
from domain.ids import check_statement_id
from domain.kinds import STATEMENT_KINDS
from domain.limits import (
    MAX_BODY_BYTES,
    MAX_LOCATION_LENGTH,
    MAX_RELATED,
    MAX_TAGS,
    MAX_TITLE_LENGTH,
    MAX_TOPIC_NAME_LENGTH,
)
from domain.slugs import MAX_SLUG_LENGTH, slug_problem, slugify, title_slug, truncate_slug

Decision: TypeAlias = list[StatementEvent | ViewEvent]

_LANGUAGE: Final = re.compile(r"[a-z]{2,3}(?:-[A-Za-z0-9]{2,8})*", re.ASCII)
_NO_MINISTER: Final = MinisterRef(id="", name="", title="")
_NO_TIME: Final = datetime.min.replace(tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class Topic:
    """A topic a statement is tagged with."""

    slug: str
    name: str


@dataclass(frozen=True, slots=True)
class StatementState:
    """What the rules need to know about one statement; ``StatementState()`` is "not published"."""

    statement_id: str = ""
    slug: str = ""
    title: str = ""
    kind: str = ""
    minister: MinisterRef = _NO_MINISTER
    location: str | None = None
    occurred_on: date = date.min
    published_at: datetime = _NO_TIME
    paragraphs: tuple[str, ...] = ()
    language: str = ""
    source_url: str | None = None
    topics: tuple[Topic, ...] = ()
    related: tuple[str, ...] = ()
    withdrawn: bool = False
    withdrawal_reason: str | None = None
    revisions: int = 0

    @classmethod
    def initial(cls) -> StatementState:
        """The state of a statement that has not been published."""
        return INITIAL_STATE

    @property
    def exists(self) -> bool:
        return bool(self.statement_id)

    @property
    def topic_slugs(self) -> tuple[str, ...]:
        return tuple(topic.slug for topic in self.topics)


INITIAL_STATE: Final = StatementState()


# --- evolve ------------------------------------------------------------------------------


def evolve(state: StatementState, event: StatementEvent) -> StatementState:
    """The state after ``event``; events are facts, so nothing is checked here."""
    match event:
        case StatementPublished():
            return StatementState(
                statement_id=event.statement_id,
                slug=event.slug,
                title=event.title,
                kind=event.kind,
                minister=event.minister,
                location=event.location,
                occurred_on=event.occurred_on,
                published_at=event.published_at,
                paragraphs=event.paragraphs,
                language=event.language,
                source_url=event.source_url,
            )
        case StatementRevised():
            return replace(
                state,
                title=event.title.new if event.title else state.title,
                kind=event.kind.new if event.kind else state.kind,
                minister=event.minister.new if event.minister else state.minister,
                location=event.location.new if event.location else state.location,
                occurred_on=event.occurred_on.new if event.occurred_on else state.occurred_on,
                paragraphs=event.paragraphs.new if event.paragraphs else state.paragraphs,
                revisions=state.revisions + 1,
            )
        case StatementWithdrawn():
            return replace(state, withdrawn=True, withdrawal_reason=event.reason)
        case Tagged():
            topic = Topic(slug=event.topic_slug, name=event.topic_name)
            return replace(state, topics=(*state.topics, topic))
        case Untagged():
            kept = tuple(t for t in state.topics if t.slug != event.topic_slug)
            return replace(state, topics=kept)
        case LinkedRelated():
            return replace(state, related=(*state.related, event.related_id))
        case UnlinkedRelated():
            kept_ids = tuple(r for r in state.related if r != event.related_id)
            return replace(state, related=kept_ids)


def replay(events: Iterable[object], state: StatementState = INITIAL_STATE) -> StatementState:
    """Fold the events of a statement stream into its state."""
    for event in events:
        if not isinstance(event, STATEMENT_EVENT_TYPES):
            raise TypeError(f"not a statement event: {type(event).__name__}")
        state = evolve(state, event)
    return state


# --- decide ------------------------------------------------------------------------------


def decide(command: StatementCommand, state: StatementState) -> Decision:
    """The events ``command`` causes in ``state``; raises a DomainError when a rule forbids it.

    Views (``Viewed``, ``ViewsImported``) are decided here against the statement's state but
    belong in the statement's view stream; everything else belongs in the statement stream.
    """
    if not command.meta.actor.strip():
        raise MissingActor()
    match command:
        case PublishStatement():
            return _publish(command, state)
        case ReviseStatement():
            return _revise(command, state)
        case WithdrawStatement():
            _require_live(state, command.statement_id)
            reason = command.reason.strip()
            if not reason:
                raise MissingReason("withdrawal")
            return [StatementWithdrawn(statement_id=command.statement_id, reason=reason)]
        case TagStatement():
            return _tag(command, state)
        case UntagStatement():
            _require_live(state, command.statement_id)
            slug = topic_slug(command.topic, "topic")
            if slug not in state.topic_slugs:
                raise TagNotPresent(command.statement_id, slug)
            return [Untagged(statement_id=command.statement_id, topic_slug=slug)]
        case LinkRelated():
            return _link(command, state)
        case UnlinkRelated():
            _require_live(state, command.statement_id)
            if command.related_id not in state.related:
                raise LinkNotPresent(command.statement_id, command.related_id)
            return [
                UnlinkedRelated(statement_id=command.statement_id, related_id=command.related_id)
            ]
        case RecordView():
            _require_live(state, command.statement_id)
            return [Viewed(statement_id=command.statement_id)]
        case ImportViews():
            _require_live(state, command.statement_id)
            source = command.source.strip()
            if not source:
                raise MissingSource()
            if command.count < 0:
                raise InvalidViewCount(command.count)
            if command.count == 0:
                return []
            return [
                ViewsImported(statement_id=command.statement_id, count=command.count, source=source)
            ]


def check_related(related_id: str, related: StatementState) -> None:
    """Raise unless ``related`` (the state of ``related_id``) can be linked to."""
    if not related.exists:
        raise RelatedNotFound(related_id)
    if related.withdrawn:
        raise RelatedWithdrawn(related_id)


def statement_slug(command: PublishStatement) -> str:
    """The slug a publish command asks for: its own, or one made from its title."""
    if command.slug is not None:
        return command.slug
    return title_slug(command.title)


def topic_slug(name: str, field: str = "topics") -> str:
    """The slug of a topic display name; raises (about ``field``) if it makes no slug."""
    cleaned = " ".join(name.split())
    if not cleaned:
        raise EmptyTopic(field)
    slug = truncate_slug(slugify(cleaned), MAX_SLUG_LENGTH)
    if not slug:
        raise InvalidTopic(cleaned, field)
    return slug


def _require_live(state: StatementState, statement_id: str) -> None:
    if not state.exists:
        raise StatementNotFound(statement_id)
    if state.withdrawn:
        raise StatementWithdrawnError(statement_id)


def _publish(command: PublishStatement, state: StatementState) -> Decision:
    check_statement_id(command.statement_id)
    if state.exists:
        raise StatementAlreadyExists(command.statement_id)
    title = _title(command.title)
    slug = statement_slug(command)
    problem = slug_problem(slug)
    if problem is not None:
        raise InvalidSlug(slug, problem)
    if command.published_at.tzinfo is None or command.published_at.utcoffset() is None:
        raise NaiveTimestamp("published_at")
    occurred_on = _occurred_on(command.occurred_on, command.published_at)
    language = command.language.strip()
    if not _LANGUAGE.fullmatch(language):
        raise InvalidLanguage(command.language)
    source_url = command.source_url.strip() if command.source_url is not None else None
    if source_url is not None and not source_url.startswith(("http://", "https://")):
        raise InvalidSourceUrl(source_url)
    return [
        StatementPublished(
            statement_id=command.statement_id,
            slug=slug,
            title=title,
            kind=_kind(command.kind),
            minister=_minister(command.minister),
            location=_location(command.location),
            occurred_on=occurred_on,
            published_at=command.published_at,
            paragraphs=_paragraphs(command.paragraphs),
            language=language,
            source_url=source_url or None,
        )
    ]


def _revise(command: ReviseStatement, state: StatementState) -> Decision:
    _require_live(state, command.statement_id)
    reason = command.reason.strip()
    if not reason:
        raise MissingReason("revision")
    fields = (
        command.title,
        command.kind,
        command.minister,
        command.location,
        command.occurred_on,
        command.paragraphs,
    )
    if all(value is None for value in fields):
        raise NothingToRevise()
    title = kind = None
    minister = None
    location = None
    occurred_on = None
    paragraphs = None
    if command.title is not None:
        new_title = _title(command.title)
        if new_title != state.title:
            title = TextChange(old=state.title, new=new_title)
    if command.kind is not None:
        new_kind = _kind(command.kind)
        if new_kind != state.kind:
            kind = TextChange(old=state.kind, new=new_kind)
    if command.minister is not None:
        new_minister = _minister(command.minister)
        if new_minister != state.minister:
            minister = MinisterChange(old=state.minister, new=new_minister)
    if command.location is not None:
        new_location = _location(command.location)
        if new_location != state.location:
            location = OptionalTextChange(old=state.location, new=new_location)
    if command.occurred_on is not None:
        new_date = _occurred_on(command.occurred_on, state.published_at)
        if new_date != state.occurred_on:
            occurred_on = DateChange(old=state.occurred_on, new=new_date)
    if command.paragraphs is not None:
        new_paragraphs = _paragraphs(command.paragraphs)
        if new_paragraphs != state.paragraphs:
            paragraphs = ParagraphsChange(old=state.paragraphs, new=new_paragraphs)
    if all(c is None for c in (title, kind, minister, location, occurred_on, paragraphs)):
        # Re-sending a revision that is already in effect changes nothing.
        return []
    return [
        StatementRevised(
            statement_id=command.statement_id,
            reason=reason,
            title=title,
            kind=kind,
            minister=minister,
            location=location,
            occurred_on=occurred_on,
            paragraphs=paragraphs,
        )
    ]


def _tag(command: TagStatement, state: StatementState) -> Decision:
    _require_live(state, command.statement_id)
    if not command.topics:
        raise NoTopics()
    have = set(state.topic_slugs)
    events: Decision = []
    for name in command.topics:
        cleaned = " ".join(name.split())
        if len(cleaned) > MAX_TOPIC_NAME_LENGTH:
            raise TopicTooLong(cleaned, MAX_TOPIC_NAME_LENGTH, "topics")
        slug = topic_slug(cleaned, "topics")
        if slug in have:
            continue
        have.add(slug)
        events.append(
            Tagged(statement_id=command.statement_id, topic_slug=slug, topic_name=cleaned)
        )
    if len(have) > MAX_TAGS:
        raise TooManyTags(len(have), MAX_TAGS)
    return events


def _link(command: LinkRelated, state: StatementState) -> Decision:
    _require_live(state, command.statement_id)
    check_statement_id(command.related_id, "related_id")
    if command.related_id == command.statement_id:
        raise SelfRelation(command.statement_id)
    if command.related_id in state.related:
        return []
    if len(state.related) >= MAX_RELATED:
        raise TooManyRelated(MAX_RELATED)
    return [LinkedRelated(statement_id=command.statement_id, related_id=command.related_id)]


def _check_encodable(field: str, value: str) -> None:
    # Lone surrogates cannot be stored as UTF-8; reject them here rather than in the store.
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidText(field) from None


def _title(value: str) -> str:
    title = " ".join(value.split())
    _check_encodable("title", title)
    if not title:
        raise EmptyTitle()
    if len(title) > MAX_TITLE_LENGTH:
        raise TitleTooLong(len(title), MAX_TITLE_LENGTH)
    return title


def _kind(value: str) -> str:
    kind = value.strip().lower()
    if kind not in STATEMENT_KINDS:
        raise InvalidKind(value, STATEMENT_KINDS)
    return kind


def _minister(value: MinisterRef | None) -> MinisterRef:
    if value is None:
        raise MissingMinister()
    minister = MinisterRef(
        id=value.id.strip(), name=" ".join(value.name.split()), title=" ".join(value.title.split())
    )
    if not minister.id or not minister.name:
        raise MissingMinister(
            "minister.id" if not minister.id else "minister.name", "must not be empty"
        )
    if slug_problem(minister.id) is not None:
        raise InvalidMinisterId(minister.id)
    return minister


def _location(value: str | None) -> str | None:
    if value is None:
        return None
    location = " ".join(value.split())
    if len(location) > MAX_LOCATION_LENGTH:
        raise LocationTooLong(len(location), MAX_LOCATION_LENGTH)
    return location or None


def _occurred_on(value: date, published_at: datetime) -> date:
    # A datetime is a date too; only its calendar day matters here.
    occurred = value.date() if isinstance(value, datetime) else value
    published_on = published_at.date()
    if occurred > published_on:
        raise OccurredAfterPublished(occurred, published_on)
    return occurred


def _paragraphs(value: tuple[str, ...]) -> tuple[str, ...]:
    paragraphs = tuple(p.strip() for p in value if p.strip())
    if not paragraphs:
        raise EmptyBody()
    body = "\n\n".join(paragraphs)
    _check_encodable("paragraphs", body)
    size = len(body.encode("utf-8"))
    if size > MAX_BODY_BYTES:
        raise BodyTooLarge(size, MAX_BODY_BYTES)
    return paragraphs
