"""The archive site (``graphql_api.site``) as its readers meet it, over HTTP on demo data.

The app runs on a database loaded by ``statements demo``; pages are fetched with httpx as a
browser would, and their links followed.
"""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from html.parser import HTMLParser
from typing import Any
from urllib.parse import urljoin, urlsplit

import pytest
from graphql import (
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    OperationDefinitionNode,
    SelectionSetNode,
    parse,
    validate,
)
from jinja2 import UndefinedError, meta, nodes

from graphql_api.app import api_schema
from graphql_api.settings import Settings
from graphql_api.site.documents import SiteDocuments
from graphql_api.site.routes import TEMPLATES_DIR, templates
from tests.conftest import run_pg
from tests.graphql_api.app_client import Api, running_app

DEMO_ARGS = ("--statements", "40", "--views", "150", "--seed", "1")
BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
BOT = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"
READER = "Mozilla/5.0 (X11; Linux x86_64) Firefox/128.0"


def load_demo(url: str, schema: str) -> None:
    env = {**os.environ, "STATEMENTS_DATABASE_SCHEMA": schema} if schema else dict(os.environ)
    subprocess.run(
        [sys.executable, "-m", "graphql_api.cli", "demo", "--db", url, *DEMO_ARGS],
        check=True,
        capture_output=True,
        env=env,
    )


