"""GraphiQL, served by the app itself: the page that ``GET /graphql`` shows a browser, and its
files under ``/graphiql/static`` (React, ReactDOM and GraphiQL's UMD builds with their licences,
see ``static/graphiql/README.md``). Nothing is loaded from a CDN, so it works on networks that
cannot reach one, and the page's Content-Security-Policy allows only this server."""

from __future__ import annotations

from pathlib import Path
from typing import Final

from starlette.responses import HTMLResponse
from starlette.routing import BaseRoute, Mount
from starlette.staticfiles import StaticFiles

GRAPHIQL_DIR: Final = Path(__file__).resolve().parent.parent / "static" / "graphiql"
STATIC_PATH: Final = "/graphiql/static"
#: GraphiQL's stylesheet embeds its fonts and a few images as ``data:`` URLs; ``'self'`` in
#: ``connect-src`` covers both ``fetch`` and the same host's ``ws:``/``wss:`` (CSP Level 3).
CONTENT_SECURITY_POLICY: Final = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "font-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none'; "
    "form-action 'none'; frame-ancestors 'none'"
)
_HEADERS: Final = {
    "cache-control": "no-cache",
    "content-security-policy": CONTENT_SECURITY_POLICY,
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
}


class GraphiQLPage:
    """The page, read once when the endpoint is built (not at import time)."""

    def __init__(self) -> None:
        self.html = (GRAPHIQL_DIR / "index.html").read_text(encoding="utf-8")

    def response(self) -> HTMLResponse:
        return HTMLResponse(self.html, headers=_HEADERS)


def graphiql_routes() -> list[BaseRoute]:
    """GraphiQL's files under ``/graphiql/static``; mount them only where GraphiQL is served."""
    return [Mount(STATIC_PATH, StaticFiles(directory=GRAPHIQL_DIR), name="graphiql-static")]
