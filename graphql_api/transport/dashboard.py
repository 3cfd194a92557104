"""``GET /dashboard``: a live page of the most viewed statements and a chart of one statement's
views over time. It subscribes over Server-Sent Events (``/graphql/stream``), so it works behind
proxies that block WebSockets; its HTML, JS and CSS are served by the app (no CDN)."""

from __future__ import annotations

from pathlib import Path
from typing import Final

from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

STATIC_DIR: Final = Path(__file__).resolve().parent.parent / "static" / "dashboard"
_HEADERS: Final = {
    "cache-control": "no-cache",
    "content-security-policy": "default-src 'self'; style-src 'self'; script-src 'self'",
    "x-content-type-options": "nosniff",
}


async def dashboard(request: Request) -> Response:
    return FileResponse(STATIC_DIR / "dashboard.html", media_type="text/html", headers=_HEADERS)


def dashboard_routes() -> list[BaseRoute]:
    """``/dashboard`` and its static files under ``/dashboard/static``."""
    return [
        Route("/dashboard", dashboard, methods=["GET", "HEAD"]),
        Mount("/dashboard/static", StaticFiles(directory=STATIC_DIR), name="dashboard-static"),
    ]
