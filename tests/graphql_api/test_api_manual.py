"""docs/API.md is a tested manual: every GraphQL example in it runs against the demo data.

A server (``graphql_api.app`` under uvicorn, as ``statements serve`` runs it) is started on a
database loaded by ``statements demo`` with 300 statements and fewer views: the demo draws
its statements one after another from the seed, so these are the first 300 of the default's
1,000 (ids, titles, dates, topics), and the ids the examples use exist in both. The examples
run in the order of the manual (the mutations change a statement the first one publishes),
each with the token its ``# role:`` line names: queries and mutations over HTTP,
subscriptions over graphql-transport-ws and over SSE. An example fails when it errors or a
root field returns nothing (null, an empty list, a connection without nodes).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets
from graphql import (
    FieldNode,
    InlineFragmentNode,
    OperationDefinitionNode,
    SelectionSetNode,
    parse,
)

from eventstore.urls import create_engine
from graphql_api.errors import CODES
from graphql_api.security.auth import ROLES, create_token, setup_tokens
from tests.conftest import run_pg
from tests.graphql_api.js_support import JS_DIR, node_with_packages
from tests.graphql_api.live_support import ROOT, TRANSPORT_WS, Server, WsClient, live_server

MANUAL = ROOT / "docs" / "API.md"
#: The first 300 of the default demo's statements, and fewer views: quick to load.
DEMO_ARGS = ("--statements", "300", "--views", "1000", "--seed", "1")
#: A statement of the demo data the examples use.
DEMO_STATEMENT = "cd613e30-d8f1-4adf-91b7-584a2265b1f5"

_FENCE = re.compile(r"^```([\w-]*)\n(.*?)^```\n", re.MULTILINE | re.DOTALL)
_ROLE = re.compile(r"\A#\s*role:\s*(\S+)\s*$", re.MULTILINE)

#: What the JavaScript examples assume of a browser, for Node 20 (which has no WebSocket).
BROWSER_GLOBALS = 'import WebSocket from "ws";\nglobalThis.WebSocket ??= WebSocket;\n'
#: The addresses the JavaScript examples connect to, all made the demo server's.
JS_ADDRESSES = (
    "ws://localhost:8000/graphql",
    "wss://api1.example/graphql",
    "wss://api2.example/graphql",
)

RECORD_VIEW = "mutation($id: ID!) { recordView(input: {statementId: $id}) { position } }"
PUBLISH = """mutation($input: PublishStatementInput!) {
  publishStatement(input: $input) { position } }"""


@dataclass(frozen=True)
class Example:
    """A GraphQL example of the manual, with its variables and the role it needs."""

    line: int
    document: str
    variables: dict[str, Any] | None
    role: str | None
    operation: str
    root_fields: tuple[str, ...]

    def __str__(self) -> str:
        return f"docs/API.md:{self.line} ({self.operation} {', '.join(self.root_fields)})"


def _root_fields(selections: SelectionSetNode) -> Iterator[str]:
    for selection in selections.selections:
        if isinstance(selection, FieldNode):
            yield selection.name.value
        elif isinstance(selection, InlineFragmentNode):
            yield from _root_fields(selection.selection_set)


def manual_examples(text: str) -> list[Example]:
    """Every ```graphql block, with the ```json block right after it as its variables."""
    blocks = list(_FENCE.finditer(text))
    examples: list[Example] = []
    for index, block in enumerate(blocks):
        if block.group(1) != "graphql":
            continue
        document = block.group(2)
        variables = None
        following = blocks[index + 1] if index + 1 < len(blocks) else None
        if (
            following is not None
            and following.group(1) == "json"
            and not text[block.end() : following.start()].strip()
        ):
            variables = json.loads(following.group(2))
        role = _ROLE.search(document)
        operations = [
            definition
            for definition in parse(document).definitions
            if isinstance(definition, OperationDefinitionNode)
        ]
        assert len(operations) == 1, f"docs/API.md:{text.count(chr(10), 0, block.start()) + 1}"
        examples.append(
            Example(
                line=text.count("\n", 0, block.start()) + 1,
                document=document,
                variables=variables,
                role=role.group(1) if role else None,
                operation=operations[0].operation.value,
                root_fields=tuple(_root_fields(operations[0].selection_set)),
            )
        )
    return examples


def js_examples(text: str) -> list[tuple[int, str]]:
    """Every ```js block and its line."""
    return [
        (text.count("\n", 0, block.start()) + 1, block.group(2))
        for block in _FENCE.finditer(text)
        if block.group(1) == "js"
    ]


def error_table_codes(text: str) -> set[str]:
    """The codes in the first column of the table under "## Errors"."""
    section = re.split(r"^## Errors\n", text, maxsplit=1, flags=re.MULTILINE)[1]
    section = re.split(r"^## ", section, maxsplit=1, flags=re.MULTILINE)[0]
    codes: set[str] = set()
    for line in section.splitlines():
        if line.startswith("| `"):
            codes.update(re.findall(r"`([A-Z_]+)`", line.split("|")[1]))
    return codes


