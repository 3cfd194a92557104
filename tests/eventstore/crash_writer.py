"""A writer process for the crash test: appends 1000-event batches and reports each ack."""

from __future__ import annotations

import asyncio
import sys
import uuid

from eventstore import NewEvent, open_store


async def main(url: str, schema: str) -> None:
    options = {"schema": schema} if schema else {}
    store = open_store(url, **options)
    await store.setup()
    print("READY", flush=True)
    while True:
        batch = uuid.uuid4().hex
        events = [
            NewEvent("Crashed", {"i": i, "pad": "x" * 200}, {"batch": batch}) for i in range(1000)
        ]
        result = await store.append(f"batch-{batch}", events)
        # Printed only once the append is acknowledged, i.e. committed.
        print(f"ACK {batch} {result.first_position} {result.last_position}", flush=True)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else ""))
