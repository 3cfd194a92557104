"""The site's pages: each runs its document through :class:`SiteClient` and renders a template.

Templates get ``data`` (what the page's document returned), ``view`` on a statement page (what
its ``StatementView`` document returned, or None when no view was counted) and ``page`` (what
the request asked for: the slug, the month, the search words, the address of the site), nothing
else; the Jinja2 environment is strict, so a template that reads anything the document did not
select fails instead of printing nothing.
"""

from __future__ import annotations

import calendar
import logging
import re
from collections.abc import Callable, Mapping, Sequence
from datetime import date, datetime
from pathlib import Path
from typing import Any, Final

from cachetools import LRUCache
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from markupsafe import Markup
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from graphql_api.errors import BAD_USER_INPUT, RATE_LIMITED
from graphql_api.site.client import SiteClient, SiteQueryError
from graphql_api.site.validators import Validators, headers, not_modified

log = logging.getLogger(__name__)

PACKAGE_DIR: Final = Path(__file__).parent
TEMPLATES_DIR: Final = PACKAGE_DIR / "templates"
STATIC_DIR: Final = PACKAGE_DIR / "static"
HTML: Final = "text/html; charset=utf-8"
ATOM: Final = "application/atom+xml; charset=utf-8"


def _moment(value: str) -> datetime:
    return datetime.fromisoformat(value)


def long_date(value: str) -> str:
    """``2014-11-08`` or an ISO date-time as the site writes it: ``8 November 2014``."""
    day = _moment(value).date() if "T" in value else date.fromisoformat(value)
    return f"{day.day} {calendar.month_name[day.month]} {day.year}"


def clock_time(value: str) -> str:
    """The local time of an ISO date-time: ``16:58``."""
    return _moment(value).strftime("%H:%M")


def month_name(month: int) -> str:
    return calendar.month_name[month]


def thousands(value: int) -> str:
    """A count as the archive site prints it: ``1 993``."""
    return f"{value:,}".replace(",", "\u00a0")


def archive_lists() -> Callable[[Sequence[Mapping[str, int]]], Markup]:
    """The archive's month list as HTML, rendered once per distinct list.

    Every page shows the list, and looping over its months in the template cost as much as
    the page's query; the list changes only when a statement is published or withdrawn.
    """
    rendered: LRUCache[tuple[tuple[int, int, int], ...], Markup] = LRUCache(maxsize=16)
    item = Markup('<li><a href="/archive/{0}/{1}">{2} {0} ({3})</a></li>')

    def archive_list(months: Sequence[Mapping[str, int]]) -> Markup:
        key = tuple((m["year"], m["month"], m["count"]) for m in months)
        html = rendered.get(key)
        if html is None:
            html = Markup("\n").join(item.format(y, mo, month_name(mo), c) for y, mo, c in key)
            rendered[key] = html
        return html

    return archive_list


def templates() -> Jinja2Templates:
    """The site's templates: strict (an undefined name fails), HTML and XML escaped."""
    env = Environment(
        loader=FileSystemLoader(TEMPLATES_DIR),
        autoescape=select_autoescape(["html", "xml"]),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        # The templates ship with the package: no stat of their files on every page.
        auto_reload=False,
    )
    env.filters.update(
        long_date=long_date, clock_time=clock_time, month_name=month_name, thousands=thousands
    )
    env.globals["archive_list"] = archive_lists()
    return Jinja2Templates(env=env)


