"""The mutations through schema.execute: commands, payloads, metadata and error codes."""

from __future__ import annotations

import base64
import uuid
from typing import Any

import pytest

from domain.handlers import StatementHandlers
from eventstore.memory import MemoryEventStore
from eventstore.records import RecordedEvent
from graphql_api.errors import BadUserInput
from graphql_api.schema.api_schema import ApiSchema
from graphql_api.schema.inputs import minister_ref, split_paragraphs
from graphql_api.security.auth import Principal
from tests.graphql_api.support import context_of, make_schema

RECORD_VIEW = "mutation($id: ID!) { recordView(input: {statementId: $id}) { position } }"
EDITOR = Principal(token_id="t-1", name="desk-editor", role="editor")

PUBLISH = """
mutation Publish($input: PublishStatementInput!) {
  publishStatement(input: $input) { statementId version position }
}
"""


def publish_input(**changes: Any) -> dict[str, Any]:
    values: dict[str, Any] = {
        "title": "Comment on the talks",
        "body": "First paragraph.\n\nSecond paragraph,\nstill second.\r\n   \r\nThird.",
        "kind": "comment",
        "ministerName": "Sergey Lavrov",
        "location": "Moscow",
        "occurredOn": "2024-03-01",
        "publishedAt": "2024-03-01T12:00:00+03:00",
    }
    values.update(changes)
    return values


@pytest.fixture
def schema() -> ApiSchema:
    return make_schema()


async def run(
    schema: ApiSchema,
    handlers: StatementHandlers,
    query: str,
    variables: dict[str, Any] | None = None,
    principal: Principal | None = EDITOR,
) -> dict[str, Any]:
    result = await schema.execute(
        query, variable_values=variables, context_value=context_of(handlers, principal, "req-42")
    )
    out: dict[str, Any] = {"data": result.data}
    if result.errors:
        out["errors"] = [e.formatted for e in result.errors]
    return out


async def events(store: MemoryEventStore) -> list[RecordedEvent]:
    return [event async for event in store.read_all()]


async def publish(schema: ApiSchema, handlers: StatementHandlers, **changes: Any) -> str:
    out = await run(schema, handlers, PUBLISH, {"input": publish_input(**changes)})
    assert "errors" not in out, out
    return str(out["data"]["publishStatement"]["statementId"])


async def test_publish_writes_the_statement_with_metadata(
    schema: ApiSchema, handlers: StatementHandlers, memory_store: MemoryEventStore
) -> None:
    out = await run(schema, handlers, PUBLISH, {"input": publish_input(topics=["Syria", "Iran"])})
    payload = out["data"]["publishStatement"]
    written = await events(memory_store)
    assert payload["position"] == written[-1].position
    statement_events = [e for e in written if e.stream_id == f"statement-{payload['statementId']}"]
    assert [e.type for e in statement_events] == ["StatementPublished", "Tagged", "Tagged"]
    assert payload["version"] == 3
    published = statement_events[0].data
    assert published["paragraphs"] == [
        "First paragraph.",
        "Second paragraph,\nstill second.",
        "Third.",
    ]
    assert published["minister"] == {
        "id": "sergey-lavrov",
        "name": "Sergey Lavrov",
        "title": "Minister of Foreign Affairs of the Russian Federation",
    }
    for event in written:
        assert event.metadata["actor"] == "desk-editor"
        assert event.metadata["correlation_id"] == "req-42"
        assert event.metadata["causation_id"] is None


async def test_publish_with_a_client_id_is_not_repeated(
    schema: ApiSchema, handlers: StatementHandlers
) -> None:
    statement_id = str(uuid.uuid4())
    first = await run(schema, handlers, PUBLISH, {"input": publish_input(statementId=statement_id)})
    assert first["data"]["publishStatement"]["statementId"] == statement_id
    again = await run(
        schema, handlers, PUBLISH, {"input": publish_input(statementId=statement_id, slug="other")}
    )
    assert again["errors"][0]["extensions"]["code"] == "CONFLICT"


