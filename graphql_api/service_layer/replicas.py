"""Reads from streaming replicas (``STATEMENTS_READ_REPLICA_URLS``): opening the router.

:class:`~projections.replicas.ReplicaRouter` decides which copy of the read models answers; this
module opens it from the settings and shows it on ``/metrics``. The schema asks it once per
query operation (:class:`graphql_api.schema.replicas.ReadFromReplicas`).
"""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import urlsplit

from eventstore.urls import backend_of, create_engine
from eventstore.watcher import CheckpointWatcher
from graphql_api.metrics import Metrics, count_sql_statements
from graphql_api.settings import Settings
from projections.read_models import ReadModels
from projections.replicas import Replica, ReplicaRouter


def replica_name(url: str) -> str:
    """How a replica is named in logs and metrics: host:port/database, no credentials."""
    parts = urlsplit(url)
    return f"{parts.hostname}:{parts.port or 5432}{parts.path or '/'}"


def open_replicas(
    settings: Settings, primary: ReadModels, watcher: CheckpointWatcher
) -> ReplicaRouter | None:
    """The router over the settings' replicas (None without any); nothing connects yet."""
    if not settings.read_replica_urls:
        return None
    if backend_of(settings.database_url) != "postgresql":
        raise ValueError(
            "STATEMENTS_READ_REPLICA_URLS: read replicas need a PostgreSQL primary "
            "(STATEMENTS_DATABASE_URL)"
        )
    engines = []
    for url in settings.read_replica_urls:
        engine = create_engine(url, schema=settings.database_schema)
        count_sql_statements(engine)
        engines.append((replica_name(url), engine))
    return ReplicaRouter(primary, watcher, engines, max_lag=settings.replica_max_lag)


def replica_metrics(metrics: Metrics, router: Callable[[], ReplicaRouter | None]) -> None:
    """Reads per target and each replica's lag and health, on /metrics (``router()`` is the
    app's router once it has started)."""

    def per_replica(value: Callable[[Replica], float]) -> Callable[[], dict[str, float]]:
        def read() -> dict[str, float]:
            current = router()
            return {} if current is None else {r.name: value(r) for r in current.replicas}

        return read

    def reads() -> dict[str, float]:
        current = router()
        return {} if current is None else {k: float(v) for k, v in current.reads().items()}

    metrics.gauge(
        "statements_read_target_queries",
        "Query operations answered by the primary's or a replica's read models since start",
        reads,
        label="target",
    )
    metrics.gauge(
        "statements_replica_lag_seconds",
        "Seconds since the primary's read models first went past what the replica shows",
        per_replica(lambda r: r.lag_seconds),
        label="replica",
    )
    metrics.gauge(
        "statements_replica_lag_positions",
        "Log positions by which the replica's read models trail the primary's",
        per_replica(lambda r: float(r.lag_positions)),
        label="replica",
    )
    metrics.gauge(
        "statements_replica_healthy",
        "1 while the replica answers queries, 0 while it is left out",
        per_replica(lambda r: float(r.healthy)),
        label="replica",
    )
