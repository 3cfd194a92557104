"""Running the domain's deterministic demo commands through the handlers, many at a time."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Iterator

from domain.commands import Command, PublishStatement, WithdrawStatement
from domain.demo import demo_commands
from domain.handlers import StatementHandlers
from graphql_api.service_layer.progress import Progress

WAVE = 400  # commands in flight at once; concurrent appends share one commit (group commit)


async def write_demo(handlers: StatementHandlers, *, statements: int, views: int, seed: int) -> str:
    """Write the demo data set; returns a one-line summary."""
    progress = Progress("demo")
    counts = {"commands": 0, "events": 0, "published": 0}
    commands = demo_commands(statements, views, seed)
    for wave in _waves(commands, WAVE):
        # Publishing first lets the rest of the wave link to statements published in it.
        publishes = [c for c in wave if isinstance(c, PublishStatement)]
        results = await asyncio.gather(*(handlers.handle(c) for c in publishes))
        counts["published"] += len(publishes)
        counts["events"] += sum(r.events_written for r in results)
        chains: dict[str, list[Command]] = defaultdict(list)
        for command in wave:
            if not isinstance(command, PublishStatement):
                chains[command.statement_id].append(command)
        written = await asyncio.gather(*(_in_order(handlers, chain) for chain in chains.values()))
        counts["events"] += sum(written)
        counts["commands"] += len(wave)
        progress.update(**counts)
    progress.done(**counts)
    return (
        f"demo: {counts['published']:,} statements, {counts['commands']:,} commands, "
        f"{counts['events']:,} events (seed {seed})"
    )


async def _in_order(handlers: StatementHandlers, chain: list[Command]) -> int:
    written = 0
    for command in chain:
        written += (await handlers.handle(command)).events_written
    return written


def _waves(commands: Iterator[Command], size: int) -> Iterator[list[Command]]:
    """Commands in waves of ``size``; withdrawals (the demo's last commands) in waves of their
    own, since a wave runs each statement's commands beside the others': a link to a statement
    withdrawn beside it would be refused."""
    wave: list[Command] = []
    for command in commands:
        if wave and isinstance(command, WithdrawStatement) != isinstance(
            wave[-1], WithdrawStatement
        ):
            yield wave
            wave = []
        wave.append(command)
        if len(wave) >= size:
            yield wave
            wave = []
    if wave:
        yield wave
