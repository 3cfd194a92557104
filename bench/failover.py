"""Failover of an API host: from the kill until its projections are live again on the other
host, and until its dashboards have reconnected there; p50 and max over 5 kills.

The multi-host topology of tests/multihost (network namespaces, needs root): two API hosts on
one PostgreSQL primary, a client host recording views (4 clients, about 6 views/s each) and
watching them (6 viewCount subscribers, half on each host) with the client retry policy of
docs/API.md. Each round kills the host that leads the views projection: every process of it
SIGKILLed ("kill"), or its cable cut with its processes left running ("cut", a host that
vanishes; only TCP keepalives tell PostgreSQL). Then the host is started again for the next
round.

* **projections live**: the surviving host holds every projection's leader lock and the views
  projection has applied an event appended after the fault;
* **dashboards reconnected**: every subscriber that was on the victim has had a value from the
  other host (the slowest of them).

Run: ``python -m bench --only failover`` (``--quick``: 2 rounds of each).
"""

from __future__ import annotations

import functools
import statistics
import tempfile
from pathlib import Path

from bench.common import Config, Result, progress
from tests.multihost.failover import Outcome, make_tokens, under_load
from tests.multihost.netns import unavailable_reason
from tests.multihost.topology import topology

ROUNDS = 5


def _row(label: str, values: list[float]) -> list[Result]:
    if not values:
        return [Result(f"{label}: no value", "postgresql", "s", float("nan"), float("nan"))]
    return [
        Result(f"{label} p50", "postgresql", "s", statistics.median(values), float("nan")),
        Result(f"{label} max", "postgresql", "s", max(values), float("nan")),
    ]


def run(config: Config) -> list[Result]:
    reason = unavailable_reason()
    if reason is not None:
        progress(f"failover: skipped, {reason}")
        return []
    rounds = 2 if config.quick else ROUNDS
    results: list[Result] = []
    with (
        tempfile.TemporaryDirectory(prefix="bench-failover-") as tmp,
        topology(Path(tmp)) as topo,
    ):
        for fault in ("kill", "cut"):
            outcomes: list[Outcome] = []
            for n in range(rounds):
                topo.ensure_running()
                tokens = make_tokens(topo, 4)
                try:
                    outcome = topo.run_client(
                        functools.partial(under_load, topo, tokens, fault, before=2.0, after=3.0)
                    )
                finally:
                    for name in topo.apis:
                        topo.network.plug(name)
                topo.apis[outcome.victim].power_off()
                progress(f"failover round {n + 1}: {outcome.summary()}")
                lost = len(outcome.acked) - len(set(outcome.acked) & set(outcome.log_positions))
                if lost:
                    progress(f"failover: {lost} acknowledged views missing from the log")
                outcomes.append(outcome)
            label = f"{fault} of the leading host ({rounds} rounds)"
            results += _row(
                f"{label}: projections live", [o.live for o in outcomes if o.live is not None]
            )
            results += _row(
                f"{label}: dashboards reconnected",
                [max(o.reconnects()) for o in outcomes if o.reconnects()],
            )
            results.append(
                Result(
                    f"{label}: acknowledged views lost",
                    "postgresql",
                    "count",
                    float(sum(len(set(o.acked) - set(o.log_positions)) for o in outcomes)),
                    0.0,
                )
            )
    return results
