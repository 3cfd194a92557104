"""GraphiQL served from the package: the page, its CSP, its files and their licences, and a
wheel that ships them. The headless-Chromium test with no network is in ``test_browser``."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import zipfile
from html.parser import HTMLParser
from pathlib import Path

import httpx
import pytest

from graphql_api.app import create_app
from graphql_api.settings import Settings
from graphql_api.transport.graphiql import CONTENT_SECURITY_POLICY, GRAPHIQL_DIR

ROOT = Path(__file__).resolve().parents[2]
HTML = {"accept": "text/html,application/xhtml+xml,*/*;q=0.8"}


class _Assets(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if name in ("src", "href") and value is not None:
                self.urls.append(value)


def _client(production: bool, tmp_path: Path) -> httpx.AsyncClient:
    app = create_app(
        Settings(database_url=f"sqlite:///{tmp_path / 'app.db'}", production=production)
    )
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api.test")


async def test_the_page_and_everything_it_loads_come_from_this_server(tmp_path: Path) -> None:
    async with _client(False, tmp_path) as client:
        page = await client.get("/graphql", headers=HTML)
        assert page.status_code == 200
        assert page.headers["content-type"].startswith("text/html")
        assert page.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
        assert page.headers["x-content-type-options"] == "nosniff"
        assets = _Assets()
        assets.feed(page.text)
        assert len(assets.urls) >= 5, assets.urls
        for url in assets.urls:
            # Paths on this server only: no scheme, no host, nothing a CDN would serve.
            assert url.startswith("/graphiql/static/") and "//" not in url, url
            response = await client.get(url)
            assert response.status_code == 200, url
            assert (
                response.content
                == (GRAPHIQL_DIR / url.removeprefix("/graphiql/static/")).read_bytes()
            )
            kind = "text/css" if url.endswith(".css") else "text/javascript"
            assert response.headers["content-type"].startswith(kind), url


def test_the_policy_allows_only_this_server() -> None:
    directives = dict(d.strip().split(" ", 1) for d in CONTENT_SECURITY_POLICY.split(";"))
    for directive, sources in directives.items():
        # 'self', 'none' and data: (GraphiQL's fonts and images); no host, no inline script.
        assert set(sources.split()) <= {"'self'", "'none'", "data:"}, directive
    assert directives["default-src"] == "'self'" and directives["script-src"] == "'self'"


async def test_production_serves_neither_graphiql_nor_its_files(tmp_path: Path) -> None:
    async with _client(True, tmp_path) as client:
        page = await client.get("/graphql", headers=HTML)
        assert "graphiql" not in page.text.lower()
        assert (await client.get("/graphiql/static/start.js")).status_code == 404
        assert (await client.get("/graphiql/static/vendor/react/LICENSE")).status_code == 404


def test_the_vendored_files_have_their_licences_and_pinned_versions() -> None:
    script = (ROOT / "scripts" / "vendor-graphiql.sh").read_text()
    readme = (GRAPHIQL_DIR / "README.md").read_text()
    pinned = re.findall(r'^\s+"([a-z-]+) (\d+\.\d+\.\d+) sha512-\S+"$', script, re.MULTILINE)
    assert {name for name, _ in pinned} == {"graphiql", "react", "react-dom"}
    for name, version in pinned:
        folder = GRAPHIQL_DIR / "vendor" / name
        assert (folder / "LICENSE").read_text().startswith("MIT License"), name
        assert f"| `{name}` | {version} |" in readme, (name, version)
        served = [p.name for p in folder.iterdir() if p.name != "LICENSE"]
        assert served and all(p.endswith((".js", ".css")) for p in served), served
    # React announces its version in its build: the files are those of the pinned release.
    react = dict(pinned)["react"]
    for build in ("react/react.production.min.js", "react-dom/react-dom.production.min.js"):
        assert f'"{react}"' in (GRAPHIQL_DIR / "vendor" / build).read_text(), build


def test_a_wheel_ships_the_static_files(tmp_path: Path) -> None:
    # Built from a copy, so that setuptools' build/ and egg-info stay out of the work tree.
    source = tmp_path / "src"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for package in ("domain", "eventstore", "projections", "graphql_api"):
        shutil.copytree(ROOT / package, source / package, ignore=ignore)
    completed = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
         "-w", str(tmp_path / "dist"), str(source)],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert completed.returncode == 0, completed.stderr
    (wheel,) = (tmp_path / "dist").glob("*.whl")
    with zipfile.ZipFile(wheel) as archive:
        shipped = {name for name in archive.namelist() if "/static/" in name}
    static = ROOT / "graphql_api" / "static"
    expected = {path.relative_to(ROOT).as_posix() for path in static.rglob("*") if path.is_file()}
    assert expected and shipped == expected
    assert "graphql_api/static/graphiql/vendor/graphiql/LICENSE" in shipped


@pytest.mark.parametrize(
    "path", ["/dashboard/static/dashboard.js", "/dashboard/static/dashboard.css"]
)
async def test_the_dashboard_files_moved_but_keep_their_urls(tmp_path: Path, path: str) -> None:
    async with _client(True, tmp_path) as client:
        response = await client.get(path)
        assert response.status_code == 200
        # Only the dashboard's own folder is served there, not GraphiQL's.
        assert (await client.get("/dashboard/static/graphiql/start.js")).status_code == 404
