"""Errors for the domain's rules: one subclass per rule, each with a stable code.

Every error names the ``field`` it concerns as the command spells it (``published_at``,
``statement_id``; None when it concerns the command as a whole) and says ``problem``, what is
wrong with it, in words that name no other field. Its ``message`` is ``"field: problem"``.
An API that names fields otherwise (GraphQL's ``publishedAt``) builds its own message from the
two parts, so the domain stays free of any API's naming.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

ErrorCode = Literal["BAD_USER_INPUT", "NOT_FOUND", "CONFLICT"]


class DomainError(Exception):
    """Base class of every rule violation; ``code`` says how an API should report it."""

    code: ClassVar[ErrorCode] = "BAD_USER_INPUT"

    def __init__(self, field: str | None, problem: str) -> None:
        self.field = field
        self.problem = problem
        self.message = f"{field}: {problem}" if field else problem
        super().__init__(self.message)


class NotFoundError(DomainError):
    """Base class of errors about something that does not exist."""

    code: ClassVar[ErrorCode] = "NOT_FOUND"


class ConflictError(DomainError):
    """Base class of errors about a state that does not allow the command."""

    code: ClassVar[ErrorCode] = "CONFLICT"


# --- publishing and revising -------------------------------------------------------------


class EmptyTitle(DomainError):
    """The title is empty or only whitespace."""

    def __init__(self) -> None:
        super().__init__("title", "must not be empty")


class TitleTooLong(DomainError):
    """The title is longer than the limit."""

    def __init__(self, length: int, limit: int) -> None:
        self.length = length
        self.limit = limit
        super().__init__("title", f"has {length} characters; at most {limit} are allowed")


class EmptyBody(DomainError):
    """The body has no non-blank paragraph."""

    def __init__(self) -> None:
        super().__init__("paragraphs", "must have at least one non-empty paragraph")


class BodyTooLarge(DomainError):
    """The body is larger than the limit in UTF-8 bytes."""

    def __init__(self, size: int, limit: int) -> None:
        self.size = size
        self.limit = limit
        super().__init__("paragraphs", f"is {size} bytes of UTF-8; at most {limit} are allowed")


class MissingMinister(DomainError):
    """No minister was given, or it lacks an id or a name."""

    def __init__(self, field: str = "minister", problem: str = "is required") -> None:
        super().__init__(field, problem)


class InvalidMinisterId(DomainError):
    """The minister id is not a slug."""

    def __init__(self, minister_id: str) -> None:
        self.minister_id = minister_id
        super().__init__(
            "minister.id", f"{minister_id!r} is not a slug (lowercase words joined by '-')"
        )


class NaiveTimestamp(DomainError):
    """A datetime without a timezone was given."""

    def __init__(self, field: str) -> None:
        super().__init__(field, "must include a timezone offset")


class OccurredAfterPublished(DomainError):
    """The statement would have been published before it was made."""

    def __init__(self, occurred_on: object, published_on: object) -> None:
        self.occurred_on = occurred_on
        self.published_on = published_on
        super().__init__(
            "occurred_on", f"{occurred_on} is after the day of publication, {published_on}"
        )


class InvalidKind(DomainError):
    """The kind is not one of the known statement kinds."""

    def __init__(self, kind: str, allowed: tuple[str, ...]) -> None:
        self.kind = kind
        super().__init__("kind", f"{kind!r} is not one of: {', '.join(allowed)}")


class InvalidLanguage(DomainError):
    """The language is not a language tag such as 'en' or 'ru'."""

    def __init__(self, language: str) -> None:
        self.language = language
        super().__init__("language", f"{language!r} is not a language tag such as 'en' or 'ru'")


class InvalidSourceUrl(DomainError):
    """The source URL is not an http(s) URL."""

    def __init__(self, url: str) -> None:
        self.url = url
        super().__init__("source_url", f"{url!r} does not start with http:// or https://")


class LocationTooLong(DomainError):
    """The location is longer than the limit."""

    def __init__(self, length: int, limit: int) -> None:
        super().__init__("location", f"has {length} characters; at most {limit} are allowed")


class InvalidText(DomainError):
    """A text field holds characters that cannot be stored as UTF-8 (lone surrogates)."""

    def __init__(self, field: str) -> None:
        super().__init__(field, "contains characters that are not valid Unicode text")


class InvalidSlug(DomainError):
    """A slug is empty, too long or not in canonical form."""

    def __init__(self, slug: str, detail: str) -> None:
        self.slug = slug
        super().__init__("slug", f"{slug!r} is invalid: {detail}")


class InvalidStatementId(DomainError):
    """A statement id is not a canonical UUID string."""

    def __init__(self, value: str, field: str = "statement_id") -> None:
        self.value = value
        super().__init__(field, f"{value!r} is not a canonical UUID string")


class StatementAlreadyExists(ConflictError):
    """A statement with this id has already been published."""

    def __init__(self, statement_id: str) -> None:
        self.statement_id = statement_id
        super().__init__("statement_id", f"statement {statement_id} has already been published")


class SlugTaken(ConflictError):
    """Another statement already holds the slug."""

    def __init__(self, slug: str, owner_id: str) -> None:
        self.slug = slug
        self.owner_id = owner_id
        super().__init__("slug", f"{slug!r} is already used by statement {owner_id}")


class MissingReason(DomainError):
    """A revision or withdrawal was given without a reason."""

    def __init__(self, action: str) -> None:
        super().__init__("reason", f"must not be empty (a {action} needs a reason)")


class NothingToRevise(DomainError):
    """A revision named no field to change."""

    def __init__(self) -> None:
        super().__init__(None, "a revision must change at least one field")


# --- lifecycle ---------------------------------------------------------------------------


class StatementNotFound(NotFoundError):
    """No statement with this id has been published."""

    def __init__(self, statement_id: str) -> None:
        self.statement_id = statement_id
        super().__init__("statement_id", f"statement {statement_id} does not exist")


class StatementWithdrawnError(ConflictError):
    """The statement was withdrawn and takes no further commands."""

    def __init__(self, statement_id: str) -> None:
        self.statement_id = statement_id
        super().__init__(
            "statement_id", f"statement {statement_id} was withdrawn and takes no further commands"
        )


# --- topics ------------------------------------------------------------------------------


class NoTopics(DomainError):
    """A tag command named no topic."""

    def __init__(self) -> None:
        super().__init__("topics", "must name at least one topic")


class EmptyTopic(DomainError):
    """A topic name is empty or only whitespace."""

    def __init__(self, field: str) -> None:
        super().__init__(field, "a topic name must not be empty")


class InvalidTopic(DomainError):
    """A topic name has no letter or digit to make a slug from."""

    def __init__(self, name: str, field: str) -> None:
        self.name = name
        super().__init__(field, f"{name!r} has no letters or digits to make a slug from")


class TopicTooLong(DomainError):
    """A topic name is longer than the limit."""

    def __init__(self, name: str, limit: int, field: str) -> None:
        self.name = name
        super().__init__(
            field, f"a topic name has {len(name)} characters; at most {limit} are allowed"
        )


class TooManyTags(DomainError):
    """Tagging would give the statement more topics than allowed."""

    def __init__(self, count: int, limit: int) -> None:
        self.count = count
        self.limit = limit
        super().__init__(
            "topics", f"the statement would have {count} topics; at most {limit} are allowed"
        )


class TagNotPresent(NotFoundError):
    """The statement is not tagged with the topic being removed."""

    def __init__(self, statement_id: str, topic_slug: str) -> None:
        self.statement_id = statement_id
        self.topic_slug = topic_slug
        super().__init__(
            "topic", f"statement {statement_id} is not tagged with topic {topic_slug!r}"
        )


class TopicNotFound(NotFoundError):
    """No statement has ever been tagged with the topic."""

    def __init__(self, topic_slug: str) -> None:
        self.topic_slug = topic_slug
        super().__init__("topic", f"no topic has the slug {topic_slug!r}")


class TopicSlugChanged(DomainError):
    """A new name for a topic would make another slug than the topic's."""

    def __init__(self, name: str, topic_slug: str, new_slug: str) -> None:
        self.name = name
        self.topic_slug = topic_slug
        self.new_slug = new_slug
        super().__init__(
            "name",
            f"{name!r} makes the slug {new_slug!r}; a new name must keep the slug "
            f"{topic_slug!r}, which tagging finds the topic by",
        )


