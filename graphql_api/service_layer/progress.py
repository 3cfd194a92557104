"""A progress line for long CLI runs: redrawn in place on a terminal, a line at times otherwise."""

from __future__ import annotations

import sys
import time
from typing import TextIO


class Progress:
    """Reports counters at most a few times a second."""

    def __init__(self, label: str, stream: TextIO | None = None, every: float = 0.5) -> None:
        self.label = label
        self.stream = stream if stream is not None else sys.stderr
        self.every = every
        self._last = 0.0
        self._tty = self.stream.isatty()
        self.started = time.monotonic()

    def update(self, **counters: int) -> None:
        self._draw(counters, force=False)

    def done(self, **counters: int) -> None:
        self._draw(counters, force=True)
        if self._tty:
            self.stream.write("\n")
            self.stream.flush()

    def _draw(self, counters: dict[str, int], force: bool) -> None:
        now = time.monotonic()
        if not force and now - self._last < (self.every if self._tty else 5.0):
            return
        self._last = now
        text = ", ".join(f"{name} {value:,}" for name, value in counters.items())
        elapsed = now - self.started
        line = f"{self.label}: {text} ({elapsed:.1f}s)"
        if self._tty:
            self.stream.write("\r\x1b[K" + line)
        else:
            self.stream.write(line + "\n")
        self.stream.flush()