def nothing_in(value: Any) -> str | None:
    """Why a root field's value counts as returning nothing, or None if it has something."""
    if value is None:
        return "null"
    if isinstance(value, list) and not value:
        return "an empty list"
    if isinstance(value, dict):
        for key in ("edges", "nodes"):
            if key in value and not value[key]:
                return f"no {key}"
    return None


def problems_of(result: Mapping[str, Any]) -> list[str]:
    if result.get("errors"):
        return [f"errors: {result['errors']}"]
    data = result.get("data")
    if not isinstance(data, dict) or not data:
        return [f"no data: {result}"]
    return [f"{key} returned {why}" for key, value in data.items() if (why := nothing_in(value))]


# --- the server --------------------------------------------------------------------------


@dataclass
class Demo:
    server: Server
    tokens: Mapping[str, str]


def _tokens(url: str, schema: str | None) -> dict[str, str]:
    async def make() -> dict[str, str]:
        engine = create_engine(url, schema=schema)
        try:
            await setup_tokens(engine)
            return {role: (await create_token(engine, role, f"manual-{role}"))[0] for role in ROLES}
        finally:
            await engine.dispose()

    return asyncio.run(make())


@contextlib.contextmanager
def demo_server(url: str, log_dir: Path, schema: str | None = None) -> Iterator[Demo]:
    env = {"STATEMENTS_DATABASE_SCHEMA": schema} if schema else {}
    # As a reader loads it: the command line, in a process of its own.
    loaded = subprocess.run(
        [sys.executable, "-m", "graphql_api.cli", "demo", "--db", url, *DEMO_ARGS],
        cwd=ROOT,
        env={**_environ(), **env},
        check=False,
        capture_output=True,
        text=True,
    )
    assert loaded.returncode == 0, f"statements demo failed: {loaded.stderr[-3000:]}"
    tokens = _tokens(url, schema)
    with live_server(
        url, log_dir, schema=schema, factory="graphql_api.app:app_from_env", ready_path="/readyz"
    ) as server:
        yield Demo(server, tokens)


def _environ() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT)}


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
)
def demo(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Demo]:
    folder = tmp_path_factory.mktemp("manual")
    if request.param == "sqlite":
        with demo_server(f"sqlite:///{folder / 'demo.db'}", folder) as running:
            yield running
        return
    database: str = request.getfixturevalue("pg_database")
    schema = f"manual_{uuid.uuid4().hex[:12]}"
    run_pg(database, f'CREATE SCHEMA "{schema}"')
    with demo_server(database, folder, schema) as running:
        yield running


# --- running examples ----------------------------------------------------------------------


