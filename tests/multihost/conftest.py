"""The multi-host topology as a fixture: built once per test run, removed afterwards (also after
a failure or Ctrl-C; leftovers of a killed run are removed by the next one). Each test starts
again whatever API host an earlier test left dead (``Topology.ensure_running``)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.multihost.netns import unavailable_reason
from tests.multihost.topology import Topology, topology
from tests.reliability.pgcluster import pg_bindir

#: Under CI (.ci/run) a skipped multi-host test is a failure, like a skipped PostgreSQL test.
REQUIRE_ENV = "STATEMENTS_REQUIRE_NETNS"


def skip_reason() -> str | None:
    reason = unavailable_reason()
    if reason is None and pg_bindir() is None:
        reason = "PostgreSQL server binaries (initdb, pg_ctl, pg_basebackup) not found"
    return reason


@pytest.fixture(scope="session")
def topo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Topology]:
    reason = skip_reason()
    if reason is not None:
        pytest.skip(f"multi-host tests need network namespaces: {reason}")
    root: Path = tmp_path_factory.mktemp("multihost")
    workers = int(os.environ.get("STATEMENTS_MULTIHOST_WORKERS", "1"))
    with topology(root, workers=workers) as built:
        yield built
