"""Every error the API gives for a bad request names what was wrong as clients write it.

A table of bad requests, sent over HTTP to the whole app: each must fail with its code and a
message in the one style ``field: what is wrong``, where ``field`` is an argument, input field
or field of the schema (as introspection spells it), the ``query`` document or its
``operationName``, a mutation's whole ``input``, or the ``Authorization`` header; and no Python
name (``published_at``, ``from_date``) may leak into it. graphql-core's own syntax, validation
and variable-coercion messages keep their standard wording and are not in the table; the view
rate limit's message is checked with a clock of its own (``test_ratelimit.py``).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.graphql_api.app_client import Api, running_app

#: The shape of every message: a name, a colon, then what is wrong, with no closing period.
STYLE = re.compile(r"(?P<field>[A-Za-z][A-Za-z0-9]*): (?P<problem>\S.*)(?<!\.)", re.DOTALL)
#: A Python name: lowercase words joined by underscores.
SNAKE_CASE = re.compile(r"\b[a-z][a-z0-9]*(?:_[a-z0-9]+)+\b")
#: What a message may name besides the schema's own names.
REQUEST_NAMES = frozenset({"query", "operationName", "input", "Authorization"})

INTROSPECTION = """
{ __schema { types {
  fields(includeDeprecated: true) { name args { name } }
  inputFields { name }
} } }"""

PUBLISH = """
mutation($input: PublishStatementInput!) {
  publishStatement(input: $input) { statementId statement { id } }
}"""
REVISE = """
mutation($input: ReviseStatementInput!) { reviseStatement(input: $input) { position } }"""
WITHDRAW = """
mutation($input: WithdrawStatementInput!) { withdrawStatement(input: $input) { position } }"""
TAG = "mutation($input: TagStatementInput!) { tagStatement(input: $input) { position } }"
UNTAG = "mutation($input: UntagStatementInput!) { untagStatement(input: $input) { position } }"
LINK = "mutation($input: LinkRelatedInput!) { linkRelated(input: $input) { position } }"
UNLINK = "mutation($input: UnlinkRelatedInput!) { unlinkRelated(input: $input) { position } }"
VIEW = "mutation($input: RecordViewInput!) { recordView(input: $input) { position } }"
RENAME = "mutation($input: RenameTopicInput!) { renameTopic(input: $input) { position } }"
STATEMENTS = """
query($first: Int, $last: Int, $after: String, $filter: StatementFilter,
      $orderBy: StatementOrder) {
  statements(first: $first, last: $last, after: $after, filter: $filter, orderBy: $orderBy) {
    totalCount
  }
}"""
VIEWS_BY_DAY = """
query($id: ID!, $from: Date, $to: Date) { statement(id: $id) { viewsByDay(from: $from, to: $to) {
  count } } }"""
AS_OF = """
query($id: ID!, $asOf: DateTime, $at: Int) { statement(id: $id, asOf: $asOf, atPosition: $at) {
  title } }"""
VERIFY = """
query($from: Int, $to: Int, $head: String) { verifyLog(from: $from, to: $to, expectHead: $head) {
  ok } }"""
EVENTS = """
query($first: Int, $after: String, $types: [String!]) {
  events(first: $first, after: $after, types: $types) { nodes { position } } }"""


def publish_input(**changes: Any) -> dict[str, Any]:
    values: dict[str, Any] = {
        "title": "Comment on the talks",
        "body": "A paragraph.",
        "kind": "comment",
        "ministerName": "Sergey Lavrov",
        "occurredOn": "2014-11-08",
        "publishedAt": "2014-11-17T16:58:00+03:00",
    }
    values.update(changes)
    return {"input": values}


@dataclass
class Bad:
    """A bad request, the code it must get and the field its message must name."""

    name: str
    query: str
    variables: dict[str, Any] | None
    code: str
    field: str
    role: str | None = "editor"
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class World:
    """What the bad requests refer to."""

    live: str
    other: str
    withdrawn: str


async def make_world(api: Api) -> World:
    async def publish(title: str, **changes: Any) -> str:
        variables = publish_input(title=title, **changes)
        data = await api.data(PUBLISH, variables, role="editor")
        return str(data["publishStatement"]["statementId"])

    live = await publish("Comment on the talks", topics=["NATO"], slug="taken-slug")
    other = await publish("Remarks at the summit")
    withdrawn = await publish("Interview withdrawn later")
    await api.data(
        WITHDRAW, {"input": {"statementId": withdrawn, "reason": "duplicate"}}, role="editor"
    )
    return World(live, other, withdrawn)


def bad_requests(w: World) -> list[Bad]:
    unknown = str(uuid.uuid4())
    many_topics = [f"topic {i}" for i in range(101)]
    deep = "{ statements { nodes { " + "related { " * 9 + "id" + " }" * 9 + " } } }"
    aliases = "{ " + " ".join(f"a{i}: archive {{ count }}" for i in range(31)) + " }"
    tokens = "{ " + "archive { count } " * 700 + "}"
    fields = "{ archive { " + " ".join(["count"] * 201) + " } }"
    costly = (
        "{ statements(first: 100) { nodes { minister { statements(first: 100) { nodes { "
        "related { topics { statements(first: 100) { nodes { id } } } } } } } } } }"
    )

    def publish(name: str, code: str, fld: str, **changes: Any) -> Bad:
        return Bad(name, PUBLISH, publish_input(**changes), code, fld)

    def revise(name: str, code: str, fld: str, **values: Any) -> Bad:
        return Bad(name, REVISE, {"input": {"reason": "fix", **values}}, code, fld)

    return [
        # Publishing: every rule of a statement.
        publish("empty title", "BAD_USER_INPUT", "title", title=" "),
        publish("long title", "BAD_USER_INPUT", "title", title="t" * 501),
        publish("empty body", "BAD_USER_INPUT", "body", body="\n\n"),
        publish("unknown kind", "BAD_USER_INPUT", "kind", kind="poem"),
        publish(
            "naive publishedAt", "BAD_USER_INPUT", "publishedAt", publishedAt="2014-11-17T16:58:00"
        ),
        publish("occurred after", "BAD_USER_INPUT", "occurredOn", occurredOn="2014-11-18"),
        publish("no minister", "BAD_USER_INPUT", "ministerName", ministerName=None),
        publish(
            "unknown minister id",
            "BAD_USER_INPUT",
            "ministerId",
            ministerName=None,
            ministerId="someone-else",
        ),
        publish("minister id no slug", "BAD_USER_INPUT", "ministerId", ministerId="Not A Slug"),
        publish("language", "BAD_USER_INPUT", "language", language="english"),
        publish("source url", "BAD_USER_INPUT", "sourceUrl", sourceUrl="ftp://example.org"),
        publish("long location", "BAD_USER_INPUT", "location", location="l" * 201),
        publish("bad slug", "BAD_USER_INPUT", "slug", slug="Not A Slug"),
        publish("taken slug", "CONFLICT", "slug", slug="taken-slug"),
        publish("bad statement id", "BAD_USER_INPUT", "statementId", statementId="nope"),
        publish("existing statement id", "CONFLICT", "statementId", statementId=w.live),
        publish("blank topic", "BAD_USER_INPUT", "topics", topics=["  "]),
        publish("topic without letters", "BAD_USER_INPUT", "topics", topics=["!!!"]),
        publish("long topic", "BAD_USER_INPUT", "topics", topics=["t" * 101]),
        publish("too many topics", "BAD_USER_INPUT", "topics", topics=many_topics),
        # Revising, withdrawing, tagging, linking, views.
        revise("no reason", "BAD_USER_INPUT", "reason", statementId=w.live, reason=" ", title="x"),
        revise("nothing to revise", "BAD_USER_INPUT", "input", statementId=w.live),
        revise("unknown statement", "NOT_FOUND", "statementId", statementId=unknown, title="x"),
        revise(
            "withdrawn statement", "CONFLICT", "statementId", statementId=w.withdrawn, title="x"
        ),
        revise(
            "stale version",
            "CONFLICT",
            "expectedVersion",
            statementId=w.live,
            title="x",
            expectedVersion=1,
        ),
        Bad(
            "withdraw no reason",
            WITHDRAW,
            {"input": {"statementId": w.live, "reason": ""}},
            "BAD_USER_INPUT",
            "reason",
        ),
        Bad(
            "tag nothing",
            TAG,
            {"input": {"statementId": w.live, "topics": []}},
            "BAD_USER_INPUT",
            "topics",
        ),
        Bad(
            "untag absent",
            UNTAG,
            {"input": {"statementId": w.live, "topic": "syria"}},
            "NOT_FOUND",
            "topic",
        ),
        Bad(
            "untag blank",
            UNTAG,
            {"input": {"statementId": w.live, "topic": " "}},
            "BAD_USER_INPUT",
            "topic",
        ),
        Bad(
            "link self",
            LINK,
            {"input": {"statementId": w.live, "relatedId": w.live}},
            "BAD_USER_INPUT",
            "relatedId",
        ),
        Bad(
            "link unknown",
            LINK,
            {"input": {"statementId": w.live, "relatedId": unknown}},
            "NOT_FOUND",
            "relatedId",
        ),
        Bad(
            "link bad id",
            LINK,
            {"input": {"statementId": w.live, "relatedId": "nope"}},
            "BAD_USER_INPUT",
            "relatedId",
        ),
        Bad(
            "link withdrawn",
            LINK,
            {"input": {"statementId": w.live, "relatedId": w.withdrawn}},
            "CONFLICT",
            "relatedId",
        ),
        Bad(
            "unlink absent",
            UNLINK,
            {"input": {"statementId": w.live, "relatedId": w.other}},
            "NOT_FOUND",
            "relatedId",
        ),
        Bad(
            "view unknown",
            VIEW,
            {"input": {"statementId": unknown}},
            "NOT_FOUND",
            "statementId",
            role=None,
        ),
        # Topics.
        Bad(
            "rename unknown",
            RENAME,
            {"input": {"topic": "syria", "name": "Syria"}},
            "NOT_FOUND",
            "topic",
        ),
        Bad(
            "rename blank",
            RENAME,
            {"input": {"topic": "nato", "name": ""}},
            "BAD_USER_INPUT",
            "name",
        ),
        Bad(
            "rename other slug",
            RENAME,
            {"input": {"topic": "nato", "name": "OTAN"}},
            "BAD_USER_INPUT",
            "name",
        ),
        # Who may do what.
        Bad(
            "anonymous edit",
            REVISE,
            {"input": {"statementId": w.live, "reason": "r"}},
            "UNAUTHENTICATED",
            "reviseStatement",
            role=None,
        ),
        Bad(
            "auditor edit",
            REVISE,
            {"input": {"statementId": w.live, "reason": "r"}},
            "FORBIDDEN",
            "reviseStatement",
            role="auditor",
        ),
        Bad(
            "anonymous audit",
            "{ logHead { position } }",
            None,
            "UNAUTHENTICATED",
            "logHead",
            role=None,
        ),
        Bad("editor audit", "{ logHead { position } }", None, "FORBIDDEN", "logHead"),
        Bad(
            "not bearer",
            "{ archive { count } }",
            None,
            "UNAUTHENTICATED",
            "Authorization",
            role=None,
            headers={"Authorization": "Basic abc"},
        ),
        Bad(
            "unknown token",
            "{ archive { count } }",
            None,
            "UNAUTHENTICATED",
            "Authorization",
            role=None,
            headers={"Authorization": "Bearer st_unknown"},
        ),
        # Query arguments: pages, cursors, dates, orders, ids, time travel, the log.
        Bad(
            "page too large",
            "{ statements(first: 101) { totalCount } }",
            None,
            "BAD_USER_INPUT",
            "first",
        ),
        Bad("page too large (variable)", STATEMENTS, {"first": 500}, "BAD_USER_INPUT", "first"),
        Bad("negative page", STATEMENTS, {"last": -1}, "BAD_USER_INPUT", "last"),
        Bad("first and last", STATEMENTS, {"first": 1, "last": 1}, "BAD_USER_INPUT", "first"),
        Bad("bad cursor", STATEMENTS, {"after": "garbage"}, "BAD_USER_INPUT", "after"),
        Bad(
            "from after to",
            STATEMENTS,
            {"filter": {"from": "2020-02-01", "to": "2020-01-01"}},
            "BAD_USER_INPUT",
            "from",
        ),
        Bad(
            "relevance without search",
            STATEMENTS,
            {"orderBy": "RELEVANCE"},
            "BAD_USER_INPUT",
            "orderBy",
        ),
        Bad(
            "long search",
            STATEMENTS,
            {"filter": {"search": "x" * 1001}},
            "BAD_USER_INPUT",
            "search",
        ),
        Bad(
            "views from after to",
            VIEWS_BY_DAY,
            {"id": w.live, "from": "2020-02-01", "to": "2020-01-01"},
            "BAD_USER_INPUT",
            "from",
        ),
        Bad(
            "topics cursor",
            '{ topics(after: "zzz") { totalCount } }',
            None,
            "BAD_USER_INPUT",
            "after",
        ),
        Bad(
            "id and slug",
            '{ statement(id: "x", slug: "y") { title } }',
            None,
            "BAD_USER_INPUT",
            "statement",
        ),
        Bad("node id", '{ node(id: "garbage") { id } }', None, "BAD_USER_INPUT", "id"),
        Bad(
            "naive asOf",
            AS_OF,
            {"id": w.live, "asOf": "2020-01-01T00:00:00"},
            "BAD_USER_INPUT",
            "asOf",
            role="auditor",
        ),
        Bad(
            "asOf and atPosition",
            AS_OF,
            {"id": w.live, "asOf": "2020-01-01T00:00:00Z", "at": 1},
            "BAD_USER_INPUT",
            "asOf",
            role="auditor",
        ),
        Bad(
            "negative atPosition",
            AS_OF,
            {"id": w.live, "at": -1},
            "BAD_USER_INPUT",
            "atPosition",
            role="auditor",
        ),
        Bad("verify from", VERIFY, {"from": 0}, "BAD_USER_INPUT", "from", role="auditor"),
        Bad("verify to", VERIFY, {"from": 5, "to": 2}, "BAD_USER_INPUT", "to", role="auditor"),
        Bad("verify head", VERIFY, {"head": "x"}, "BAD_USER_INPUT", "expectHead", role="auditor"),
        Bad("events page", EVENTS, {"first": 100_000}, "BAD_USER_INPUT", "first", role="auditor"),
        Bad(
            "events cursor",
            EVENTS,
            {"after": "garbage!"},
            "BAD_USER_INPUT",
            "after",
            role="auditor",
        ),
        Bad(
            "events types",
            EVENTS,
            {"types": [f"T{i}" for i in range(1000)]},
            "BAD_USER_INPUT",
            "types",
            role="auditor",
        ),
        # The document's limits.
        Bad("too deep", deep, None, "QUERY_TOO_DEEP", "query"),
        Bad("too many aliases", aliases, None, "TOO_MANY_ALIASES", "query"),
        Bad("too many tokens", tokens, None, "TOO_MANY_TOKENS", "query"),
        Bad("too many fields", fields, None, "TOO_MANY_FIELDS", "query"),
        Bad("too costly", costly, None, "QUERY_TOO_COSTLY", "query"),
        Bad(
            "several operations",
            "query A { archive { count } } query B { archive { count } }",
            None,
            "BAD_REQUEST",
            "operationName",
        ),
    ]


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[Api]:
    async with running_app(f"sqlite:///{tmp_path / 'app.db'}") as api:
        yield api


async def schema_names(api: Api) -> set[str]:
    """Every field, argument and input field name of the schema, as introspection gives it."""
    data = await api.data(INTROSPECTION)
    names: set[str] = set()
    for type_ in data["__schema"]["types"]:
        for f in type_["fields"] or ():
            names.add(f["name"])
            names.update(a["name"] for a in f["args"])
        names.update(f["name"] for f in type_["inputFields"] or ())
    return names


def problems_with(message: str, known: set[str]) -> list[str]:
    """What is wrong with an error message's form (nothing, for a good one)."""
    found = []
    match = STYLE.fullmatch(message)
    if match is None:
        found.append("not in the form 'field: what is wrong'")
    elif match["field"] not in known:
        found.append(f"{match['field']!r} is no name of the schema or the request")
    leaks = SNAKE_CASE.findall(message)
    if leaks:
        found.append(f"Python names: {leaks}")
    return found