class Runner:
    """Runs examples against the demo server as clients do."""

    def __init__(self, demo: Demo, http: httpx.AsyncClient) -> None:
        self.demo = demo
        self.http = http
        self.published = 0

    def headers(self, role: str | None) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.demo.tokens[role]}"} if role else {}

    async def post(
        self, document: str, variables: Mapping[str, Any] | None, role: str | None
    ) -> dict[str, Any]:
        response = await self.http.post(
            self.demo.server.url + "/graphql",
            json={"query": document, "variables": dict(variables or {})},
            headers=self.headers(role),
        )
        body: dict[str, Any] = response.json()
        return body

    async def trigger(self) -> None:
        """Something for every subscription to report: a view (under the ingest token's large
        limit, so that triggers never meet the anonymous one) and a new statement."""
        self.published += 1
        for document, variables, role in (
            (RECORD_VIEW, {"id": DEMO_STATEMENT}, "ingest"),
            (
                PUBLISH,
                {
                    "input": {
                        "title": f"Comment on the manual's subscriptions, part {self.published}",
                        "body": "A statement published to wake the subscriptions.",
                        "kind": "comment",
                        "occurredOn": "2020-12-31",
                        "publishedAt": "2020-12-31T12:00:00+03:00",
                        "ministerId": "sergey-lavrov",
                    }
                },
                "editor",
            ),
        ):
            result = await self.post(document, variables, role)
            assert "errors" not in result, result

    async def first_event(self, receive: Awaitable[dict[str, Any]]) -> dict[str, Any]:
        """The first result ``receive`` gets, triggering events until it comes."""
        task = asyncio.ensure_future(receive)
        try:
            for _ in range(20):
                done, _pending = await asyncio.wait({task}, timeout=0.5)
                if done:
                    return task.result()
                await self.trigger()
            raise AssertionError("no event within 10 s of triggers")
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    async def over_websocket(self, example: Example) -> dict[str, Any]:
        url = self.demo.server.ws_url
        async with websockets.connect(url, subprotocols=[TRANSPORT_WS]) as ws:  # type: ignore[list-item]
            client = WsClient(ws)
            token = self.demo.tokens[example.role] if example.role else None
            ack = await client.init({"token": token} if token else {})
            assert ack["type"] == "connection_ack", ack

            async def receive() -> dict[str, Any]:
                message = await client.recv(timeout=30)
                assert message["type"] == "next", message
                payload: dict[str, Any] = message["payload"]
                return payload

            await client.subscribe("1", example.document, example.variables)
            return await self.first_event(receive())

    async def over_sse(self, example: Example) -> dict[str, Any]:
        async def receive() -> dict[str, Any]:
            async with self.http.stream(
                "POST",
                self.demo.server.url + "/graphql/stream",
                json={"query": example.document, "variables": example.variables or {}},
                headers={"Accept": "text/event-stream", **self.headers(example.role)},
            ) as response:
                assert response.status_code == 200, await response.aread()
                event = None
                async for line in response.aiter_lines():
                    if line.startswith("event: "):
                        event = line.removeprefix("event: ")
                    elif line.startswith("data: "):
                        assert event == "next", line
                        result: dict[str, Any] = json.loads(line.removeprefix("data: "))
                        return result
            raise AssertionError("the stream ended without an event")

        return await self.first_event(receive())


@contextlib.asynccontextmanager
async def runner(demo: Demo) -> AsyncIterator[Runner]:
    async with httpx.AsyncClient(timeout=30) as http:
        yield Runner(demo, http)


MANUAL_TEXT = MANUAL.read_text(encoding="utf-8")
EXAMPLES = manual_examples(MANUAL_TEXT)


async def test_every_example_runs_and_returns_data(demo: Demo) -> None:
    failures: list[str] = []
    async with runner(demo) as run:
        for example in EXAMPLES:
            assert example.role is None or example.role in ROLES, example
            if example.operation != "subscription":
                results = {
                    "http": await run.post(example.document, example.variables, example.role)
                }
            else:
                results = {
                    "graphql-transport-ws": await run.over_websocket(example),
                    "sse": await run.over_sse(example),
                }
            failures.extend(
                f"{example} over {transport}: {problem}"
                for transport, result in results.items()
                for problem in problems_of(result)
            )
    assert not failures, "\n".join(failures)


async def test_every_root_field_has_an_example(demo: Demo) -> None:
    async with runner(demo) as run:
        result = await run.post(
            """{ __schema {
              queryType { fields { name } }
              mutationType { fields { name } }
              subscriptionType { fields { name } } } }""",
            None,
            None,
        )
    schema = result["data"]["__schema"]
    missing: list[str] = []
    for operation in ("query", "mutation", "subscription"):
        served = {field["name"] for field in schema[f"{operation}Type"]["fields"]}
        shown = {
            name
            for example in EXAMPLES
            if example.operation == operation
            for name in example.root_fields
        }
        missing.extend(f"{operation} {name}" for name in sorted(served - shown))
    assert not missing, f"docs/API.md has no example of: {', '.join(missing)}"


