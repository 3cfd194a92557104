"""SIGKILL of a writer mid-batch: every batch is all there or not at all; every ack survives."""

from __future__ import annotations

import asyncio
import collections
import os
import random
import signal
import subprocess
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from eventstore import EventStore

Factory = Callable[..., Awaitable[EventStore]]
WRITER = Path(__file__).with_name("crash_writer.py")
ROOT = str(Path(__file__).resolve().parents[2])


async def _run_and_kill(url: str, schema: str, delay: float) -> list[str]:
    env = {**os.environ, "PYTHONPATH": ROOT}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(WRITER),
        url,
        schema,
        stdout=subprocess.PIPE,
        env=env,
    )
    assert proc.stdout is not None
    line = await asyncio.wait_for(proc.stdout.readline(), 30)
    assert line.strip() == b"READY"
    await asyncio.sleep(delay)
    proc.send_signal(signal.SIGKILL)
    output = await proc.stdout.read()
    await proc.wait()
    return [line for line in output.decode().splitlines() if line.startswith("ACK")]


@pytest.mark.parametrize(
    "backend", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
)
async def test_sigkill_mid_batch_leaves_whole_batches(
    store_factory: Factory, database: tuple[str, str]
) -> None:
    url, schema = database
    rng = random.Random(7)
    acked: dict[str, tuple[int, int]] = {}
    for _ in range(3):
        for line in await _run_and_kill(url, schema, rng.uniform(0.3, 1.2)):
            _, batch, first, last = line.split()
            acked[batch] = (int(first), int(last))
    store = await store_factory()
    per_batch: collections.Counter[str] = collections.Counter()
    positions = []
    async for record in store.read_all():
        per_batch[record.metadata["batch"]] += 1
        positions.append(record.position)
    assert acked, "the writer never got an acknowledgement"
    assert positions == list(range(1, len(positions) + 1))
    assert all(count == 1000 for count in per_batch.values()), "a batch was torn"
    for batch, (first, last) in acked.items():
        assert per_batch[batch] == 1000, f"acknowledged batch {batch} is missing"
        records = await store.load_stream(f"batch-{batch}")
        assert (records[0].position, records[-1].position) == (first, last)