class Site:
    """The site's request handlers."""

    def __init__(
        self,
        client: SiteClient,
        validators: Validators,
        *,
        count_views: bool = True,
        bot_agents: str = "",
    ) -> None:
        self.client = client
        self.validators = validators
        self.count_views = count_views
        self.bot_agents = re.compile(bot_agents, re.IGNORECASE) if bot_agents else None
        self.templates = templates()

    def routes(self) -> list[BaseRoute]:
        get = ["GET", "HEAD"]
        return [
            Route("/", self.home, methods=get),
            Route("/statements/{slug}", self.statement, methods=get),
            Route("/statements/{slug}/print", self.print_version, methods=get),
            Route("/archive/{year:int}/{month:int}", self.archive_month, methods=get),
            Route("/topics", self.topics, methods=get),
            Route("/topics/{slug}", self.topic, methods=get),
            Route("/ministers/{id}", self.minister, methods=get),
            Route("/search", self.search, methods=get),
            Route("/feed.atom", self.feed, methods=get),
            Mount("/static/site", StaticFiles(directory=STATIC_DIR), name="site-static"),
        ]

    # --- pages -----------------------------------------------------------------------------

    async def home(self, request: Request) -> Response:
        return await self._page(request, "home", {}, "home.html", {})

    async def archive_month(self, request: Request) -> Response:
        year, month = request.path_params["year"], request.path_params["month"]
        if not (1 <= month <= 12 and 1 <= year <= 9999):
            return self._not_found(request, "There is no such month.")
        last = calendar.monthrange(year, month)[1]
        variables = {
            "from": date(year, month, 1).isoformat(),
            "to": date(year, month, last).isoformat(),
            "after": request.query_params.get("after"),
        }
        page = {"year": year, "month": month}
        return await self._page(request, "archive_month", variables, "archive_month.html", page)

    async def topics(self, request: Request) -> Response:
        variables = {"after": request.query_params.get("after")}
        return await self._page(request, "topics", variables, "topics.html", {})

    async def topic(self, request: Request) -> Response:
        variables = {
            "slug": request.path_params["slug"],
            "after": request.query_params.get("after"),
        }
        return await self._page(request, "topic", variables, "topic.html", {}, missing="topic")

    async def minister(self, request: Request) -> Response:
        variables = {"id": request.path_params["id"], "after": request.query_params.get("after")}
        return await self._page(
            request, "minister", variables, "minister.html", {}, missing="minister"
        )

    async def search(self, request: Request) -> Response:
        q = request.query_params.get("q", "").strip()
        if not q:
            return await self._page(request, "search_form", {}, "search.html", {"q": ""})
        variables = {"q": q, "after": request.query_params.get("after")}
        return await self._page(request, "search", variables, "search.html", {"q": q})

    async def feed(self, request: Request) -> Response:
        page = {"base": str(request.base_url).rstrip("/")}
        return await self._page(request, "feed", {}, "feed.xml", page, media_type=ATOM)

    async def print_version(self, request: Request) -> Response:
        slug = request.path_params["slug"]
        return await self._page(
            request, "statement", {"slug": slug}, "print.html", {"slug": slug}, missing="statement"
        )

    async def statement(self, request: Request) -> Response:
        """The statement page; it counts a view (also when revalidated) before it answers."""
        slug = request.path_params["slug"]
        try:
            answer = await self.client.run(request, "statement", {"slug": slug})
        except SiteQueryError as exc:
            return self._refused(request, exc)
        statement = answer.data["statement"]
        if statement is None:
            return self._not_found(request, "There is no statement at this address.")
        if statement["withdrawn"]:
            return self._render(
                request, "withdrawn.html", answer.data, {"slug": slug}, status_code=410
            )
        view = None
        if request.method == "GET" and self._counts(request):
            view = await self._record_view(request, statement["statementId"])
        current = self.validators.current(f"statement:{slug}")
        if current is not None and not_modified(request.headers, current):
            return Response(status_code=304, headers=headers(current))
        return self._render(
            request, "statement.html", answer.data, {"slug": slug}, view=view, validators=current
        )

    # --- the view counter ------------------------------------------------------------------

    def _counts(self, request: Request) -> bool:
        if not self.count_views:
            return False
        agent = request.headers.get("user-agent", "")
        return self.bot_agents is None or self.bot_agents.search(agent) is None

    async def _record_view(self, request: Request, statement_id: str) -> dict[str, Any] | None:
        """The recorded view (its position and the count with it), or None if not counted."""
        try:
            answer = await self.client.run(request, "statement_view", {"statementId": statement_id})
        except SiteQueryError as exc:
            if RATE_LIMITED in exc.codes:
                return None  # over the reader's rate: the page shows the count without it
            raise
        view: dict[str, Any] = answer.data["recordView"]
        if answer.errors:
            # The view stands; the read models did not show it in time (POSITION_NOT_REACHED).
            log.warning("site view of %s: %s", statement_id, answer.errors[0].message)
        return view

    # --- rendering -------------------------------------------------------------------------

    async def _page(
        self,
        request: Request,
        document: str,
        variables: Mapping[str, Any],
        template: str,
        page: Mapping[str, Any],
        *,
        missing: str | None = None,
        media_type: str = HTML,
    ) -> Response:
        key = f"{request.url.path}?{request.url.query}"
        current = self.validators.current(key)
        if current is not None and not_modified(request.headers, current):
            return Response(status_code=304, headers=headers(current))
        try:
            answer = await self.client.run(request, document, variables)
        except SiteQueryError as exc:
            return self._refused(request, exc)
        if answer.errors:
            raise SiteQueryError(document, answer.errors)
        if missing is not None and answer.data[missing] is None:
            return self._not_found(request, "There is nothing at this address.")
        return self._render(
            request, template, answer.data, page, validators=current, media_type=media_type
        )

    def _render(
        self,
        request: Request,
        template: str,
        data: Mapping[str, Any] | None,
        page: Mapping[str, Any],
        *,
        view: Mapping[str, Any] | None = None,
        validators: tuple[str, datetime] | None = None,
        status_code: int = 200,
        media_type: str = HTML,
    ) -> Response:
        response = self.templates.TemplateResponse(
            request,
            template,
            {"data": data, "page": page, "view": view},
            status_code=status_code,
            headers=headers(validators),
            media_type=media_type,
        )
        return response

    def _not_found(self, request: Request, message: str) -> Response:
        return self._render(request, "not_found.html", None, {"message": message}, status_code=404)

    def _refused(self, request: Request, exc: SiteQueryError) -> Response:
        """A document refused the request's input (a bad cursor, search words): 400."""
        if BAD_USER_INPUT not in exc.codes:
            raise exc
        message = exc.errors[0].message if exc.errors else "bad request"
        return self._render(
            request, "bad_request.html", None, {"message": message}, status_code=400
        )
