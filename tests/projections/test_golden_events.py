"""Golden files: every historical version of every stored event still decodes to today's event.

A file ``golden/<Type>.v<N>.json`` holds the data of one event as version N stored it. When an
event's schema changes, add the new version's file and an upcaster; never edit an old file.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest

from domain import events as E
from eventstore import SerializationError
from projections.registry import event_registry
from projections.upcasters import VERSIONS

GOLDEN = Path(__file__).with_name("golden")
SID = "5b0c1c52-39f5-5a57-9a1e-2f1f1b8f6a10"
OTHER = "0f3e2a8c-5a7c-5d3b-8a0e-6c1f4b7f9e21"
LAVROV = E.MinisterRef(
    id="sergey-lavrov",
    name="Sergey Lavrov",
    title="Minister of Foreign Affairs of the Russian Federation",
)
TITLE = (
    "Comment by Russian Foreign Minister Sergey Lavrov on his meeting with US Secretary of "
    "State John Kerry, Beijing, 8 November 2014"
)

EXPECTED: dict[str, object] = {
    "StatementPublished": E.StatementPublished(
        statement_id=SID,
        slug="comment-on-meeting-with-kerry",
        title=TITLE,
        kind="comment",
        minister=LAVROV,
        location="Beijing",
        occurred_on=dt.date(2014, 11, 8),
        published_at=dt.datetime(2014, 11, 17, 16, 58, tzinfo=dt.timezone(dt.timedelta(hours=3))),
        paragraphs=(
            "A meeting with US Secretary of State John Kerry lasted an hour and a half.",
            "We also discussed the situation in the Middle East.",
        ),
        language="en",
        source_url=None,
    ),
    "StatementRevised": E.StatementRevised(
        statement_id=SID,
        reason="typo in the title",
        title=E.TextChange(old="Coment", new="Comment"),
        location=E.OptionalTextChange(old=None, new="Beijing"),
        occurred_on=E.DateChange(old=dt.date(2014, 11, 7), new=dt.date(2014, 11, 8)),
    ),
    "StatementWithdrawn": E.StatementWithdrawn(statement_id=SID, reason="published twice"),
    "Tagged": E.Tagged(statement_id=SID, topic_slug="middle-east", topic_name="Middle East"),
    "Untagged": E.Untagged(statement_id=SID, topic_slug="middle-east"),
    "LinkedRelated": E.LinkedRelated(statement_id=SID, related_id=OTHER),
    "UnlinkedRelated": E.UnlinkedRelated(statement_id=SID, related_id=OTHER),
    "Viewed": E.Viewed(statement_id=SID),
    "ViewsImported": E.ViewsImported(statement_id=SID, count=1993, source="archive"),
    "ViewsRecorded": E.ViewsRecorded(
        batch_id="cdn-2014-11-17T17",
        views=(
            E.ViewAt(statement_id=SID, at=dt.datetime(2014, 11, 17, 17, 1, 2, tzinfo=dt.UTC)),
            E.ViewAt(statement_id=OTHER, at=dt.datetime(2014, 11, 17, 17, 5, tzinfo=dt.UTC)),
        ),
    ),
    "SlugReserved": E.SlugReserved(slug="comment-on-meeting-with-kerry", statement_id=SID),
    "RelatedLinkRequested": E.RelatedLinkRequested(statement_id=OTHER, requested_by=SID),
    "TopicRenamed": E.TopicRenamed(topic_slug="middle-east", name="Middle East"),
}


def _golden(name: str, version: int) -> dict[str, object]:
    data: dict[str, object] = json.loads(
        (GOLDEN / f"{name}.v{version}.json").read_text(encoding="utf-8")
    )
    return data


def test_every_event_type_and_version_has_a_golden_file() -> None:
    names = {cls.__name__ for cls in E.EVENT_TYPES}
    assert names == set(EXPECTED)
    for name in names:
        for version in range(1, VERSIONS.get(name, 1) + 1):
            assert (GOLDEN / f"{name}.v{version}.json").exists(), f"{name} v{version}"


@pytest.mark.parametrize("path", sorted(GOLDEN.glob("*.json")), ids=lambda p: p.stem)
def test_each_historical_version_decodes_to_the_current_event(path: Path) -> None:
    name, version = path.stem.rsplit(".v", 1)
    decoded = event_registry().decode_data(name, int(version), _golden(name, int(version)))
    assert decoded == EXPECTED[name]


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_the_current_version_encodes_as_its_golden_file(name: str) -> None:
    event = event_registry().new_event(EXPECTED[name])
    assert (event.type, event.schema_version) == (name, VERSIONS.get(name, 1))
    assert json.loads(json.dumps(event.data)) == _golden(name, event.schema_version)


def test_a_gap_in_an_upcaster_chain_stops_startup(monkeypatch: pytest.MonkeyPatch) -> None:
    from projections import registry, upcasters

    monkeypatch.setitem(upcasters.VERSIONS, "StatementPublished", 3)
    monkeypatch.setattr(registry, "VERSIONS", upcasters.VERSIONS)
    with pytest.raises(SerializationError, match="StatementPublished v2→v3"):
        registry.event_registry()
