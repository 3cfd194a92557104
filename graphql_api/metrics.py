"""Prometheus metrics in the text exposition format (0.0.4), without a client library.

* ``graphql_requests_total{operation,status}``: requests by operation name and HTTP status;
* ``graphql_request_duration_seconds{operation}``: a latency histogram;
* ``graphql_sql_statements_per_request``: a histogram of the SQL statements each request ran,
  and ``graphql_sql_statements_total``;
* gauges read from callbacks when scraped, e.g. projection lag and open subscriptions.

Operation names are the client's, so they are bounded: only GraphQL names, at most
``max_operations`` distinct ones (later ones count as ``other``); no name is ``anonymous``.

SQL statements are counted per request through a context variable: the endpoint opens a
:func:`sql_statement_scope` around each request, and :func:`count_sql_statements` makes an
engine add one to the current scope for every statement it executes, its fast reader's
(:mod:`eventstore.reader`) included (code that runs SQL another way can call
:func:`note_sql_statements`). Tests use the scope to count statements.
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import math
import re
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, Final

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.requests import Request
from starlette.responses import Response

from eventstore.reader import on_statement

log = logging.getLogger(__name__)

CONTENT_TYPE: Final = "text/plain; version=0.0.4; charset=utf-8"
LATENCY_BUCKETS: Final = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip
SQL_BUCKETS: Final = (0, 1, 2, 3, 5, 8, 13, 21, 34, 55, 89, 144)
_NAME: Final = re.compile(r"[_A-Za-z][_0-9A-Za-z]{0,99}")
_METRIC_NAME: Final = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")

GaugeValue = float | Mapping[str, float]
GaugeCallback = Callable[[], GaugeValue | Awaitable[GaugeValue]]


# --- SQL statements per request ------------------------------------------------------------

_sql_statements: ContextVar[list[int] | None] = ContextVar("sql_statements", default=None)


@contextlib.contextmanager
def sql_statement_scope() -> Iterator[list[int]]:
    """Count the SQL statements run in this context; the count is ``scope[0]``."""
    counter = [0]
    token = _sql_statements.set(counter)
    try:
        yield counter
    finally:
        _sql_statements.reset(token)


def note_sql_statements(count: int = 1) -> None:
    """Add ``count`` statements to the current scope (if any)."""
    counter = _sql_statements.get()
    if counter is not None:
        counter[0] += count


def count_sql_statements(engine: AsyncEngine | sa.Engine) -> None:
    """Make ``engine`` (and its reader) count each statement it executes in the current scope."""

    def count(*_args: Any, **_kwargs: Any) -> None:
        note_sql_statements(1)

    if isinstance(engine, AsyncEngine):
        on_statement(engine, count)
    else:
        sa.event.listen(engine, "before_cursor_execute", count)


# --- the registry ----------------------------------------------------------------------------


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _number(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if float(value).is_integer() and abs(value) < 1e15:
        return str(int(value))
    return repr(float(value))


class Histogram:
    """Cumulative buckets, a sum and a count, per label value."""

    def __init__(self, buckets: Sequence[float]) -> None:
        self.buckets = tuple(sorted(buckets))
        self.series: dict[str, tuple[list[int], list[float]]] = {}

    def observe(self, label: str, value: float) -> None:
        series = self.series.get(label)
        if series is None:
            series = self.series[label] = ([0] * len(self.buckets), [0.0, 0.0])
        counts, totals = series
        for i, bound in enumerate(self.buckets):
            if value <= bound:
                counts[i] += 1
        totals[0] += value
        totals[1] += 1

    def render(self, name: str, label_name: str | None) -> Iterator[str]:
        for label, (counts, (total, count)) in sorted(self.series.items()):
            base = f'{label_name}="{_escape(label)}",' if label_name else ""
            for bound, bucket in zip(self.buckets, counts, strict=True):
                yield f'{name}_bucket{{{base}le="{_number(bound)}"}} {bucket}'
            yield f'{name}_bucket{{{base}le="+Inf"}} {_number(count)}'
            braces = f"{{{base.rstrip(',')}}}" if base else ""
            yield f"{name}_sum{braces} {_number(total)}"
            yield f"{name}_count{braces} {_number(count)}"


@dataclass(frozen=True, slots=True)
class _Gauge:
    name: str
    help: str
    callback: GaugeCallback
    label: str | None


class Metrics:
    """The API's metrics; one instance per process, rendered by :meth:`endpoint`."""

    def __init__(
        self,
        *,
        latency_buckets: Sequence[float] = LATENCY_BUCKETS,
        sql_buckets: Sequence[float] = SQL_BUCKETS,
        max_operations: int = 200,
    ) -> None:
        self.max_operations = max_operations
        self._requests: dict[tuple[str, str], int] = {}
        self._operations: set[str] = set()
        self._latency = Histogram(latency_buckets)
        self._sql = Histogram(sql_buckets)
        self._sql_total = 0
        self._gauges: list[_Gauge] = []

    def operation_label(self, name: str | None) -> str:
        """A bounded label for a client-given operation name."""
        if not name:
            return "anonymous"
        if name in self._operations:
            return name
        if not _NAME.fullmatch(name) or len(self._operations) >= self.max_operations:
            return "other"
        self._operations.add(name)
        return name

    def observe_request(
        self, operation: str | None, status: int, seconds: float, sql_statements: int = 0
    ) -> None:
        """Record one finished request."""
        label = self.operation_label(operation)
        key = (label, str(status))
        self._requests[key] = self._requests.get(key, 0) + 1
        self._latency.observe(label, seconds)
        self._sql.observe("", float(sql_statements))
        self._sql_total += sql_statements

    def gauge(
        self, name: str, help: str, callback: GaugeCallback, *, label: str | None = None
    ) -> None:
        """Add a gauge read from ``callback`` at each scrape (sync or async).

        The callback returns a number, or {label value: number} when ``label`` names the label
        (e.g. lag per projection). A callback that raises is logged and left out.
        """
        if not _METRIC_NAME.fullmatch(name):
            raise ValueError(f"not a metric name: {name!r}")
        self._gauges.append(_Gauge(name, help, callback, label))

    async def render(self) -> str:
        """The metrics in the Prometheus text format."""
        lines: list[str] = [
            "# HELP graphql_requests_total GraphQL HTTP requests by operation and status.",
            "# TYPE graphql_requests_total counter",
        ]
        for (operation, status), count in sorted(self._requests.items()):
            lines.append(
                f'graphql_requests_total{{operation="{_escape(operation)}",status="{status}"}} '
                f"{count}"
            )
        lines += [
            "# HELP graphql_request_duration_seconds Time to answer a GraphQL HTTP request.",
            "# TYPE graphql_request_duration_seconds histogram",
            *self._latency.render("graphql_request_duration_seconds", "operation"),
            "# HELP graphql_sql_statements_per_request SQL statements run by one request.",
            "# TYPE graphql_sql_statements_per_request histogram",
            *self._sql.render("graphql_sql_statements_per_request", None),
            "# HELP graphql_sql_statements_total SQL statements run by GraphQL requests.",
            "# TYPE graphql_sql_statements_total counter",
            f"graphql_sql_statements_total {self._sql_total}",
        ]
        for gauge in self._gauges:
            try:
                value = gauge.callback()
                if inspect.isawaitable(value):
                    value = await value
            except Exception:
                log.exception("metrics: the callback of %s failed", gauge.name)
                continue
            lines.append(f"# HELP {gauge.name} {gauge.help}")
            lines.append(f"# TYPE {gauge.name} gauge")
            if isinstance(value, Mapping):
                label = gauge.label or "label"
                for key, number in sorted(value.items()):
                    lines.append(f'{gauge.name}{{{label}="{_escape(key)}"}} {_number(number)}')
            else:
                lines.append(f"{gauge.name} {_number(float(value))}")
        return "\n".join(lines) + "\n"

    async def endpoint(self, request: Request) -> Response:
        """A Starlette endpoint for ``/metrics``."""
        return Response(
            await self.render(), media_type=None, headers={"content-type": CONTENT_TYPE}
        )
