"""Prometheus metrics through ``prometheus_client``, summed across workers in multiprocess mode.

* ``graphql_requests_total{operation,status}``: requests by operation name and HTTP status;
* ``graphql_request_duration_seconds{operation}``: a latency histogram;
* ``graphql_sql_statements_per_request``: a histogram of the SQL statements each request ran,
  and ``graphql_sql_statements_total``;
* gauges read from callbacks, e.g. projection lag and open subscriptions.

Operation names are the client's, so they are bounded: only GraphQL names, at most
``max_operations`` distinct ones (later ones count as ``other``); no name is ``anonymous``.

Under ``statements serve --workers N`` each worker is its own process: ``serve`` points
``PROMETHEUS_MULTIPROC_DIR`` at a private directory, every worker writes its values there, and
a scrape (answered by any one worker) adds them all up with ``MultiProcessCollector``. A gauge
of one process's state (open subscriptions) is summed over the live workers, and each worker
refreshes its own every :data:`REFRESH_SECONDS`, as no worker can ask another at scrape time; a
gauge of shared state (projection lag) takes the value most recently read.

SQL statements are counted per request through a context variable: the endpoint opens a
:func:`sql_statement_scope` around each request, and :func:`count_sql_statements` makes an
engine add one to the current scope for every statement it executes, its fast reader's
(:mod:`eventstore.reader`) included (code that runs SQL another way can call
:func:`note_sql_statements`). Tests use the scope to count statements.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import os
import re
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, Final, Literal

import prometheus_client
import sqlalchemy as sa
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.requests import Request
from starlette.responses import Response

from eventstore.reader import on_statement

log = logging.getLogger(__name__)

#: The text format ``generate_latest`` writes; clients negotiate nothing else from us.
CONTENT_TYPE: Final = "text/plain; version=0.0.4; charset=utf-8"
MULTIPROC_DIR: Final = "PROMETHEUS_MULTIPROC_DIR"
REFRESH_SECONDS: Final = 1.0
LATENCY_BUCKETS: Final = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip
SQL_BUCKETS: Final = (0, 1, 2, 3, 5, 8, 13, 21, 34, 55, 89, 144)
_NAME: Final = re.compile(r"[_A-Za-z][_0-9A-Za-z]{0,99}")
_METRIC_NAME: Final = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")

GaugeValue = float | Mapping[str, float]
GaugeCallback = Callable[[], GaugeValue | Awaitable[GaugeValue]]
#: ``livesum``: one process's own state, added up over the live workers; ``mostrecent``: state
#: every worker reads alike (from the database), the latest reading wins.
GaugeMode = Literal["livesum", "mostrecent"]


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


def multiprocess_dir() -> str | None:
    """The directory the workers share their values through, when ``serve`` set one."""
    return os.environ.get(MULTIPROC_DIR) or None


@dataclass(slots=True)
class _Gauge:
    name: str
    mode: GaugeMode
    gauge: Gauge
    callback: GaugeCallback
    labelled: bool
    shown: set[str]


class Metrics:
    """The API's metrics; one instance per process, rendered by :meth:`endpoint`."""

    def __init__(
        self,
        *,
        latency_buckets: Sequence[float] = LATENCY_BUCKETS,
        sql_buckets: Sequence[float] = SQL_BUCKETS,
        max_operations: int = 200,
    ) -> None:
        # Prometheus derives request rates from the counters; the extra ``_created`` series
        # would double what every scrape carries.
        prometheus_client.disable_created_metrics()  # type: ignore[no-untyped-call]
        self.max_operations = max_operations
        self._operations: set[str] = set()
        # A registry per instance, not the global one: tests build several apps in a process.
        self.registry = CollectorRegistry(auto_describe=True)
        self._requests = Counter(
            "graphql_requests",
            "GraphQL HTTP requests by operation and status.",
            ("operation", "status"),
            registry=self.registry,
        )
        self._latency = Histogram(
            "graphql_request_duration_seconds",
            "Time to answer a GraphQL HTTP request.",
            ("operation",),
            buckets=latency_buckets,
            registry=self.registry,
        )
        self._sql = Histogram(
            "graphql_sql_statements_per_request",
            "SQL statements run by one request.",
            buckets=sql_buckets,
            registry=self.registry,
        )
        self._sql_total = Counter(
            "graphql_sql_statements",
            "SQL statements run by GraphQL requests.",
            registry=self.registry,
        )
        self._gauges: list[_Gauge] = []
        # ``labels()`` takes a lock and checks its arguments on every call: each request's
        # series are looked up once per (operation, status) instead, bounded like the labels.
        self._children: dict[tuple[str | None, int], tuple[Any, Any]] = {}

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
        children = self._children.get((operation, status))
        if children is None:
            label = self.operation_label(operation)
            children = self._requests.labels(label, str(status)), self._latency.labels(label)
            if len(self._children) < 4 * self.max_operations:
                self._children[(operation, status)] = children
        children[0].inc()
        children[1].observe(seconds)
        self._sql.observe(sql_statements)
        if sql_statements:
            self._sql_total.inc(sql_statements)

    def gauge(
        self,
        name: str,
        help: str,
        callback: GaugeCallback,
        *,
        label: str | None = None,
        mode: GaugeMode = "livesum",
    ) -> None:
        """Add a gauge read from ``callback`` (sync or async) at each scrape and refresh.

        The callback returns a number, or {label value: number} when ``label`` names the label
        (e.g. lag per projection). A callback that raises is logged and its gauge left as it
        was. ``mode`` says how workers' values add up (see :data:`GaugeMode`).
        """
        if not _METRIC_NAME.fullmatch(name):
            raise ValueError(f"not a metric name: {name!r}")
        gauge = Gauge(
            name,
            help,
            (label,) if label else (),
            registry=self.registry,
            multiprocess_mode=mode,
        )
        self._gauges.append(_Gauge(name, mode, gauge, callback, label is not None, set()))

    async def refresh(
        self, *, modes: frozenset[GaugeMode] = frozenset(("livesum", "mostrecent"))
    ) -> None:
        """Read the callback of every gauge of these modes into its gauge."""
        for entry in self._gauges:
            if entry.mode not in modes:
                continue
            try:
                value = entry.callback()
                if inspect.isawaitable(value):
                    value = await value
            except Exception:
                log.exception("metrics: the callback of %s failed", entry.name)
                continue
            if entry.labelled:
                values = value if isinstance(value, Mapping) else {"": float(value)}
                for gone in entry.shown - values.keys():
                    entry.gauge.remove(gone)
                for key, number in values.items():
                    entry.gauge.labels(key).set(number)
                entry.shown = set(values)
            elif isinstance(value, Mapping):
                log.error("metrics: %s has no label for the values it read", entry.name)
            else:
                entry.gauge.set(float(value))

    async def keep_fresh(self) -> None:
        """Refresh the gauges every :data:`REFRESH_SECONDS`, for the scrapes other workers
        answer (multiprocess mode; a lone process refreshes at each scrape and returns)."""
        if multiprocess_dir() is None:
            return
        while True:
            # Shared state is read by the worker a scrape reaches; only its own state must be
            # kept current by each.
            await self.refresh(modes=frozenset(("livesum",)))
            await asyncio.sleep(REFRESH_SECONDS)

    async def render(self) -> str:
        """The metrics in the Prometheus text format, every worker's added up."""
        await self.refresh()
        registry = self.registry
        if multiprocess_dir() is not None:
            registry = CollectorRegistry()
            MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return prometheus_client.generate_latest(registry).decode()

    async def endpoint(self, request: Request) -> Response:
        """A Starlette endpoint for ``/metrics``."""
        return Response(
            await self.render(), media_type=None, headers={"content-type": CONTENT_TYPE}
        )

    def close(self) -> None:
        """Leave the sums: this process's live gauges stop counting (multiprocess mode only)."""
        if multiprocess_dir() is not None:
            mark_process_dead(os.getpid())  # type: ignore[no-untyped-call]
