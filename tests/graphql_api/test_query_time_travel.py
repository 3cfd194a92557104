"""Time travel: ``statement(id|slug, asOf|atPosition)`` replays the log, checked against a
history computed by hand (publish, tag, revise, link, views, retag, withdraw, at known
positions and times)."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.graphql_api.query_support import (
    AUDITOR,
    EDITOR,
    READ_MODEL_BACKENDS,
    Result,
    World,
    install_clock,
    open_world,
)

DAY = datetime(2024, 3, 1, tzinfo=UTC)
THEN = """
query Then($id: ID, $slug: String, $asOf: DateTime, $atPosition: Int) {
  statement(id: $id, slug: $slug, asOf: $asOf, atPosition: $atPosition) {
    statementId title version withdrawn viewCount
    topics { slug name }
    related { statementId }
  }
}
"""


@dataclass(frozen=True)
class Moment:
    position: int  # the log's head right after the step
    time: datetime  # when the step was recorded
    expected: dict[str, Any] | None  # the statement as it stood then


@dataclass
class History:
    world: World
    statement: str
    related: str
    before: Moment  # the related statement exists, ours does not yet
    moments: list[Moment]


@pytest.fixture(params=READ_MODEL_BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def as_then(
    title: str, version: int, topics: list[str], related: list[str], views: int, withdrawn: bool
) -> dict[str, Any]:
    return {
        "title": title,
        "version": version,
        "withdrawn": withdrawn,
        "viewCount": views,
        "topics": [{"slug": t.lower(), "name": t} for t in topics],
        "related": [{"statementId": r} for r in related],
    }


@pytest.fixture
async def history(
    database: tuple[str, str], monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[History]:
    clock = install_clock(monkeypatch)
    async with open_world(database) as w:

        async def at(hour: int) -> tuple[int, datetime]:
            return await w.store.head_position(), DAY + timedelta(hours=hour)

        clock.now = DAY + timedelta(hours=8)
        other = await w.publish("The related one")  # positions 1 (slug) and 2
        before = Moment(*(await at(8)), None)
        assert before.position == 2

        clock.now = DAY + timedelta(hours=9)
        sid = await w.publish("Original title")  # 3 (slug), 4
        moments = [Moment(*(await at(9)), as_then("Original title", 1, [], [], 0, False))]
        clock.now = DAY + timedelta(hours=10)
        await w.tag(sid, "Syria")  # 5
        moments.append(
            Moment(*(await at(10)), as_then("Original title", 2, ["Syria"], [], 0, False))
        )
        clock.now = DAY + timedelta(hours=11)
        await w.revise(sid, title="Corrected title")  # 6
        moments.append(
            Moment(*(await at(11)), as_then("Corrected title", 3, ["Syria"], [], 0, False))
        )
        await w.project()  # the read models stop here: everything below comes from the log
        clock.now = DAY + timedelta(hours=12)
        await w.link(sid, other)  # 7
        moments.append(
            Moment(*(await at(12)), as_then("Corrected title", 4, ["Syria"], [other], 0, False))
        )
        clock.now = DAY + timedelta(hours=13)
        await w.view(sid, 2)  # 8, 9 (the view stream; the statement's version stays)
        moments.append(
            Moment(*(await at(13)), as_then("Corrected title", 4, ["Syria"], [other], 2, False))
        )
        clock.now = DAY + timedelta(hours=14)
        await w.untag(sid, "Syria")  # 10
        await w.tag(sid, "Iran")  # 11
        moments.append(
            Moment(*(await at(14)), as_then("Corrected title", 6, ["Iran"], [other], 2, False))
        )
        clock.now = DAY + timedelta(hours=15)
        await w.withdraw(sid)  # 12
        moments.append(
            Moment(*(await at(15)), as_then("Corrected title", 7, ["Iran"], [other], 2, True))
        )
        assert [m.position for m in moments] == [4, 5, 6, 7, 9, 11, 12]
        yield History(w, sid, other, before, moments)


async def then(h: History, principal: Any = AUDITOR, **variables: Any) -> Result:
    return await h.world.query(THEN, variables, principal)


def shown(data: Any) -> dict[str, Any] | None:
    statement = data["statement"]
    if statement is None:
        return None
    return {k: v for k, v in statement.items() if k != "statementId"}


async def test_at_each_position_it_is_what_it_was_then(history: History) -> None:
    h = history
    assert (await then(h, id=h.statement, atPosition=h.before.position)).ok() == {"statement": None}
    assert (await then(h, id=h.statement, atPosition=0)).ok() == {"statement": None}
    for moment in h.moments:
        data = (await then(h, id=h.statement, atPosition=moment.position)).ok()
        assert shown(data) == moment.expected, moment
        assert data["statement"]["statementId"] == h.statement


async def test_as_of_each_moment_it_is_what_it_was_then(history: History) -> None:
    h = history
    before = (h.moments[0].time - timedelta(seconds=1)).isoformat()
    assert (await then(h, id=h.statement, asOf=before)).ok() == {"statement": None}
    for moment in h.moments:
        exactly = (await then(h, id=h.statement, asOf=moment.time.isoformat())).ok()
        assert shown(exactly) == moment.expected, moment
        # Until just before the next step, and in another offset, it stays so.
        later = (moment.time + timedelta(minutes=59)).astimezone(UTC).isoformat()
        assert shown((await then(h, id=h.statement, asOf=later)).ok()) == moment.expected
    moscow = "2024-03-01T14:30:00+03:00"  # 11:30 UTC: after the revision, before the link
    assert shown((await then(h, id=h.statement, asOf=moscow)).ok()) == h.moments[2].expected


async def test_by_slug_the_slug_as_reserved_then(history: History) -> None:
    h = history
    for moment in (h.moments[0], h.moments[-1]):
        data = (await then(h, slug="original-title", atPosition=moment.position)).ok()
        assert shown(data) == moment.expected
    before = (await then(h, slug="original-title", atPosition=h.before.position)).ok()
    assert before == {"statement": None}


async def test_the_answer_comes_from_the_log_not_the_read_models(history: History) -> None:
    h = history
    live = (
        await h.world.query(
            "query($id: ID!) { statement(id: $id) { title version withdrawn viewCount } }",
            {"id": h.statement},
        )
    ).ok()
    # The read models were caught up at the revision only.
    assert live["statement"] == {
        "title": "Corrected title",
        "version": 3,
        "withdrawn": False,
        "viewCount": 0,
    }
    now = (await then(h, id=h.statement, atPosition=10_000)).ok()
    assert shown(now) == h.moments[-1].expected


async def test_views_by_day_and_history_as_of_then(history: History) -> None:
    h = history
    query = """query($id: ID!, $at: Int!) { statement(id: $id, atPosition: $at) {
        viewsByDay { day count }
        history { position version type actor correlationId data } } }"""
    data = (await h.world.query(query, {"id": h.statement, "at": 9}, AUDITOR)).ok()["statement"]
    assert data["viewsByDay"] == [{"day": "2024-03-01", "count": 2}]
    assert [(e["position"], e["version"], e["type"]) for e in data["history"]] == [
        (4, 1, "StatementPublished"),
        (5, 2, "Tagged"),
        (6, 3, "StatementRevised"),
        (7, 4, "LinkedRelated"),
    ]
    assert {(e["actor"], e["correlationId"]) for e in data["history"]} == {("desk-editor", "req-1")}
    assert data["history"][1]["data"] == {
        "statement_id": h.statement,
        "topic_slug": "syria",
        "topic_name": "Syria",
    }


@pytest.mark.parametrize(
    "variables",
    [
        {"asOf": "2024-03-01T12:00:00"},  # no offset: ambiguous
        {"asOf": "2024-03-01T12:00:00Z", "atPosition": 5},
        {"atPosition": -1},
    ],
)
async def test_meaningless_moments_are_invalid_input(
    history: History, variables: dict[str, Any]
) -> None:
    result = await then(history, id=history.statement, **variables)
    assert result.codes == ["BAD_USER_INPUT"]


async def test_time_travel_needs_the_auditor_role(history: History) -> None:
    h = history
    anonymous = await then(h, principal=None, id=h.statement, atPosition=5)
    assert anonymous.codes == ["UNAUTHENTICATED"] and anonymous.data == {"statement": None}
    editor = await then(h, principal=EDITOR, id=h.statement, atPosition=5)
    assert editor.codes == ["FORBIDDEN"]


def gid(own_id: str) -> str:
    return base64.b64encode(f"Statement:{own_id}".encode()).decode()


async def test_a_statement_then_has_an_id_of_its_own_that_node_takes_back(
    history: History,
) -> None:
    h = history
    query = """query($id: ID!, $at: Int, $asOf: DateTime) {
        statement(id: $id, atPosition: $at, asOf: $asOf) { id statementId title version } }"""
    now = (await h.world.query(query, {"id": h.statement}, AUDITOR)).ok()["statement"]
    at = (await h.world.query(query, {"id": h.statement, "at": 4}, AUDITOR)).ok()["statement"]
    moment = "2024-03-01T12:30:00+03:00"  # 09:30 UTC
    as_of = (await h.world.query(query, {"id": h.statement, "asOf": moment}, AUDITOR)).ok()
    # Today's statement and each past state are different objects, each with its own id.
    assert now["id"] == gid(h.statement)
    assert at["id"] == gid(f"{h.statement}@4")
    assert as_of["statement"]["id"] == gid(f"{h.statement}@2024-03-01T09:30:00+00:00")
    assert at["statementId"] == now["statementId"] == h.statement
    assert (at["version"], now["version"]) == (1, 3)

    node = """query($id: ID!) { node(id: $id) { id ... on Statement { title version } } }"""
    for state in (at, as_of["statement"]):
        back = (await h.world.query(node, {"id": state["id"]}, AUDITOR)).ok()["node"]
        assert back == {"id": state["id"], "title": state["title"], "version": state["version"]}
        again = (await h.world.query(query, {"id": state["id"]}, AUDITOR)).ok()["statement"]
        assert again == state
    # The auditor rule holds for such an id too; and it names its moment already.
    anonymous = await h.world.query(node, {"id": at["id"]})
    assert anonymous.codes == ["UNAUTHENTICATED"]
    both = await h.world.query(query, {"id": at["id"], "at": 5}, AUDITOR)
    assert both.codes == ["BAD_USER_INPUT"]


async def test_a_statement_then_links_to_todays_objects(history: History) -> None:
    h = history
    query = """query($id: ID!, $at: Int!) { then: statement(id: $id, atPosition: $at) {
          ministerName ministerTitle minister { id name title statementCount }
          topics { id slug name statementCount } }
        now: topic(slug: "syria") { id name statementCount }
        minister(id: "sergey-lavrov") { id name title statementCount } }"""
    data = (await h.world.query(query, {"id": h.statement, "at": 5}, AUDITOR)).ok()
    # Its topic then (Syria) and its minister are today's objects: the same as anywhere else.
    assert data["then"]["topics"] == [{"slug": "syria", **data["now"]}]
    assert data["then"]["minister"] == data["minister"]
    assert data["then"]["ministerName"] == "Sergey Lavrov"
