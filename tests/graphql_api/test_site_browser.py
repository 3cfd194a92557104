"""The archive site in headless Chromium: the imported seed page as a reader sees it, and axe-core
on every kind of page.

The app runs under uvicorn (``statements serve``'s factory) on a database holding the imported
seed page (``../shared/seeds``) and some demo data. Needs node, the live_js packages (with
axe-core) and chromium (``js_support``: skipped without them, a failure under
``STATEMENTS_REQUIRE_BROWSER``).
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator

import httpx
import pytest

from tests.graphql_api.js_support import chromium, node_with_packages, run_node
from tests.graphql_api.live_support import ROOT, Server, live_server

SEEDS = ROOT.parent / "shared" / "seeds"
SEED_TITLE = "Comment by Russian Foreign Minister Sergey Lavrov on his meeting with US Secretary"
#: axe-core impacts a page must not have.
BLOCKING = {"serious", "critical"}


def statements(*args: str) -> None:
    subprocess.run(
        [sys.executable, "-m", "graphql_api.cli", *args], check=True, capture_output=True
    )


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    if not SEEDS.is_dir():
        pytest.skip(f"{SEEDS} is missing: the seed page is not on this machine")
    chromium()
    tmp = tmp_path_factory.mktemp("site-browser")
    url = f"sqlite:///{tmp / 'site.db'}"
    statements("import", "--db", url, str(SEEDS))
    statements("demo", "--db", url, "--statements", "20", "--views", "50", "--seed", "1")
    with live_server(url, tmp, factory="graphql_api.app:app_from_env", ready_path="/readyz") as s:
        yield s


def _paths(server: Server) -> dict[str, str]:
    """A path of each kind of page, found by following the site's own links."""
    with httpx.Client(base_url=server.url, timeout=10) as http:
        search = http.get("/search", params={"q": "Kerry"}).text
        seed = search.split('href="/statements/', 1)[1].split('"', 1)[0]
        statement = http.get(f"/statements/{seed}").text
        minister = statement.split('href="/ministers/', 1)[1].split('"', 1)[0]
        home = http.get("/").text
        topic = http.get("/topics").text.split('href="/topics/', 1)[1].split('"', 1)[0]
        month = home.split('href="/archive/', 1)[1].split('"', 1)[0]
    return {
        "statement": f"/statements/{seed}",
        "print": f"/statements/{seed}/print",
        "home": "/",
        "archive": f"/archive/{month}",
        "topics": "/topics",
        "topic": f"/topics/{topic}",
        "minister": f"/ministers/{minister}",
        "search": "/search?q=Kerry",
        "not found": "/statements/no-such-statement",
    }


def test_the_seed_page_shows_what_a_reader_sees_and_passes_axe(server: Server) -> None:
    node = node_with_packages()
    paths = _paths(server)
    statement = paths.pop("statement")
    result = run_node(node, "site.mjs", server.url, statement, *paths.values(), timeout=180)

    opened, reloaded = result["opened"], result["reloaded"]
    assert opened["status"] == 200
    assert opened["heading"].startswith(SEED_TITLE)
    assert opened["title"].startswith(SEED_TITLE)
    assert "Sergey Lavrov" in opened["minister"]
    assert "8 November 2014" in opened["heading"] and "Beijing" in opened["heading"]
    assert "17 November 2014, 16:58" in opened["meta"]
    assert opened["paragraphs"] > 3
    assert opened["print"] == f"{statement}/print"
    assert opened["lang"] == "en"
    count = int(opened["count"].replace("\u00a0", ""))
    assert count >= 1
    assert int(reloaded["count"].replace("\u00a0", "")) == count + 1

    assert result["offHost"] == []
    for path, found in result["accessibility"].items():
        blocking = [v for v in found["violations"] if v["impact"] in BLOCKING]
        assert blocking == [], (path, blocking)
        assert found["status"] == (404 if path.endswith("no-such-statement") else 200), path
