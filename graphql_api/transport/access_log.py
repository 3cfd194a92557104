"""Request logging: off, sampled or full, and errors and slow requests always.

A line per request was the largest write of a busy server (635,000 lines, 38 MB in one
benchmark run) and cost the event loop a formatted write per request. Request counts, latency
and errors are on ``/metrics``; the log keeps what an operator reads one by one: responses with
a 5xx status, and requests slower than ``slow_ms``. Besides those, ``sampled`` logs each
request with probability ``rate`` and ``full`` logs every one. uvicorn's own access log is off
(``statements serve``); lines go to the ``statements.access`` logger.
"""

from __future__ import annotations

import logging
import random
import time
from typing import Final

from starlette.types import ASGIApp, Message, Receive, Scope, Send

OFF: Final = "off"
SAMPLED: Final = "sampled"
FULL: Final = "full"
MODES: Final = (OFF, SAMPLED, FULL)

DEFAULT_SAMPLE_RATE: Final = 0.01
DEFAULT_SLOW_REQUEST_MS: Final = 1000.0

log = logging.getLogger("statements.access")


class AccessLogMiddleware:
    """Times every HTTP request and logs those the mode, its status or its time call for."""

    def __init__(
        self,
        app: ASGIApp,
        mode: str = OFF,
        rate: float = DEFAULT_SAMPLE_RATE,
        slow_ms: float = DEFAULT_SLOW_REQUEST_MS,
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}, not {mode!r}")
        if not 0.0 <= rate <= 1.0:
            raise ValueError(f"rate must be between 0 and 1, not {rate}")
        self.app = app
        self.mode = mode
        self.rate = rate if mode == SAMPLED else (1.0 if mode == FULL else 0.0)
        self.slow_s = slow_ms / 1000.0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # unless a response starts: an exception ends the request without one

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            elapsed = time.perf_counter() - started
            if status >= 500 or elapsed >= self.slow_s:
                self._line(logging.WARNING, scope, status, elapsed)
            elif self.rate and (self.rate >= 1.0 or random.random() < self.rate):
                self._line(logging.INFO, scope, status, elapsed)

    @staticmethod
    def _line(level: int, scope: Scope, status: int, elapsed: float) -> None:
        client = scope.get("client")
        address = f"{client[0]}:{client[1]}" if client else "-"
        query = scope.get("query_string", b"")
        path = scope.get("path", "")
        if query:
            path = f"{path}?{query.decode('latin-1')}"
        log.log(
            level,
            '%s - "%s %s HTTP/%s" %d %.1f ms',
            address,
            scope.get("method", ""),
            path,
            scope.get("http_version", "1.1"),
            status,
            elapsed * 1000.0,
        )
