"""The real graphql-ws npm client, configured with the retry policy docs/API.md shows
(tests/multihost/failover_client.mjs), follows a view count across the loss of the host it is
connected to: it reconnects to the other host, its counts never go down, and it ends at the
log's count."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.graphql_api.js_support import JS_DIR, node_with_packages
from tests.multihost.client import ViewWriter, publish
from tests.multihost.failover import make_tokens
from tests.multihost.topology import API_HOSTS, Topology

pytestmark = [pytest.mark.multihost]

SCRIPT = Path(__file__).with_name("failover_client.mjs")


@pytest.fixture(scope="module")
def node() -> str:
    return node_with_packages()


async def _lines(stream: asyncio.StreamReader, out: list[dict[str, Any]]) -> None:
    while line := await stream.readline():
        out.append(json.loads(line))


def test_the_graphql_ws_client_moves_to_the_other_host(topo: Topology, node: str) -> None:
    topo.ensure_running()
    tokens = make_tokens(topo, 2)
    by_ws = {topo.apis[name].ws_url: name for name in API_HOSTS}
    http_hosts = [topo.apis[name].url for name in API_HOSTS]

    async def scenario() -> tuple[list[dict[str, Any]], list[int], list[ViewWriter], str]:
        async with httpx.AsyncClient(timeout=10) as http:
            sid = await publish(http, http_hosts[0], tokens[0], f"JS failover {time.time_ns()}")
        process = await asyncio.create_subprocess_exec(
            node,
            str(SCRIPT),
            sid,
            *by_ws,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            env={"LIVE_JS_DIR": str(JS_DIR), "PATH": "/usr/bin:/bin"},
        )
        assert process.stdout is not None and process.stdin is not None
        lines: list[dict[str, Any]] = []
        reader = asyncio.create_task(_lines(process.stdout, lines))
        writers = [
            ViewWriter(http_hosts, token, sid, start=i) for i, token in enumerate(tokens[1:])
        ]
        stop = asyncio.Event()
        try:
            deadline = time.monotonic() + 20
            while not any("count" in line for line in lines):
                assert time.monotonic() < deadline, lines
                await asyncio.sleep(0.05)
            victim = by_ws[next(line["connected"] for line in lines if "connected" in line)]
            writing = [asyncio.create_task(w.run(stop)) for w in writers]
            await asyncio.sleep(1.5)
            await asyncio.to_thread(topo.apis[victim].power_off)
            await asyncio.sleep(3.0)
            stop.set()
            await asyncio.gather(*writing)
            rows = await asyncio.to_thread(
                topo.sql,
                "SELECT position FROM events WHERE stream_id = $1 AND type = 'Viewed'",
                f"statement-views-{sid}",
            )
            final = len(rows)
            deadline = time.monotonic() + 15
            while not [line for line in lines if line.get("count") == final]:
                if time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.05)
            process.stdin.write(b"stop\n")
            await process.stdin.drain()
            await asyncio.wait_for(process.wait(), 10)
        finally:
            if process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                await process.wait()
            await reader
        return lines, sorted(int(r[0]) for r in rows), writers, victim

    lines, in_log, writers, victim = topo.run_client(scenario)
    survivor = topo.apis[next(n for n in API_HOSTS if n != victim)].ws_url
    values = [line for line in lines if "count" in line]
    counts = [line["count"] for line in values]
    assert not [line for line in lines if "error" in line], lines
    assert counts == sorted(counts), f"a count went down: {counts}"
    assert counts[-1] == len(in_log), (counts[-3:], len(in_log))
    assert values[-1]["host"] == survivor
    assert [line["connected"] for line in lines if "connected" in line][-1] == survivor
    acked = [p for w in writers for p in w.acked]
    assert acked and set(acked) <= set(in_log)