# --- related statements ------------------------------------------------------------------


class SelfRelation(DomainError):
    """A statement cannot be related to itself."""

    def __init__(self, statement_id: str) -> None:
        self.statement_id = statement_id
        super().__init__("related_id", f"statement {statement_id} cannot be related to itself")


class RelatedNotFound(NotFoundError):
    """The statement to relate to does not exist."""

    def __init__(self, related_id: str) -> None:
        self.related_id = related_id
        super().__init__("related_id", f"related statement {related_id} does not exist")


class RelatedWithdrawn(ConflictError):
    """The statement to relate to was withdrawn."""

    def __init__(self, related_id: str) -> None:
        self.related_id = related_id
        super().__init__("related_id", f"related statement {related_id} was withdrawn")


class TooManyRelated(DomainError):
    """Linking would give the statement more related statements than allowed."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        super().__init__("related_id", f"a statement can have at most {limit} related statements")


class LinkNotPresent(NotFoundError):
    """The statement is not linked to the related statement being unlinked."""

    def __init__(self, statement_id: str, related_id: str) -> None:
        self.statement_id = statement_id
        self.related_id = related_id
        super().__init__("related_id", f"statement {statement_id} is not linked to {related_id}")


# --- views -------------------------------------------------------------------------------


class InvalidViewCount(DomainError):
    """An imported view count is negative."""

    def __init__(self, count: int) -> None:
        self.count = count
        super().__init__("count", f"must not be negative, got {count}")


class MissingSource(DomainError):
    """A view import names no source."""

    def __init__(self) -> None:
        super().__init__("source", "must not be empty")


class ViewsAlreadyImported(ConflictError):
    """Views from this source were already imported (each source counts once per statement)."""

    def __init__(self, statement_id: str, source: str) -> None:
        self.statement_id = statement_id
        self.source = source
        super().__init__(
            "source",
            f"views of statement {statement_id} from source {source!r} were already imported; "
            "a source is imported once per statement",
        )


@dataclass(frozen=True, slots=True)
class ItemProblem:
    """What is wrong with one item of a list: its ``index``, the item's ``field``, ``problem``."""

    index: int
    field: str
    problem: str