async def test_publish_with_bad_topics_writes_nothing(
    schema: ApiSchema, handlers: StatementHandlers, memory_store: MemoryEventStore
) -> None:
    out = await run(schema, handlers, PUBLISH, {"input": publish_input(topics=["ok", "  "])})
    assert out["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    assert await events(memory_store) == []


@pytest.mark.parametrize(
    ("changes", "code"),
    [
        ({"title": " "}, "BAD_USER_INPUT"),
        ({"kind": "poem"}, "BAD_USER_INPUT"),
        ({"body": "\n\n  \n"}, "BAD_USER_INPUT"),
        ({"ministerName": None}, "BAD_USER_INPUT"),
        ({"ministerName": None, "ministerId": "nobody-known"}, "BAD_USER_INPUT"),
        ({"publishedAt": "2024-03-01T12:00:00"}, "BAD_USER_INPUT"),
        ({"occurredOn": "2024-03-05"}, "BAD_USER_INPUT"),
        ({"slug": "Not A Slug"}, "BAD_USER_INPUT"),
        ({"statementId": "not-a-uuid"}, "BAD_USER_INPUT"),
    ],
)
async def test_publish_rule_violations(
    schema: ApiSchema,
    handlers: StatementHandlers,
    memory_store: MemoryEventStore,
    changes: dict[str, Any],
    code: str,
) -> None:
    out = await run(schema, handlers, PUBLISH, {"input": publish_input(**changes)})
    assert out["data"] is None
    [error] = out["errors"]
    assert error["extensions"]["code"] == code
    assert error["path"] == ["publishStatement"]
    assert await events(memory_store) == []


async def test_slug_taken_is_a_conflict(schema: ApiSchema, handlers: StatementHandlers) -> None:
    await publish(schema, handlers, slug="same-slug")
    out = await run(schema, handlers, PUBLISH, {"input": publish_input(slug="same-slug")})
    assert out["errors"][0]["extensions"]["code"] == "CONFLICT"
    assert "same-slug" in out["errors"][0]["message"]


async def test_the_statement_lifecycle(schema: ApiSchema, handlers: StatementHandlers) -> None:
    first = await publish(schema, handlers, slug="first")
    second = await publish(schema, handlers, slug="second")

    async def mutate(
        name: str, input_type: str, fields: str = "statementId version position", **input: Any
    ) -> dict[str, Any]:
        query = f"mutation M($input: {input_type}!) {{ {name}(input: $input) {{ {fields} }} }}"
        return await run(schema, handlers, query, {"input": input})

    revised = await mutate(
        "reviseStatement",
        "ReviseStatementInput",
        statementId=first,
        reason="typo",
        title="Comment on the talks, corrected",
        body="Only one paragraph now.",
        location="",
        expectedVersion=1,
    )
    assert revised["data"]["reviseStatement"]["version"] == 2
    stale = await mutate(
        "reviseStatement",
        "ReviseStatementInput",
        statementId=first,
        reason="again",
        title="Another title",
        expectedVersion=1,
    )
    assert stale["errors"][0]["extensions"]["code"] == "CONFLICT"
    nothing = await mutate(
        "reviseStatement", "ReviseStatementInput", statementId=first, reason="no change"
    )
    assert nothing["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"

    tagged = await mutate("tagStatement", "TagStatementInput", statementId=first, topics=["Syria"])
    assert tagged["data"]["tagStatement"]["version"] == 3
    again = await mutate("tagStatement", "TagStatementInput", statementId=first, topics=["syria"])
    assert again["data"]["tagStatement"] == {"statementId": first, "version": 3, "position": None}
    untagged = await mutate(
        "untagStatement", "UntagStatementInput", statementId=first, topic="Syria"
    )
    assert untagged["data"]["untagStatement"]["version"] == 4
    absent = await mutate("untagStatement", "UntagStatementInput", statementId=first, topic="Iran")
    assert absent["errors"][0]["extensions"]["code"] == "NOT_FOUND"

    linked = await mutate("linkRelated", "LinkRelatedInput", statementId=first, relatedId=second)
    assert linked["data"]["linkRelated"]["version"] == 5
    self_link = await mutate("linkRelated", "LinkRelatedInput", statementId=first, relatedId=first)
    assert self_link["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    unknown = await mutate(
        "linkRelated", "LinkRelatedInput", statementId=first, relatedId=str(uuid.uuid4())
    )
    assert unknown["errors"][0]["extensions"]["code"] == "NOT_FOUND"
    unlinked = await mutate(
        "unlinkRelated", "UnlinkRelatedInput", statementId=first, relatedId=second
    )
    assert unlinked["data"]["unlinkRelated"]["version"] == 6

    viewed = await mutate(
        "recordView", "RecordViewInput", "statementId position", statementId=first
    )
    assert viewed["data"]["recordView"]["position"] is not None

    withdrawn = await mutate(
        "withdrawStatement", "WithdrawStatementInput", statementId=first, reason="retracted"
    )
    assert withdrawn["data"]["withdrawStatement"]["version"] == 7
    after = await mutate("tagStatement", "TagStatementInput", statementId=first, topics=["Iran"])
    assert after["errors"][0]["extensions"]["code"] == "CONFLICT"
    view_after = await mutate("recordView", "RecordViewInput", "position", statementId=first)
    assert view_after["errors"][0]["extensions"]["code"] == "CONFLICT"


async def test_unknown_statement_is_not_found(
    schema: ApiSchema, handlers: StatementHandlers
) -> None:
    out = await run(schema, handlers, RECORD_VIEW, {"id": str(uuid.uuid4())})
    assert out["errors"][0]["extensions"]["code"] == "NOT_FOUND"


async def test_anonymous_record_view_is_recorded_as_anonymous(
    schema: ApiSchema, handlers: StatementHandlers, memory_store: MemoryEventStore
) -> None:
    statement_id = await publish(schema, handlers)
    out = await run(schema, handlers, RECORD_VIEW, {"id": statement_id}, principal=None)
    assert "errors" not in out
    view = (await events(memory_store))[-1]
    assert view.type == "Viewed"
    assert view.metadata["actor"] == "anonymous"


def _gid(type_name: str, own_id: str) -> str:
    return base64.b64encode(f"{type_name}:{own_id}".encode()).decode()


# name, input type, the input besides statementId (related: a second statement's id)
MUTATIONS: list[tuple[str, str, dict[str, Any]]] = [
    ("reviseStatement", "ReviseStatementInput", {"reason": "typo", "title": "Corrected"}),
    ("withdrawStatement", "WithdrawStatementInput", {"reason": "duplicate"}),
    ("tagStatement", "TagStatementInput", {"topics": ["Iran"]}),
    ("untagStatement", "UntagStatementInput", {"topic": _gid("Topic", "syria")}),
    ("linkRelated", "LinkRelatedInput", {"relatedId": "related"}),
    ("unlinkRelated", "UnlinkRelatedInput", {"relatedId": "related"}),
    ("recordView", "RecordViewInput", {}),
]


@pytest.mark.parametrize(("name", "input_type", "extra"), MUTATIONS, ids=[m[0] for m in MUTATIONS])
async def test_every_mutation_takes_either_id_and_refuses_malformed_ones(
    schema: ApiSchema,
    handlers: StatementHandlers,
    memory_store: MemoryEventStore,
    name: str,
    input_type: str,
    extra: dict[str, Any],
) -> None:
    query = f"mutation M($input: {input_type}!) {{ {name}(input: $input) {{ statementId }} }}"

    async def fresh() -> tuple[str, dict[str, Any]]:
        statement = await publish(schema, handlers, topics=["Syria"], slug=f"s-{uuid.uuid4()}")
        values = dict(extra)
        if "relatedId" in values:
            related = await publish(schema, handlers, slug=f"r-{uuid.uuid4()}")
            values["relatedId"] = _gid("Statement", related)
            if name == "unlinkRelated":
                linked = await run(
                    schema,
                    handlers,
                    "mutation($s: ID!, $r: ID!) { linkRelated(input: {statementId: $s, "
                    "relatedId: $r}) { position } }",
                    {"s": statement, "r": related},
                )
                assert "errors" not in linked, linked
        return statement, values

    for form in (str, str.upper, lambda sid: _gid("Statement", sid)):
        statement, values = await fresh()
        out = await run(
            schema, handlers, query, {"input": {"statementId": form(statement), **values}}
        )
        assert out["data"] == {name: {"statementId": statement}}, out

    statement, values = await fresh()
    for argument in ("statementId", "relatedId") if "relatedId" in extra else ("statementId",):
        for malformed in (
            "whatever",
            "",
            _gid("Statement", "not-a-uuid"),
            _gid("Minister", statement),
            _gid("Statement", f"{statement}@12"),  # a past state of it
        ):
            written = len(await events(memory_store))
            given = {"statementId": statement, **values, argument: malformed}
            out = await run(schema, handlers, query, {"input": given})
            [error] = out["errors"]
            assert error["extensions"]["code"] == "BAD_USER_INPUT", (argument, malformed)
            assert error["message"].startswith(f"{argument}: "), error
            assert len(await events(memory_store)) == written


def test_paragraphs_and_ministers() -> None:
    assert split_paragraphs("a\n\n\nb\r\n\r\nc\n \t\nd") == ("a", "b", "c", "d")
    assert split_paragraphs("  \n\n ") == ()
    assert minister_ref(None, None, None) is None
    known = minister_ref("sergey-ryabkov", None, None)
    assert known is not None and known.name == "Sergey Ryabkov"
    new = minister_ref(None, "  Jane   Doe ", "Deputy Minister")
    assert new is not None and (new.id, new.name, new.title) == (
        "jane-doe",
        "Jane Doe",
        "Deputy Minister",
    )
    with pytest.raises(BadUserInput):
        minister_ref("nobody", None, None)
