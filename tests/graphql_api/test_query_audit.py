"""The audit fields (auditor role): logHead, verifyLog, events, Statement.history, and what
anonymous and editor requests get (UNAUTHENTICATED, FORBIDDEN)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest

from domain.streams import statement_stream
from tests.graphql_api.query_support import AUDITOR, EDITOR, READ_MODEL_BACKENDS, World, open_world

EVENTS = """
query Events($first: Int, $after: String, $streamId: String, $types: [String!]) {
  events(first: $first, after: $after, streamId: $streamId, types: $types) {
    pageInfo { hasNextPage hasPreviousPage startCursor endCursor }
    edges { cursor node { position streamId version type } }
    nodes { position eventId schemaVersion data metadata actor correlationId causationId
            recordedAt hash }
  }
}
"""


@dataclass
class Log:
    world: World
    first: str
    second: str


@pytest.fixture(params=READ_MODEL_BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def log(database: tuple[str, str]) -> AsyncIterator[Log]:
    async with open_world(database) as w:
        first = await w.publish("First", topics=("Syria",))  # 1 slug, 2 published, 3 tagged
        w.actor, w.correlation_id = "night-editor", "req-2"
        second = await w.publish("Second")  # 4, 5
        await w.link(second, first)  # 6
        await w.tag(first, "Iran", "Trade")  # 7, 8
        await w.view(first, 2)  # 9, 10
        await w.project()
        yield Log(w, first, second)


async def events(w: World, **variables: Any) -> dict[str, Any]:
    data: dict[str, Any] = (await w.query(EVENTS, variables, AUDITOR)).ok()["events"]
    assert [e["node"]["position"] for e in data["edges"]] == [n["position"] for n in data["nodes"]]
    return data


async def test_log_head(log: Log) -> None:
    head = await log.world.store.head()
    assert head is not None
    data = (await log.world.query("{ logHead { position hash recordedAt } }", None, AUDITOR)).ok()
    assert data["logHead"] == {
        "position": 10,
        "hash": head.hash.hex(),
        "recordedAt": head.recorded_at.isoformat(),
    }


async def test_verify_log_sound_ranges_and_an_expected_head(log: Log) -> None:
    w = log.world
    head = await w.store.head()
    assert head is not None
    query = """query($from: Int, $to: Int, $expect: String) {
        verifyLog(from: $from, to: $to, expectHead: $expect) {
            ok checked head { position hash } position problem detail summary } }"""
    whole = (await w.query(query, {}, AUDITOR)).ok()["verifyLog"]
    assert whole == {
        "ok": True,
        "checked": 10,
        "head": {"position": 10, "hash": head.hash.hex()},
        "position": None,
        "problem": None,
        "detail": "",
        "summary": f"chain sound: 10 events checked, head 10:{head.hash.hex()}",
    }
    part = (await w.query(query, {"from": 3, "to": 5}, AUDITOR)).ok()["verifyLog"]
    assert (part["ok"], part["checked"], part["head"]["position"]) == (True, 3, 5)
    trusted = f"10:{head.hash.hex()}"
    assert (await w.query(query, {"expect": trusted}, AUDITOR)).ok()["verifyLog"]["ok"]
    wrong = (await w.query(query, {"expect": "10:" + "ab" * 32}, AUDITOR)).ok()["verifyLog"]
    assert (wrong["ok"], wrong["position"], wrong["problem"]) == (False, 10, "ALTERED")
    further = (await w.query(query, {"expect": "12:" + "ab" * 32}, AUDITOR)).ok()["verifyLog"]
    assert (further["ok"], further["position"], further["problem"]) == (False, 11, "TRUNCATED")


async def test_verify_log_finds_an_altered_event(log: Log) -> None:
    w = log.world
    rows = w.store.rows
    rows[6] = rows[6]._replace(data=rows[6].data.replace("Iran", "Iraq"))  # position 7
    result = (await w.query("{ verifyLog { ok checked position problem } }", None, AUDITOR)).ok()
    assert result["verifyLog"] == {"ok": False, "checked": 6, "position": 7, "problem": "ALTERED"}


@pytest.mark.parametrize("variables", [{"expect": "nonsense"}, {"from": 0}, {"from": 5, "to": 4}])
async def test_verify_log_refuses_bad_arguments(log: Log, variables: dict[str, Any]) -> None:
    query = """query($from: Int, $to: Int, $expect: String) {
        verifyLog(from: $from, to: $to, expectHead: $expect) { ok } }"""
    assert (await log.world.query(query, variables, AUDITOR)).codes == ["BAD_USER_INPUT"]


async def test_events_page_through_the_whole_log(log: Log) -> None:
    w = log.world
    positions: list[int] = []
    after = None
    while True:
        data = await events(w, first=4, after=after)
        positions += [n["position"] for n in data["nodes"]]
        assert not data["pageInfo"]["hasPreviousPage"]
        if not data["pageInfo"]["hasNextPage"]:
            break
        after = data["pageInfo"]["endCursor"]
    assert positions == list(range(1, 11))
    # A bare position works as `after` too.
    assert [n["position"] for n in (await events(w, first=2, after="5"))["nodes"]] == [6, 7]


async def test_events_carry_their_metadata_and_stored_data(log: Log) -> None:
    w = log.world
    stored = {r.position: r async for r in w.store.read_all()}
    nodes = (await events(w, first=10))["nodes"]
    for node in nodes:
        record = stored[node["position"]]
        assert node["eventId"] == str(record.event_id)
        assert node["data"] == record.data and node["metadata"] == record.metadata
        assert node["hash"] == record.hash.hex()
        assert node["recordedAt"] == record.recorded_at.isoformat()
        assert node["schemaVersion"] == record.schema_version
    assert [(n["actor"], n["correlationId"]) for n in nodes[:3]] == [("desk-editor", "req-1")] * 3
    assert {(n["actor"], n["correlationId"]) for n in nodes[3:]} == {("night-editor", "req-2")}
    assert {n["causationId"] for n in nodes} == {None}


async def test_events_of_one_stream_and_of_some_types(log: Log) -> None:
    w = log.world
    stream = statement_stream(log.first)
    one = await events(w, streamId=stream, first=2)
    assert [(e["node"]["version"], e["node"]["type"]) for e in one["edges"]] == [
        (1, "StatementPublished"),
        (2, "Tagged"),
    ]
    assert {e["node"]["streamId"] for e in one["edges"]} == {stream}
    rest = await events(w, streamId=stream, first=5, after=one["pageInfo"]["endCursor"])
    assert [(e["node"]["version"], e["node"]["position"]) for e in rest["edges"]] == [
        (3, 7),
        (4, 8),
    ]
    assert not rest["pageInfo"]["hasNextPage"]
    # A cursor of the whole log pages a stream too (from its position).
    whole = await events(w, first=6)
    tail = await events(w, streamId=stream, after=whole["pageInfo"]["endCursor"])
    assert [e["node"]["position"] for e in tail["edges"]] == [7, 8]
    tagged = await events(w, types=["Tagged", "LinkedRelated"])
    assert [(e["node"]["position"], e["node"]["type"]) for e in tagged["edges"]] == [
        (3, "Tagged"),
        (6, "LinkedRelated"),
        (7, "Tagged"),
        (8, "Tagged"),
    ]
    both = await events(w, streamId=stream, types=["Tagged"], after="3")
    assert [e["node"]["position"] for e in both["edges"]] == [7, 8]
    assert (await events(w, streamId="statement-nothing"))["edges"] == []


@pytest.mark.parametrize(
    "variables", [{"first": 101}, {"first": -1}, {"after": "garbage"}, {"types": ["T"] * 51}]
)
async def test_events_refuse_bad_arguments(log: Log, variables: dict[str, Any]) -> None:
    assert (await log.world.query(EVENTS, variables, AUDITOR)).codes == ["BAD_USER_INPUT"]


async def test_a_statements_history(log: Log) -> None:
    data = (
        await log.world.query(
            """query($id: ID!) { statement(id: $id) {
                history { position version type actor correlationId } } }""",
            {"id": log.first},
            AUDITOR,
        )
    ).ok()
    assert data["statement"]["history"] == [
        {
            "position": 2,
            "version": 1,
            "type": "StatementPublished",
            "actor": "desk-editor",
            "correlationId": "req-1",
        },
        {
            "position": 3,
            "version": 2,
            "type": "Tagged",
            "actor": "desk-editor",
            "correlationId": "req-1",
        },
        {
            "position": 7,
            "version": 3,
            "type": "Tagged",
            "actor": "night-editor",
            "correlationId": "req-2",
        },
        {
            "position": 8,
            "version": 4,
            "type": "Tagged",
            "actor": "night-editor",
            "correlationId": "req-2",
        },
    ]


AUDIT_QUERIES = {
    "logHead": ("{ logHead { position } }", {}),
    "verifyLog": ("{ verifyLog { ok } }", {}),
    "events": ("{ events(first: 1) { nodes { position } } }", {}),
    "history": (
        "query($id: ID!) { statement(id: $id) { title history { type } } }",
        {"id": "FIRST"},
    ),
    "asOf": (
        'query($id: ID!) { statement(id: $id, asOf: "2030-01-01T00:00:00Z") { title } }',
        {"id": "FIRST"},
    ),
    "atPosition": (
        "query($id: ID!) { statement(id: $id, atPosition: 3) { title } }",
        {"id": "FIRST"},
    ),
}
WHO = {
    "anonymous": (None, "UNAUTHENTICATED"),
    "editor": (EDITOR, "FORBIDDEN"),
    "auditor": (AUDITOR, None),
}


@pytest.mark.parametrize("field", list(AUDIT_QUERIES))
@pytest.mark.parametrize("who", list(WHO))
async def test_audit_fields_need_the_auditor_role(log: Log, field: str, who: str) -> None:
    query, variables = AUDIT_QUERIES[field]
    variables = {k: log.first if v == "FIRST" else v for k, v in variables.items()}
    principal, code = WHO[who]
    result = await log.world.query(query, variables, principal)
    if code is None:
        assert result.errors == []
        return
    assert result.codes == [code]
    if field == "history":
        # Only the audit field fails: the rest of the statement is there.
        assert result.data == {"statement": {"title": "First", "history": None}}
        assert result.errors[0]["path"] == ["statement", "history"]