class ItemsRejected(DomainError):
    """Items of a list field are wrong; the whole command is refused, each item named.

    ``field`` is the list (``views``); an API names each item as ``views[3].statementId``.
    """

    def __init__(
        self, field: str, problems: tuple[ItemProblem, ...], *, total: int | None = None
    ) -> None:
        self.problems = problems
        #: How many items are wrong; ``problems`` may list only the first of them.
        self.total = len(problems) if total is None else total
        first = problems[0]
        more = f" (and {self.total - 1} more)" if self.total > 1 else ""
        super().__init__(f"{field}[{first.index}].{first.field}", f"{first.problem}{more}")
        self.list_field = field


class BatchTooLarge(DomainError):
    """A batch holds more items than allowed, or none."""

    def __init__(self, field: str, count: int, limit: int) -> None:
        self.count = count
        self.limit = limit
        problem = (
            "must hold at least one item"
            if count == 0
            else f"holds {count:,} items; at most {limit:,} are allowed per request"
        )
        super().__init__(field, problem)


class InvalidBatchId(DomainError):
    """A batch id is empty, too long or not printable text."""

    def __init__(self, problem: str) -> None:
        super().__init__("batch_id", problem)


class BatchIdReused(ConflictError):
    """A batch id was already used by this sender for a batch with other views."""

    def __init__(self, batch_id: str) -> None:
        self.batch_id = batch_id
        super().__init__(
            "batch_id",
            f"batch {batch_id!r} was already recorded with other views; a retry must send the "
            "same views, a new batch needs a new id",
        )


# --- commands and storage ----------------------------------------------------------------


class MissingActor(DomainError):
    """A command's metadata names no actor."""

    def __init__(self) -> None:
        super().__init__("actor", "must not be empty (every command needs an actor)")


class ConcurrencyConflict(ConflictError):
    """The stream changed since it was read: its version is not the expected one."""

    def __init__(self, stream_id: str, expected: int | None, actual: int) -> None:
        self.stream_id = stream_id
        self.expected = expected
        self.actual = actual
        super().__init__(
            "expected_version",
            f"stream {stream_id!r} is at version {actual}, but version {expected} was expected",
        )


class DuplicateEventId(ConflictError):
    """Event ids were reused for events other than the ones first appended with them."""

    def __init__(self, stream_id: str, detail: str) -> None:
        self.stream_id = stream_id
        self.detail = detail
        super().__init__(None, f"stream {stream_id!r}: {detail}")


# --- importer ----------------------------------------------------------------------------


class PageParseError(DomainError):
    """An archive page could not be parsed; the message names the source and what is missing."""

    def __init__(self, source: str, missing: str) -> None:
        self.source = source
        self.missing = missing
        super().__init__(None, f"{source}: cannot parse archive page: {missing}")


class PageRejected(DomainError):
    """A parsed archive page breaks a statement rule; nothing of it was written."""

    def __init__(self, source: str, cause: DomainError) -> None:
        self.source = source
        self.cause = cause
        super().__init__(None, f"{source}: cannot import archive page: {cause.message}")
