"""Negative cases that schemathesis does not make: damaged documents, unknown fields, variables
of the wrong type, missing or extra variables, malformed request bodies.

Schemathesis' GraphQL negative mode (hypothesis-graphql ``Mode.NEGATIVE``) writes each violation
as an inline literal of a well-formed document: it never sends variables, never breaks the
syntax and never asks for a field the schema lacks. This generator starts from valid documents
that use variables and damages them at random (the seed is printed; ``STATEMENTS_NEG_SEED``
replays it). Against a live production server every answer must be free of 5xx, of
``INTERNAL_SERVER_ERROR`` and of internals, and every error must carry ``extensions.code``.
"""

from __future__ import annotations

import json
import os
import random
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from tests.reliability.live import LiveServer, cli
from tests.reliability.load import publish_input

CASES = int(os.environ.get("STATEMENTS_NEG_CASES", "1200"))

#: Valid operations with variables: (document, variables of a valid call).
VALID: list[tuple[str, dict[str, Any]]] = [
    (
        "query($first: Int, $after: String, $filter: StatementFilter) {"
        " statements(first: $first, after: $after, filter: $filter) {"
        " edges { cursor node { id title viewCount topics { slug } } }"
        " pageInfo { hasNextPage } } }",
        {"first": 5, "after": None, "filter": {"search": "minister"}},
    ),
    (
        "query($id: ID, $slug: String) { statement(id: $id, slug: $slug) { id title body } }",
        {"id": str(uuid.UUID(int=1)), "slug": None},
    ),
    ("query($id: ID!) { node(id: $id) { id ... on Statement { title } } }", {"id": "U3RhdDox"}),
    ("query($slug: String!) { topic(slug: $slug) { name } }", {"slug": "diplomacy"}),
    ("query($n: Int!) { mostViewed(first: $n) { views statement { id } } }", {"n": 3}),
    (
        "mutation($input: PublishStatementInput!) {"
        " publishStatement(input: $input) { statementId version position } }",
        {"input": publish_input("Negative case")},
    ),
    (
        "mutation($id: ID!) { recordView(input: {statementId: $id}) { position viewCount } }",
        {"id": str(uuid.UUID(int=2))},
    ),
    (
        "query($from: Int, $to: Int) { verifyLog(from: $from, to: $to) { ok } }",
        {"from": 1, "to": 5},
    ),
]

ODD_VALUES: list[Any] = [
    None,
    True,
    0,
    -1,
    2**31,
    2**63,
    1.5,
    float("1e308"),
    "",
    "x" * 5000,
    "\u0000\ud7ff\U0001f600",
    "'; DROP TABLE events; --",
    [],
    [1, "a", None],
    {},
    {"nested": {"deeper": [1, 2, 3]}},
    "2024-13-45",
    "not-a-uuid",
]
NAMES = ["bogus", "__typename2", "password", "events", "id_", "Title", "viewcount", "_"]
PUNCTUATION = [*"{}()[]:$!@.,=\"'#&|\\\n", "...", "on", "fragment", "query", "\u00e9"]


@dataclass(frozen=True)
class Case:
    kind: str
    body: bytes
    content_type: str = "application/json"
    must_fail: bool = False  # an answer without errors would be a bug


def _json(document: str, variables: Any, **extra: Any) -> bytes:
    return json.dumps({"query": document, "variables": variables, **extra}).encode()


def wrong_variable_type(rng: random.Random, document: str, variables: dict[str, Any]) -> Case:
    name = rng.choice(list(variables))
    value: Any = rng.choice(ODD_VALUES)
    if isinstance(variables[name], dict) and rng.random() < 0.5:
        inner = dict(variables[name])
        inner[rng.choice([*inner, *NAMES])] = value  # a wrong field value, or an unknown field
        value = inner
    return Case("wrong_variable_type", _json(document, {**variables, name: value}))


def missing_variable(rng: random.Random, document: str, variables: dict[str, Any]) -> Case:
    name = rng.choice(list(variables))
    declared = document.split(f"${name}:", 1)[1].replace(")", ",").split(",", 1)[0].strip()
    rest = {k: v for k, v in variables.items() if k != name}
    return Case("missing_variable", _json(document, rest), must_fail=declared.endswith("!"))


def extra_variable(rng: random.Random, document: str, variables: dict[str, Any]) -> Case:
    return Case(
        "extra_variable",
        _json(document, {**variables, rng.choice(NAMES): rng.choice(ODD_VALUES)}),
    )


def unknown_field(rng: random.Random, document: str, variables: dict[str, Any]) -> Case:
    spots = [i for i, c in enumerate(document) if c == "{"][1:] or [document.index("{")]
    spot = rng.choice(spots) + 1
    damaged = f"{document[:spot]} {rng.choice(NAMES)}{rng.randint(0, 99)} {document[spot:]}"
    return Case("unknown_field", _json(damaged, variables), must_fail=True)


