"""Given events, when a command, then events (or an error): every rule, decided purely."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime
from typing import Any

import pytest

from domain.commands import (
    CommandMetadata,
    ImportViews,
    LinkRelated,
    PublishStatement,
    RecordView,
    RequestRelatedLink,
    ReviseStatement,
    StatementCommand,
    TagStatement,
    UnlinkRelated,
    UntagStatement,
    WithdrawStatement,
)
from domain.errors import (
    BodyTooLarge,
    DomainError,
    EmptyBody,
    EmptyTitle,
    EmptyTopic,
    InvalidKind,
    InvalidLanguage,
    InvalidMinisterId,
    InvalidSlug,
    InvalidSourceUrl,
    InvalidStatementId,
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
    DateChange,
    LinkedRelated,
    MinisterChange,
    MinisterRef,
    OptionalTextChange,
    ParagraphsChange,
    RelatedLinkRequested,
    StatementEvent,
    StatementPublished,
    StatementRevised,
    StatementWithdrawn,
    Tagged,
    TextChange,
    UnlinkedRelated,
    Untagged,
    Viewed,
    ViewsImported,
)
from domain.limits import MAX_BODY_BYTES, MAX_RELATED, MAX_TAGS, MAX_TITLE_LENGTH
from domain.link_requests import decide_link_request, requesters
from domain.statement import (
    INITIAL_STATE,
    Decision,
    StatementState,
    Topic,
    check_related,
    decide,
    evolve,
    replay,
)
from tests.domain.domain_builders import LAVROV, META, MOSCOW, RYABKOV, new_id, publish, published

SID = "5b0f3a8e-2d4c-4c55-9d2e-0f1d8b7a6c01"
OTHER = "9e8d7c6b-5a49-4382-b1f0-e9d8c7b6a501"


def given(*events: StatementEvent) -> StatementState:
    return replay(events)


def when(command: StatementCommand, *history: StatementEvent) -> Decision:
    return decide(command, given(*history))


def live() -> StatementPublished:
    return published(SID)


# --- publishing --------------------------------------------------------------------------


def test_publish_records_every_field_normalized() -> None:
    command = publish(
        SID,
        title="  Comment  on the talks,\nBeijing, 8 November 2014 ",
        paragraphs=("  First paragraph. ", "", "   ", "Second paragraph."),
        location=" Beijing ",
        source_url="https://mid.ru/x",
    )
    assert when(command) == [
        StatementPublished(
            statement_id=SID,
            slug="comment-on-the-talks-beijing-8-november-2014",
            title="Comment on the talks, Beijing, 8 November 2014",
            kind="comment",
            minister=LAVROV,
            location="Beijing",
            occurred_on=date(2014, 11, 8),
            published_at=datetime(2014, 11, 17, 16, 58, tzinfo=MOSCOW),
            paragraphs=("First paragraph.", "Second paragraph."),
            language="en",
            source_url="https://mid.ru/x",
        )
    ]


def test_publish_uses_the_given_slug() -> None:
    (event,) = when(publish(SID, slug="beijing-comment"))
    assert isinstance(event, StatementPublished)
    assert event.slug == "beijing-comment"


@pytest.mark.parametrize("title", ["", "   ", "\n\t"])
def test_publish_needs_a_title(title: str) -> None:
    with pytest.raises(EmptyTitle, match=r"^title: must not be empty$"):
        when(publish(title=title))


def test_title_of_500_characters_is_accepted_but_not_501() -> None:
    when(publish(title="a" * MAX_TITLE_LENGTH))
    with pytest.raises(TitleTooLong, match="501 characters; at most 500"):
        when(publish(title="a" * (MAX_TITLE_LENGTH + 1)))


@pytest.mark.parametrize("paragraphs", [(), ("",), (" ", "\n")])
def test_publish_needs_a_body(paragraphs: tuple[str, ...]) -> None:
    with pytest.raises(EmptyBody):
        when(publish(paragraphs=paragraphs))


def test_body_up_to_one_megabyte_of_utf8_is_accepted() -> None:
    when(publish(paragraphs=("a" * MAX_BODY_BYTES,)))
    # Two paragraphs are joined by a blank line, which counts.
    with pytest.raises(BodyTooLarge, match="1000002 bytes"):
        when(publish(paragraphs=("a" * 500_000, "a" * 500_000)))
    # Cyrillic letters take two bytes each.
    with pytest.raises(BodyTooLarge, match="1000002 bytes of UTF-8"):
        when(publish(paragraphs=("я" * 500_001,)))


def test_publish_needs_a_minister() -> None:
    with pytest.raises(MissingMinister):
        when(publish(minister=None))
    with pytest.raises(MissingMinister, match=r"^minister\.id: must not be empty$"):
        when(publish(minister=MinisterRef(id="", name="Sergey Lavrov", title="")))
    with pytest.raises(MissingMinister, match=r"^minister\.name: must not be empty$"):
        when(publish(minister=MinisterRef(id="sergey-lavrov", name=" ", title="")))
    with pytest.raises(InvalidMinisterId, match="'Sergey Lavrov'"):
        when(publish(minister=MinisterRef(id="Sergey Lavrov", name="Sergey Lavrov", title="")))


def test_occurred_on_may_not_be_after_the_publication_date() -> None:
    when(publish(occurred_on=date(2014, 11, 17)))
    with pytest.raises(OccurredAfterPublished, match=r"2014-11-18 is after .* 2014-11-17"):
        when(publish(occurred_on=date(2014, 11, 18)))


def test_publication_date_is_taken_in_the_timezone_given() -> None:
    # 00:30 in Moscow on the 18th is still the 17th in UTC: the given timezone decides.
    just_after_midnight = datetime(2014, 11, 18, 0, 30, tzinfo=MOSCOW)
    when(publish(occurred_on=date(2014, 11, 18), published_at=just_after_midnight))
    with pytest.raises(OccurredAfterPublished):
        when(
            publish(
                occurred_on=date(2014, 11, 18),
                published_at=just_after_midnight.astimezone(UTC),
            )
        )


def test_published_at_must_be_timezone_aware() -> None:
    with pytest.raises(NaiveTimestamp, match=r"^published_at: must include a timezone offset$"):
        when(publish(published_at=datetime(2014, 11, 17, 16, 58)))


@pytest.mark.parametrize(
    ("changes", "error"),
    [
        ({"kind": "gossip"}, InvalidKind),
        ({"language": "English"}, InvalidLanguage),
        ({"language": ""}, InvalidLanguage),
        ({"source_url": "ftp://mid.ru/x"}, InvalidSourceUrl),
        ({"slug": "Not A Slug"}, InvalidSlug),
        ({"slug": ""}, InvalidSlug),
        ({"slug": "a" * 201}, InvalidSlug),
        ({"title": "!!! ???"}, InvalidSlug),
        ({"location": "x" * 201}, LocationTooLong),
        ({"title": "bad \ud800 text"}, InvalidText),
        ({"paragraphs": ("bad \udfff text",)}, InvalidText),
    ],
)
def test_publish_rejects_invalid_fields(changes: dict[str, Any], error: type[DomainError]) -> None:
    with pytest.raises(error):
        when(publish(**changes))


@pytest.mark.parametrize("statement_id", ["abc", SID.upper(), "{" + SID + "}", ""])
def test_statement_ids_are_canonical_uuid_strings(statement_id: str) -> None:
    with pytest.raises(InvalidStatementId):
        when(publish(statement_id=statement_id))


def test_kind_is_case_insensitive_and_blank_location_is_none() -> None:
    (event,) = when(publish(kind=" Speech ", location="   "))
    assert isinstance(event, StatementPublished)
    assert (event.kind, event.location) == ("speech", None)


def test_a_statement_is_published_once() -> None:
    with pytest.raises(StatementAlreadyExists, match=SID):
        when(publish(SID), live())


def test_commands_need_an_actor() -> None:
    with pytest.raises(MissingActor):
        when(publish(meta=CommandMetadata(actor=" ", correlation_id="c")))


def test_evolve_published_gives_the_state() -> None:
    state = given(live())
    assert state.exists
    assert (state.statement_id, state.title, state.minister) == (SID, live().title, LAVROV)
    assert not state.withdrawn
    assert StatementState.initial() == INITIAL_STATE
    assert not INITIAL_STATE.exists


# --- commands on missing and withdrawn statements ---------------------------------------


def _every_command_but_publish() -> list[StatementCommand]:
    return [
        ReviseStatement(statement_id=SID, reason="typo", title="New title", meta=META),
        WithdrawStatement(statement_id=SID, reason="duplicate", meta=META),
        TagStatement(statement_id=SID, topics=("Syria",), meta=META),
        UntagStatement(statement_id=SID, topic="Syria", meta=META),
        LinkRelated(statement_id=SID, related_id=OTHER, meta=META),
        UnlinkRelated(statement_id=SID, related_id=OTHER, meta=META),
        RecordView(statement_id=SID, meta=META),
        ImportViews(statement_id=SID, count=10, source="archive", meta=META),
    ]


@pytest.mark.parametrize("command", _every_command_but_publish(), ids=lambda c: type(c).__name__)
def test_commands_on_a_missing_statement_fail(command: StatementCommand) -> None:
    with pytest.raises(StatementNotFound, match=f"statement {SID} does not exist"):
        when(command)


@pytest.mark.parametrize("command", _every_command_but_publish(), ids=lambda c: type(c).__name__)
def test_a_withdrawn_statement_takes_no_further_commands(command: StatementCommand) -> None:
    history = (
        live(),
        Tagged(statement_id=SID, topic_slug="syria", topic_name="Syria"),
        LinkedRelated(statement_id=SID, related_id=OTHER),
        StatementWithdrawn(statement_id=SID, reason="duplicate"),
    )
    with pytest.raises(StatementWithdrawnError, match="withdrawn and takes no further"):
        when(command, *history)


# --- revising ----------------------------------------------------------------------------


def test_revision_says_what_changed_and_why() -> None:
    new_day = date(2014, 11, 9)
    command = ReviseStatement(
        statement_id=SID,
        reason=" Corrected against the audio ",
        title="Comment on the talks, Beijing, 9 November 2014",
        kind="remarks",
        minister=RYABKOV,
        location="Shanghai",
        occurred_on=new_day,
        paragraphs=("Only paragraph.",),
        meta=META,
    )
    old = live()
    assert when(command, old) == [
        StatementRevised(
            statement_id=SID,
            reason="Corrected against the audio",
            title=TextChange(old=old.title, new="Comment on the talks, Beijing, 9 November 2014"),
            kind=TextChange(old="comment", new="remarks"),
            minister=MinisterChange(old=LAVROV, new=RYABKOV),
            location=OptionalTextChange(old="Beijing", new="Shanghai"),
            occurred_on=DateChange(old=date(2014, 11, 8), new=new_day),
            paragraphs=ParagraphsChange(old=old.paragraphs, new=("Only paragraph.",)),
        )
    ]


def test_revision_lists_only_fields_that_change() -> None:
    command = ReviseStatement(
        statement_id=SID, reason="typo", title=live().title, kind="speech", meta=META
    )
    assert when(command, live()) == [
        StatementRevised(
            statement_id=SID, reason="typo", kind=TextChange(old="comment", new="speech")
        )
    ]


def test_revision_already_in_effect_is_a_no_op() -> None:
    command = ReviseStatement(statement_id=SID, reason="typo", kind="comment", meta=META)
    assert when(command, live()) == []


def test_revision_can_remove_the_location() -> None:
    command = ReviseStatement(statement_id=SID, reason="unknown place", location="", meta=META)
    (event,) = when(command, live())
    assert isinstance(event, StatementRevised)
    assert event.location == OptionalTextChange(old="Beijing", new=None)
    assert given(live(), event).location is None


def test_revision_needs_a_reason_and_a_field() -> None:
    no_reason = r"^reason: must not be empty \(a revision needs a reason\)$"
    with pytest.raises(MissingReason, match=no_reason):
        when(ReviseStatement(statement_id=SID, reason=" ", title="x", meta=META), live())
    with pytest.raises(NothingToRevise):
        when(ReviseStatement(statement_id=SID, reason="why", meta=META), live())


@pytest.mark.parametrize(
    ("changes", "error"),
    [
        ({"title": ""}, EmptyTitle),
        ({"title": "a" * 501}, TitleTooLong),
        ({"kind": "rumour"}, InvalidKind),
        ({"paragraphs": ("  ",)}, EmptyBody),
        ({"occurred_on": date(2014, 11, 18)}, OccurredAfterPublished),
        ({"minister": MinisterRef(id="", name="", title="")}, MissingMinister),
    ],
)
def test_revision_keeps_the_publishing_rules(
    changes: dict[str, Any], error: type[DomainError]
) -> None:
    command = replace(ReviseStatement(statement_id=SID, reason="fix", meta=META), **changes)
    with pytest.raises(error):
        when(command, live())


def test_evolve_applies_revisions() -> None:
    revised = StatementRevised(
        statement_id=SID,
        reason="fix",
        title=TextChange(old=live().title, new="New title"),
        paragraphs=ParagraphsChange(old=live().paragraphs, new=("New body.",)),
    )
    state = given(live(), revised)
    assert (state.title, state.paragraphs, state.kind) == ("New title", ("New body.",), "comment")
    assert state.revisions == 1


# --- withdrawing -------------------------------------------------------------------------


def test_withdrawal_records_the_reason() -> None:
    command = WithdrawStatement(statement_id=SID, reason=" Published twice ", meta=META)
    events = when(command, live())
    assert events == [StatementWithdrawn(statement_id=SID, reason="Published twice")]
    state = given(live(), *events)  # type: ignore[arg-type]
    assert state.withdrawn
    assert state.withdrawal_reason == "Published twice"


def test_withdrawal_needs_a_reason() -> None:
    with pytest.raises(MissingReason, match="withdrawal"):
        when(WithdrawStatement(statement_id=SID, reason="", meta=META), live())


# --- tags --------------------------------------------------------------------------------


def test_tagging_records_slug_and_display_name() -> None:
    command = TagStatement(
        statement_id=SID, topics=("Middle East", " Ближний  Восток ", "Café"), meta=META
    )
    assert when(command, live()) == [
        Tagged(statement_id=SID, topic_slug="middle-east", topic_name="Middle East"),
        Tagged(statement_id=SID, topic_slug="blizhniy-vostok", topic_name="Ближний Восток"),
        Tagged(statement_id=SID, topic_slug="cafe", topic_name="Café"),
    ]


def test_tagging_with_a_tag_it_already_has_is_a_no_op() -> None:
    tagged = Tagged(statement_id=SID, topic_slug="middle-east", topic_name="Middle East")
    command = TagStatement(statement_id=SID, topics=("middle  EAST",), meta=META)
    assert when(command, live(), tagged) == []


def test_tagging_twice_in_one_command_tags_once() -> None:
    command = TagStatement(statement_id=SID, topics=("Syria", "SYRIA", "syria!"), meta=META)
    assert when(command, live()) == [
        Tagged(statement_id=SID, topic_slug="syria", topic_name="Syria")
    ]


@pytest.mark.parametrize(
    ("topics", "error"),
    [
        ((), NoTopics),
        (("",), EmptyTopic),
        (("  ",), EmptyTopic),
        (("!!!",), InvalidTopic),
        (("x" * 101,), TopicTooLong),
    ],
)
def test_tagging_rejects_bad_topics(topics: tuple[str, ...], error: type[DomainError]) -> None:
    with pytest.raises(error):
        when(TagStatement(statement_id=SID, topics=topics, meta=META), live())


def test_at_most_100_tags() -> None:
    tags = [Tagged(statement_id=SID, topic_slug=f"t{i}", topic_name=f"T{i}") for i in range(99)]
    one_more = TagStatement(statement_id=SID, topics=("T99",), meta=META)
    assert len(when(one_more, live(), *tags)) == 1
    two_more = TagStatement(statement_id=SID, topics=("T99", "T100"), meta=META)
    with pytest.raises(TooManyTags, match=f"101 topics; at most {MAX_TAGS}"):
        when(two_more, live(), *tags)
    full = (*tags, Tagged(statement_id=SID, topic_slug="t99", topic_name="T99"))
    # Re-tagging with a topic it has is still fine when full.
    assert when(TagStatement(statement_id=SID, topics=("T5",), meta=META), live(), *full) == []


def test_untagging_by_name_or_slug() -> None:
    tagged = Tagged(statement_id=SID, topic_slug="middle-east", topic_name="Middle East")
    for topic in ("Middle East", "middle-east"):
        command = UntagStatement(statement_id=SID, topic=topic, meta=META)
        assert when(command, live(), tagged) == [
            Untagged(statement_id=SID, topic_slug="middle-east")
        ]


def test_untagging_an_absent_tag_is_an_error() -> None:
    with pytest.raises(TagNotPresent, match="not tagged with topic 'syria'"):
        when(UntagStatement(statement_id=SID, topic="Syria", meta=META), live())


def test_evolve_tags_and_untags() -> None:
    state = given(
        live(),
        Tagged(statement_id=SID, topic_slug="syria", topic_name="Syria"),
        Tagged(statement_id=SID, topic_slug="iran", topic_name="Iran"),
        Untagged(statement_id=SID, topic_slug="syria"),
    )
    assert state.topics == (Topic(slug="iran", name="Iran"),)


# --- related statements ------------------------------------------------------------------


def test_linking_records_the_related_id() -> None:
    command = LinkRelated(statement_id=SID, related_id=OTHER, meta=META)
    assert when(command, live()) == [LinkedRelated(statement_id=SID, related_id=OTHER)]


def test_linking_an_existing_link_is_a_no_op() -> None:
    command = LinkRelated(statement_id=SID, related_id=OTHER, meta=META)
    assert when(command, live(), LinkedRelated(statement_id=SID, related_id=OTHER)) == []


def test_a_statement_cannot_be_related_to_itself() -> None:
    with pytest.raises(SelfRelation, match="cannot be related to itself"):
        when(LinkRelated(statement_id=SID, related_id=SID, meta=META), live())


def test_related_id_must_be_a_statement_id() -> None:
    with pytest.raises(InvalidStatementId):
        when(LinkRelated(statement_id=SID, related_id="nope", meta=META), live())


def test_at_most_100_related_statements() -> None:
    links = [LinkedRelated(statement_id=SID, related_id=new_id()) for _ in range(MAX_RELATED)]
    with pytest.raises(TooManyRelated):
        when(LinkRelated(statement_id=SID, related_id=OTHER, meta=META), live(), *links)


def test_the_related_statement_must_exist_and_be_live() -> None:
    with pytest.raises(RelatedNotFound, match=OTHER):
        check_related(OTHER, INITIAL_STATE)
    other = published(OTHER)
    check_related(OTHER, given(other))
    with pytest.raises(RelatedWithdrawn, match=OTHER):
        check_related(OTHER, given(other, StatementWithdrawn(statement_id=OTHER, reason="x")))


def test_unlinking() -> None:
    linked = LinkedRelated(statement_id=SID, related_id=OTHER)
    command = UnlinkRelated(statement_id=SID, related_id=OTHER, meta=META)
    events = when(command, live(), linked)
    assert events == [UnlinkedRelated(statement_id=SID, related_id=OTHER)]
    assert given(live(), linked, *events).related == ()  # type: ignore[arg-type]


def test_unlinking_an_absent_link_is_an_error() -> None:
    with pytest.raises(LinkNotPresent, match=f"not linked to {OTHER}"):
        when(UnlinkRelated(statement_id=SID, related_id=OTHER, meta=META), live())


def test_link_requests_are_recorded_once_and_never_to_self() -> None:
    command = RequestRelatedLink(statement_id=OTHER, requested_by=SID, meta=META)
    assert decide_link_request(command, ()) == [
        RelatedLinkRequested(statement_id=OTHER, requested_by=SID)
    ]
    assert decide_link_request(command, (SID,)) == []
    with pytest.raises(SelfRelation):
        decide_link_request(RequestRelatedLink(statement_id=SID, requested_by=SID, meta=META), ())
    events = [
        RelatedLinkRequested(statement_id=OTHER, requested_by=SID),
        RelatedLinkRequested(statement_id=OTHER, requested_by="b"),
        RelatedLinkRequested(statement_id=OTHER, requested_by=SID),
    ]
    assert requesters(events) == (SID, "b")


# --- views -------------------------------------------------------------------------------


def test_a_view_is_one_event() -> None:
    assert when(RecordView(statement_id=SID, meta=META), live()) == [Viewed(statement_id=SID)]


def test_imported_views_are_one_event_with_the_count() -> None:
    command = ImportViews(statement_id=SID, count=1993, source=" archive ", meta=META)
    assert when(command, live()) == [ViewsImported(statement_id=SID, count=1993, source="archive")]


def test_importing_zero_views_writes_nothing() -> None:
    assert when(ImportViews(statement_id=SID, count=0, source="a", meta=META), live()) == []


def test_imported_views_need_a_count_and_a_source() -> None:
    with pytest.raises(InvalidViewCount, match="-1"):
        when(ImportViews(statement_id=SID, count=-1, source="a", meta=META), live())
    with pytest.raises(MissingSource):
        when(ImportViews(statement_id=SID, count=1, source=" ", meta=META), live())


def test_views_do_not_change_the_statement_state() -> None:
    state = given(live())
    # The handler never feeds views to evolve; replay refuses anything but statement events.
    with pytest.raises(TypeError, match="Viewed"):
        replay([live(), Viewed(statement_id=SID)])
    assert evolve(state, Tagged(statement_id=SID, topic_slug="a", topic_name="A")).topics


def test_publish_command_defaults() -> None:
    command = PublishStatement(
        statement_id=SID,
        title="T",
        kind="comment",
        minister=LAVROV,
        occurred_on=date(2020, 1, 1),
        published_at=datetime(2020, 1, 1, tzinfo=UTC),
        paragraphs=("p",),
        meta=META,
    )
    (event,) = when(command)
    assert isinstance(event, StatementPublished)
    assert (event.language, event.location, event.source_url, event.slug) == ("en", None, None, "t")