async def test_the_javascript_examples_run(demo: Demo) -> None:
    """Each ```js example is valid; those with graphql-ws's createClient, run with Node against
    the demo server, print a view count (the subscription's first value)."""
    node = node_with_packages()
    blocks = js_examples(MANUAL_TEXT)
    assert any("createClient" in source for _, source in blocks)
    for line, source in blocks:
        for address in JS_ADDRESSES:
            source = source.replace(address, demo.server.ws_url)
        source = source.replace('"st_..."', json.dumps(demo.tokens["auditor"]))
        # In live_js/, so that its node_modules resolve the imports.
        script = JS_DIR / f"manual-{os.getpid()}-{line}.mjs"
        script.write_text(BROWSER_GLOBALS + source, encoding="utf-8")
        try:
            checked = await asyncio.create_subprocess_exec(
                node, "--check", str(script), stderr=asyncio.subprocess.PIPE
            )
            _, errors = await checked.communicate()
            assert checked.returncode == 0, f"docs/API.md:{line}: {errors.decode()}"
            if "createClient" in source:
                printed = await _first_line(node, script)
                assert printed.isdigit(), f"docs/API.md:{line} printed {printed!r}"
        finally:
            script.unlink()


async def _first_line(node: str, script: Path) -> str:
    process = await asyncio.create_subprocess_exec(
        node,
        str(script),
        cwd=JS_DIR,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert process.stdout is not None and process.stderr is not None
    try:
        line = await asyncio.wait_for(process.stdout.readline(), 30)
        if not line:
            raise AssertionError((await process.stderr.read()).decode())
        return line.decode().strip()
    finally:
        if process.returncode is None:
            process.kill()
        await process.wait()


def test_the_error_table_lists_every_code_and_no_other() -> None:
    documented = error_table_codes(MANUAL_TEXT)
    assert documented == set(CODES), (
        f"missing from docs/API.md: {sorted(set(CODES) - documented)}; "
        f"not codes: {sorted(documented - set(CODES))}"
    )


def heading_anchors(text: str) -> set[str]:
    """The anchors GitHub gives the headings: lower case, punctuation dropped, spaces to -."""
    text = _FENCE.sub("", text)
    return {
        re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-")
        for heading in re.findall(r"^#{1,6} (.+)$", text, re.MULTILINE)
    }


def test_every_link_of_the_manual_reaches_its_heading_or_file() -> None:
    anchors = heading_anchors(MANUAL_TEXT)
    links = set(re.findall(r"\]\(#([^)]+)\)", MANUAL_TEXT))
    assert links, "the manual links its sections"
    assert not links - anchors, f"links to no heading: {sorted(links - anchors)}"
    files = set(re.findall(r"\]\(([\w./-]+\.md)\)", MANUAL_TEXT))
    assert not {name for name in files if not (MANUAL.parent / name).is_file()}, files


def test_the_manual_parser_finds_examples_variables_and_roles() -> None:
    text = (
        "```graphql\n# role: auditor\n"
        "query Q($id: ID!) { statement(id: $id) { id } logHead { hash } }\n```\n"
        '\n```json\n{"id": "x"}\n```\n'
        "text\n\n```graphql\nsubscription { statementPublished { id } }\n```\n"
        'prose\n\n```json\n{"not": "variables"}\n```\n'
    )
    first, second = manual_examples(text)
    assert (first.line, first.role, first.operation) == (1, "auditor", "query")
    assert first.root_fields == ("statement", "logHead")
    assert first.variables == {"id": "x"}
    assert (second.line, second.role, second.variables) == (11, None, None)
    assert second.operation == "subscription"
    assert heading_anchors("## Consistency: reading your own writes\n### Time travel\n") == {
        "consistency-reading-your-own-writes",
        "time-travel",
    }
    assert nothing_in({"edges": []}) == "no edges"
    assert nothing_in([]) == "an empty list"
    assert nothing_in({"position": None, "topic": {"name": "x"}}) is None
    assert error_table_codes(
        "## Errors\n\n| code |\n|---|\n| `A_B`, `C` | x |\n\n## Next\n| `D` |"
    ) == {
        "A_B",
        "C",
    }