@pytest.fixture(scope="module", params=BACKENDS)
def demo_database(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> tuple[str, str]:
    """One demo database per backend for the module: the tests only add views to it."""
    if request.param == "postgresql":
        url = request.getfixturevalue("pg_database")
        schema = f"t_{uuid.uuid4().hex[:12]}"
        run_pg(url, f'CREATE SCHEMA "{schema}"')
    else:
        url, schema = f"sqlite:///{tmp_path_factory.mktemp('site') / 'site.db'}", ""
    load_demo(url, schema)
    return url, schema


async def caught_up(api: Api) -> None:
    """Wait until every projection is at the head: their positions make the pages' ETags."""
    for _ in range(200):
        ready = (await api.client.get("/readyz")).json()
        if all(p["lag_events"] == 0 for p in ready["projections"].values()):
            return
        await asyncio.sleep(0.05)
    raise AssertionError(ready)


@pytest.fixture
async def site(demo_database: tuple[str, str]) -> AsyncIterator[Api]:
    async with running_app(*demo_database) as api:
        await caught_up(api)
        yield api


class Links(HTMLParser):
    """The ``href``s and ``src``s of a page, and its visible text."""

    def __init__(self) -> None:
        super().__init__()
        self.links: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if name in ("href", "src") and value:
                self.links.append(value)

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def parsed(html: str) -> Links:
    links = Links()
    links.feed(html)
    return links


async def first_statement_path(api: Api) -> str:
    home = await api.client.get("/")
    paths = [link for link in parsed(home.text).links if link.startswith("/statements/")]
    assert paths, home.text
    return paths[0]


def view_count(html: str) -> int:
    match = re.search(r'<span id="view-count">([\d\u00a0]+)</span>', html)
    assert match, html
    return int(match.group(1).replace("\u00a0", ""))


# --- documents and templates -------------------------------------------------------------


def test_every_document_validates_against_the_schema_and_is_allow_listed() -> None:
    documents = SiteDocuments.load()
    schema = api_schema()._schema
    assert {"home", "statement", "statement_view", "archive_month", "search"} <= set(
        documents.documents
    )
    for name, document in documents.documents.items():
        assert validate(schema, parse(document.text)) == [], name
        assert documents.allow_list.allows(document.sha256)
        assert documents[name] is document


def test_templates_read_only_the_documents_answers_and_the_request() -> None:
    # A template's free names are all it can read: the document's data, the recorded view and
    # what the request asked for; the environment is strict, so nothing else is read silently.
    env = templates().env
    trees = {
        path.name: env.parse(path.read_text(encoding="utf-8")) for path in TEMPLATES_DIR.iterdir()
    }
    # Jinja counts imported macros as free names; they are the templates' own.
    macros = {macro.name for tree in trees.values() for macro in tree.find_all(nodes.Macro)}
    for name, tree in trees.items():
        free = meta.find_undeclared_variables(tree) - macros
        assert free <= {"data", "page", "view"}, (name, free)
    with pytest.raises(UndefinedError):
        env.get_template("topic.html").render(data={"archive": []}, page={}, view=None)


#: The document each page template renders.
TEMPLATE_DOCUMENTS = {
    "home.html": "home",
    "statement.html": "statement",
    "print.html": "statement",
    "withdrawn.html": "statement",
    "archive_month.html": "archive_month",
    "topic.html": "topic",
    "topics.html": "topics",
    "minister.html": "minister",
    "search.html": "search",
    "feed.xml": "feed",
}


def selections(document: str) -> dict[str, Any]:
    """The fields a document selects, as nested dicts by response name (fragments inlined)."""
    tree = parse(document)
    fragments = {d.name.value: d for d in tree.definitions if isinstance(d, FragmentDefinitionNode)}

    def walk(selection_set: SelectionSetNode | None) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for selection in selection_set.selections if selection_set else ():
            if isinstance(selection, FieldNode):
                name = (selection.alias or selection.name).value
                out.setdefault(name, {}).update(walk(selection.selection_set))
            elif isinstance(selection, FragmentSpreadNode):
                out.update(walk(fragments[selection.name.value].selection_set))
        return out

    operation = next(d for d in tree.definitions if isinstance(d, OperationDefinitionNode))
    return walk(operation.selection_set)


def data_paths(node: nodes.Node) -> list[list[str]]:
    """The attribute chains a template reads from ``data`` (``data.statement.title``)."""
    paths = []
    for getattr_node in node.find_all(nodes.Getattr):
        chain: list[str] = []
        current: nodes.Node = getattr_node
        while isinstance(current, nodes.Getattr):
            chain.insert(0, current.attr)
            current = current.node
        if isinstance(current, nodes.Name) and current.name == "data":
            paths.append(chain)
    return paths


def test_templates_read_from_data_only_fields_their_documents_select() -> None:
    env = templates().env
    documents = SiteDocuments.load()
    for template, document in TEMPLATE_DOCUMENTS.items():
        selected = selections(documents[document].text)
        tree = env.parse((TEMPLATES_DIR / template).read_text(encoding="utf-8"))
        paths = data_paths(tree)
        assert paths, template
        for path in paths:
            level = selected
            for name in path:
                assert name in level, (template, path)
                level = level[name]


# --- pages -------------------------------------------------------------------------------


async def test_a_crawl_from_home_finds_every_internal_link_answering(site: Api) -> None:
    seen: set[str] = set()
    queue = ["/"]
    kinds: set[str] = set()
    while queue:
        path = queue.pop()
        if path in seen:
            continue
        seen.add(path)
        response = await site.client.get(path, headers={"user-agent": BOT})
        assert response.status_code in (200, 304), (path, response.status_code)
        kinds.add(path.split("/")[1].split("?")[0])
        if not response.headers["content-type"].startswith("text/html"):
            continue
        assert response.headers["etag"] and response.headers["last-modified"]
        for link in parsed(response.text).links:
            target = urljoin(f"http://test{path}", link)
            parts = urlsplit(target)
            if parts.netloc != "test" or parts.path.startswith("/graphql"):
                assert parts.netloc == "test", link  # no asset from another host
                continue
            queue.append(parts.path + (f"?{parts.query}" if parts.query else ""))
    assert {"", "statements", "archive", "topics", "ministers", "feed.atom", "static"} <= kinds
    assert len(seen) > 60


async def test_the_statement_page_shows_the_statement_and_counts_each_view(site: Api) -> None:
    path = await first_statement_path(site)
    first = await site.client.get(path, headers={"user-agent": READER})
    assert first.status_code == 200
    page = parsed(first.text)
    assert f"{path}/print" in page.links
    assert any(link.startswith("/ministers/") for link in page.links)
    assert re.search(r'<html lang="\w+', first.text)
    assert '<meta name="description"' in first.text
    again = await site.client.get(path, headers={"user-agent": READER})
    assert view_count(again.text) == view_count(first.text) + 1
    # Revalidating counts the view too: the count changed, so the page is new.
    revalidated = await site.client.get(
        path, headers={"user-agent": READER, "if-none-match": again.headers["etag"]}
    )
    assert revalidated.status_code == 200
    assert view_count(revalidated.text) == view_count(again.text) + 1
    # Bots are not counted, and their revalidation is answered 304.
    bot = await site.client.get(path, headers={"user-agent": BOT})
    assert view_count(bot.text) == view_count(revalidated.text)
    unchanged = await site.client.get(
        path, headers={"user-agent": BOT, "if-none-match": bot.headers["etag"]}
    )
    assert unchanged.status_code == 304
    printed = await site.client.get(f"{path}/print")
    assert printed.status_code == 200 and "print version" in printed.text


async def test_the_count_matches_the_api_and_the_page_is_the_same_data(site: Api) -> None:
    path = await first_statement_path(site)
    slug = path.rsplit("/", 1)[1]
    response = await site.client.get(path, headers={"user-agent": READER})
    data = await site.data(
        "query($slug: String!) { statement(slug: $slug) { title viewCount } }", {"slug": slug}
    )
    assert view_count(response.text) == data["statement"]["viewCount"]
    assert f"<h1>{data['statement']['title']}</h1>" in response.text.replace("&#39;", "'")


async def test_unknown_addresses_and_bad_input_get_their_pages(site: Api) -> None:
    missing = await site.client.get("/statements/no-such-statement")
    assert missing.status_code == 404 and "Not found" in missing.text
    assert (await site.client.get("/topics/no-such-topic")).status_code == 404
    assert (await site.client.get("/ministers/no-such-minister")).status_code == 404
    assert (await site.client.get("/archive/2020/13")).status_code == 404
    bad_cursor = await site.client.get("/archive/2020/7?after=not-a-cursor")
    assert bad_cursor.status_code == 400 and "after" in bad_cursor.text


async def test_search_ranks_results_with_marked_snippets(site: Api) -> None:
    home = await site.client.get("/")
    title = re.search(r'<h3><a href="/statements/[^"]+">([^<]+)</a>', home.text)
    assert title
    word = max(re.findall(r"[A-Za-z]{5,}", title.group(1)), key=len)
    response = await site.client.get("/search", params={"q": word})
    assert response.status_code == 200
    assert "<mark>" in response.text
    assert "statements match" in response.text


async def test_the_feed_is_atom_of_the_latest_statements(site: Api) -> None:
    response = await site.client.get("/feed.atom")
    assert response.headers["content-type"].startswith("application/atom+xml")
    assert response.text.count("<entry>") == 20
    assert '<feed xmlns="http://www.w3.org/2005/Atom">' in response.text


async def test_pages_other_than_statements_revalidate_with_304(site: Api) -> None:
    for path in ("/", "/topics", "/feed.atom"):
        first = await site.client.get(path)
        again = await site.client.get(path, headers={"if-none-match": first.headers["etag"]})
        assert again.status_code == 304, path
        since = await site.client.get(
            path, headers={"if-modified-since": first.headers["last-modified"]}
        )
        assert since.status_code == 304, path


async def test_counting_off_leaves_the_count_alone(demo_database: tuple[str, str]) -> None:
    async with running_app(*demo_database, site_count_views=False) as api:
        await caught_up(api)
        path = await first_statement_path(api)
        first = await api.client.get(path, headers={"user-agent": READER})
        again = await api.client.get(path, headers={"user-agent": READER})
        assert view_count(again.text) == view_count(first.text)
        assert (
            await api.client.get(path, headers={"if-none-match": again.headers["etag"]})
        ).status_code == 304


def test_the_site_settings_come_from_the_environment() -> None:
    settings = Settings.from_env(
        {"STATEMENTS_SITE_COUNT_VIEWS": "0", "STATEMENTS_SITE_BOT_AGENTS": "crawler|archiver"}
    )
    assert settings.site_count_views is False
    assert settings.site_bot_agents == "crawler|archiver"
    assert Settings.from_env({}).site_count_views is True
    assert re.search(Settings.from_env({}).site_bot_agents, BOT.lower())
    assert not re.search(Settings.from_env({}).site_bot_agents, READER.lower())
    with pytest.raises(ValueError, match="STATEMENTS_SITE_BOT_AGENTS must be a regular expression"):
        Settings.from_env({"STATEMENTS_SITE_BOT_AGENTS": "bot("})
