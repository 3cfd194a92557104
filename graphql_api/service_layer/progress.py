"""A progress line for long CLI runs: redrawn in place on a terminal, a line at times otherwise."""

from __future__ import annotations

import sys
import time
from typing import TextIO


class Progress:
    """Reports counters at most a few times a second.

    With a ``total`` and the name of the counter that moves towards it (``unit``), the line
    also shows that counter's rate and the time left at that rate.
    """

    def __init__(
        self,
        label: str,
        stream: TextIO | None = None,
        every: float = 0.5,
        *,
        total: int | None = None,
        unit: str | None = None,
    ) -> None:
        self.label = label
        self.stream = stream if stream is not None else sys.stderr
        self.every = every
        self.total = total
        self.unit = unit
        self._tty = self.stream.isatty()
        self.started = time.monotonic()
        # The first line waits one interval too: a short run prints its final line only.
        self._last = self.started
        self._drawn: dict[str, int] | None = None

    def update(self, **counters: int) -> None:
        self._draw(counters, force=False)

    def done(self, **counters: int) -> None:
        if self._tty or counters != self._drawn:
            # Off a terminal every line stays: the final one is written unless it is there.
            self._draw(counters, force=True)
        if self._tty:
            self.stream.write("\n")
            self.stream.flush()

    def _draw(self, counters: dict[str, int], force: bool) -> None:
        now = time.monotonic()
        if not force and now - self._last < (self.every if self._tty else 5.0):
            return
        self._last = now
        self._drawn = dict(counters)
        text = ", ".join(
            f"{name} {value:,}/{self.total:,}"
            if name == self.unit and self.total is not None
            else f"{name} {value:,}"
            for name, value in counters.items()
        )
        elapsed = now - self.started
        line = f"{self.label}: {text} ({elapsed:.1f}s{self._pace(counters, elapsed)})"
        if self._tty:
            self.stream.write("\r\x1b[K" + line)
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def _pace(self, counters: dict[str, int], elapsed: float) -> str:
        if self.unit is None or self.unit not in counters or elapsed <= 0:
            return ""
        done = counters[self.unit]
        rate = done / elapsed
        pace = f", {rate:,.0f} {self.unit}/s"
        if self.total is not None and rate > 0 and done < self.total:
            pace += f", about {(self.total - done) / rate:,.0f}s left"
        return pace