async def test_every_bad_request_names_what_was_wrong_as_clients_write_it(api: Api) -> None:
    known = await schema_names(api) | REQUEST_NAMES
    world = await make_world(api)
    failures: list[str] = []
    for bad in bad_requests(world):
        result = await api.post(bad.query, bad.variables, role=bad.role, headers=bad.headers)
        errors = result.get("errors") or []
        if len(errors) != 1:
            failures.append(f"{bad.name}: expected one error, got {result}")
            continue
        message, code = errors[0]["message"], errors[0]["extensions"]["code"]
        problems = problems_with(message, known)
        if code != bad.code:
            problems.append(f"code {code}, expected {bad.code}")
        if not message.startswith(f"{bad.field}: "):
            problems.append(f"expected it to name {bad.field!r}")
        if problems:
            failures.append(f"{bad.name}: {message!r}: {'; '.join(problems)}")
    assert not failures, "\n".join(failures)


def test_the_form_check_tells_good_messages_from_bad_ones() -> None:
    known = {"publishedAt", "from"}
    assert problems_with("publishedAt: must include a timezone offset", known) == []
    assert problems_with("from: must not be after to", known) == []
    assert problems_with("published_at must be a timezone-aware datetime", known) != []
    assert problems_with("filter: from_date is after to_date", known) == [
        "'filter' is no name of the schema or the request",
        "Python names: ['from_date', 'to_date']",
    ]
    assert problems_with("The document has several operations.", known) != []