def unknown_argument(rng: random.Random, document: str, variables: dict[str, Any]) -> Case:
    spot = document.index("(", document.index("{")) + 1
    argument = f"{rng.choice(NAMES)}: {json.dumps(rng.choice(['a', 1, True]))}, "
    damaged = document[:spot] + argument + document[spot:]
    return Case("unknown_argument", _json(damaged, variables), must_fail=True)


def damaged_syntax(rng: random.Random, document: str, variables: dict[str, Any]) -> Case:
    chars = list(document)
    for _ in range(rng.randint(1, 4)):
        if not chars:
            chars = ["{"]
        spot = rng.randrange(len(chars))
        action = rng.random()
        if action < 0.4:
            del chars[spot]
        elif action < 0.8:
            chars.insert(spot, rng.choice(PUNCTUATION))
        else:
            chars = chars[:spot]  # cut short
    return Case("damaged_syntax", _json("".join(chars), variables))


def bad_request_shape(rng: random.Random, document: str, variables: dict[str, Any]) -> Case:
    choices: list[Callable[[], Case]] = [
        lambda: Case("bad_shape", _json(document, rng.choice([[], "x", 1, True]))),
        lambda: Case("bad_shape", json.dumps({"query": rng.choice(ODD_VALUES)}).encode()),
        lambda: Case("bad_shape", _json(document, variables, operationName="Nope")),
        lambda: Case("bad_shape", json.dumps([{"query": document}]).encode()),
        lambda: Case("bad_shape", _json(document, variables)[: rng.randint(0, 40)]),
        lambda: Case("bad_shape", bytes(rng.randrange(256) for _ in range(rng.randint(1, 64)))),
        lambda: Case("bad_shape", document.encode(), content_type="application/graphql"),
        lambda: Case("bad_shape", _json(document, variables), content_type="text/plain"),
    ]
    return rng.choice(choices)()


MUTATORS = [
    wrong_variable_type,
    missing_variable,
    extra_variable,
    unknown_field,
    unknown_argument,
    damaged_syntax,
    bad_request_shape,
]


def generate(seed: int, count: int) -> list[Case]:
    rng = random.Random(seed)
    cases = []
    for _ in range(count):
        document, variables = rng.choice(VALID)
        cases.append(rng.choice(MUTATORS)(rng, document, variables))
    return cases


def problems(case: Case, response: httpx.Response) -> list[str]:
    """Why this answer is wrong, if it is."""
    found: list[str] = []
    if response.status_code >= 500:
        found.append(f"HTTP {response.status_code}")
    try:
        body = response.json()
    except ValueError:
        return [*found, f"not JSON: {response.text[:200]!r}"]
    errors = body.get("errors") if isinstance(body, dict) else None
    for error in errors or []:
        code = (error.get("extensions") or {}).get("code")
        if code is None:
            found.append(f"error without a code: {error}")
        elif code == "INTERNAL_SERVER_ERROR":
            found.append(f"internal error: {error}")
        text = str(error)
        if "Traceback" in text or "sqlalchemy" in text.lower() or "asyncpg" in text:
            found.append(f"internals leaked: {error}")
    if case.must_fail and not errors:
        found.append("executed although invalid")
    return found


def test_negative_documents_are_refused_cleanly(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'neg.db'}"
    cli("demo", "--db", db, "--statements", "10", "--views", "50")
    token = cli("token", "create", "--db", db, "--role", "editor", "--name", "neg").stdout.strip()
    seed = int(os.environ.get("STATEMENTS_NEG_SEED", str(uuid.uuid4().int % 100_000)))
    cases = generate(seed, CASES)
    server = LiveServer(db, tmp_path / "server.log", env={"STATEMENTS_PRODUCTION": "1"})
    failures: list[tuple[Case, list[str]]] = []
    statuses: Counter[int] = Counter()
    codes: Counter[str] = Counter()
    kinds = Counter(case.kind for case in cases)
    with server.running(), httpx.Client(base_url=server.url, timeout=30) as client:
        server.wait_caught_up()
        for case in cases:
            response = client.post(
                "/graphql",
                content=case.body,
                headers={"content-type": case.content_type, "authorization": f"Bearer {token}"},
            )
            statuses[response.status_code] += 1
            found = problems(case, response)
            if found:
                failures.append((case, found))
            elif isinstance(body := response.json(), dict):
                codes.update(
                    str((e.get("extensions") or {}).get("code")) for e in body.get("errors") or []
                )
        server_log = server.log()
    summary = {
        "seed": seed,
        "cases": len(cases),
        "kinds": kinds,
        "statuses": statuses,
        "codes": codes,
    }
    print(json.dumps(summary))
    assert not failures, (failures[:5], summary)
    assert len(cases) >= 1000
    assert "Traceback" not in server_log and "unexpected error" not in server_log
