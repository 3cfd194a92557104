"""Host failure across namespaces: while views are recorded and dashboards subscribe, an API
host is killed (every process SIGKILLed) or cut off the network, or the replica is killed.

Each time, from the client host: the projections resume on the surviving host within 10 s,
subscribers move to it with the client's retry policy and never receive a count lower than one
they received, every acknowledged view is in the log, and the read model and every dashboard
end at the log's count.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.multihost.conftest import skip_reason
from tests.multihost.failover import Outcome, make_tokens, under_load
from tests.multihost.topology import REPLICA, Topology, topology

pytestmark = [pytest.mark.multihost]

WRITERS = 4
#: The brief's bound on a failover: projections live again on another host.
TAKEOVER_LIMIT = 10.0


def check_no_view_lost(outcome: Outcome) -> None:
    final = len(outcome.log_positions)
    in_log = set(outcome.log_positions)
    missing = [p for p in outcome.acked if p not in in_log]
    assert not missing, f"acknowledged views not in the log: {missing}"
    # Unacknowledged requests may or may not have been applied, never more than once.
    assert len(outcome.acked) <= final <= len(outcome.acked) + outcome.unacknowledged
    assert outcome.read_model_count == final
    for writer in outcome.writers:
        assert set(writer.refused) <= {"RATE_LIMITED"}, writer.refused


def check_dashboards(outcome: Outcome) -> None:
    final = len(outcome.log_positions)
    for subscriber in outcome.subscribers:
        counts = subscriber.counts
        assert counts == sorted(counts), f"a count went down: {counts}"
        assert counts and counts[-1] == final, (counts[-3:], final)


def check_failover(topo: Topology, outcome: Outcome) -> None:
    print(outcome.summary())
    assert outcome.survivor is not None
    survivor = topo.apis[outcome.survivor]
    assert outcome.takeover is not None, f"no takeover: {outcome.leaders_after}"
    assert outcome.takeover < TAKEOVER_LIMIT, outcome.takeover
    assert outcome.live is not None and outcome.live < TAKEOVER_LIMIT, outcome.live
    assert set(outcome.leaders_after.values()) == {survivor.address}
    # Half the dashboards were on the victim: each moved and ended on the survivor.
    assert len(outcome.moved) >= len(outcome.subscribers) // 2
    for subscriber in outcome.moved:
        assert subscriber.resumed_at, f"never resumed: {subscriber.failures}"
        assert subscriber.host == survivor.ws_url
    check_no_view_lost(outcome)
    check_dashboards(outcome)


def test_a_killed_api_host_fails_over_to_the_other(topo: Topology) -> None:
    topo.ensure_running()
    tokens = make_tokens(topo, WRITERS)
    outcome = topo.run_client(lambda: under_load(topo, tokens, "kill"))
    assert outcome.victim is not None and not topo.apis[outcome.victim].running()
    check_failover(topo, outcome)


def test_a_host_cut_off_the_network_fails_over_to_the_other(topo: Topology) -> None:
    topo.ensure_running()
    tokens = make_tokens(topo, WRITERS)
    try:
        outcome = topo.run_client(lambda: under_load(topo, tokens, "cut"))
    finally:
        for name in topo.apis:
            topo.network.plug(name)
    # The cut host's processes still run, cut off: it is switched off before the next test.
    topo.apis[outcome.victim].power_off()
    check_failover(topo, outcome)


def test_a_killed_replica_disturbs_nothing(topo: Topology) -> None:
    topo.ensure_running()
    assert topo.replica is not None
    tokens = make_tokens(topo, WRITERS)
    outcome = topo.run_client(lambda: under_load(topo, tokens, "replica"))
    print(outcome.summary())
    assert outcome.leaders_after == outcome.leaders_before
    assert not outcome.moved, [s.failures for s in outcome.subscribers]
    assert outcome.unacknowledged == 0
    check_no_view_lost(outcome)
    check_dashboards(outcome)
    # Started again, it catches up with the primary by streaming.
    topo.replica.start()
    deadline = time.monotonic() + 30
    while topo.replica_lag_bytes() != 0:
        assert time.monotonic() < deadline, "the replica did not catch up"
        time.sleep(0.2)
    primary = topo.sql("SELECT count(*) FROM events")[0][0]
    assert topo.sql("SELECT count(*) FROM events", on=REPLICA)[0][0] == primary


@pytest.mark.slow
def test_repeated_failures_with_two_workers_per_host(tmp_path: Path) -> None:
    """The long version: hosts of two workers each, more dashboards and writers, and both
    hosts failing in turn, killed and cut, several times."""
    reason = skip_reason()
    if reason is not None:
        pytest.skip(f"multi-host tests need network namespaces: {reason}")
    with topology(tmp_path, workers=2) as topo:
        for fault in ("kill", "cut", "kill", "cut", "kill", "cut"):
            topo.ensure_running()
            tokens = make_tokens(topo, 8)
            try:
                outcome = topo.run_client(
                    lambda fault=fault, tokens=tokens: under_load(  # type: ignore[misc]
                        topo, tokens, fault, subscribers=20, before=3.0, after=8.0
                    )
                )
            finally:
                for name in topo.apis:
                    topo.network.plug(name)
            topo.apis[outcome.victim].power_off()
            check_failover(topo, outcome)
