"""Request logging: off by default, sampled or full when asked; 5xx responses and slow
requests whatever the mode; uvicorn's own per-request log off under ``statements serve``."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import httpx
import pytest
from starlette.types import Receive, Scope, Send

from graphql_api.cli import commands as cli
from graphql_api.settings import Settings
from graphql_api.transport.access_log import AccessLogMiddleware


async def _app(scope: Scope, receive: Receive, send: Send) -> None:
    """200 at once; ``/slow`` after 50 ms; ``/fail`` answers 503; ``/crash`` raises."""
    path = scope["path"]
    if path == "/slow":
        await asyncio.sleep(0.05)
    if path == "/crash":
        raise RuntimeError("crashed")
    status = 503 if path == "/fail" else 200
    await send({"type": "http.response.start", "status": status, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


async def _lines(caplog: pytest.LogCaptureFixture, paths: list[str], **options: Any) -> list[str]:
    app = AccessLogMiddleware(_app, **options)
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="statements.access"):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            for path in paths:
                await client.get(path)
    return [r.getMessage() for r in caplog.records if r.name == "statements.access"]


async def test_off_logs_only_errors_and_slow_requests(caplog: pytest.LogCaptureFixture) -> None:
    lines = await _lines(caplog, ["/a", "/b?x=1", "/fail", "/slow", "/crash"], slow_ms=30)
    assert len(lines) == 3
    assert '"GET /fail HTTP/1.1" 503' in lines[0]
    assert '"GET /slow HTTP/1.1" 200' in lines[1] and lines[1].endswith(" ms")
    assert '"GET /crash HTTP/1.1" 500' in lines[2]
    levels = {r.levelno for r in caplog.records if r.name == "statements.access"}
    assert levels == {logging.WARNING}


async def test_full_logs_every_request(caplog: pytest.LogCaptureFixture) -> None:
    lines = await _lines(caplog, ["/a", "/b?x=1"], mode="full")
    assert len(lines) == 2
    assert '"GET /a HTTP/1.1" 200' in lines[0]
    assert '"GET /b?x=1 HTTP/1.1" 200' in lines[1]


async def test_sampled_logs_about_its_share(caplog: pytest.LogCaptureFixture) -> None:
    assert await _lines(caplog, ["/a"] * 20, mode="sampled", rate=0.0) == []
    assert len(await _lines(caplog, ["/a"] * 20, mode="sampled", rate=1.0)) == 20
    some = len(await _lines(caplog, ["/a"] * 400, mode="sampled", rate=0.25))
    assert 40 <= some <= 160  # 100 expected; far outside only once in billions of runs


def test_the_settings() -> None:
    default = Settings.from_env({})
    assert (default.access_log, default.access_log_rate, default.slow_request_ms) == (
        "off",
        0.01,
        1000.0,
    )
    chosen = Settings.from_env(
        {
            "STATEMENTS_ACCESS_LOG": " Sampled ",
            "STATEMENTS_ACCESS_LOG_RATE": "0.5",
            "STATEMENTS_SLOW_REQUEST_MS": "250",
        }
    )
    assert (chosen.access_log, chosen.access_log_rate, chosen.slow_request_ms) == (
        "sampled",
        0.5,
        250.0,
    )
    with pytest.raises(ValueError, match="STATEMENTS_ACCESS_LOG must be off, sampled or full"):
        Settings.from_env({"STATEMENTS_ACCESS_LOG": "verbose"})
    with pytest.raises(ValueError, match="STATEMENTS_ACCESS_LOG_RATE must be a share"):
        Settings.from_env({"STATEMENTS_ACCESS_LOG_RATE": "5"})
    with pytest.raises(ValueError, match="STATEMENTS_SLOW_REQUEST_MS must be a number"):
        Settings.from_env({"STATEMENTS_SLOW_REQUEST_MS": "soon"})


def test_serve_turns_uvicorns_access_log_off(monkeypatch: pytest.MonkeyPatch) -> None:
    import uvicorn

    seen: dict[str, Any] = {}
    monkeypatch.setattr(uvicorn, "run", lambda *args, **kwargs: seen.update(kwargs))
    # serve sets both for its workers: restored after the test.
    monkeypatch.setenv("STATEMENTS_DATABASE_URL", "sqlite:///unused.db")
    monkeypatch.setenv("STATEMENTS_PRODUCTION", "")
    assert cli.main(["serve", "--db", "sqlite:///unused.db"]) == 0
    assert seen["access_log"] is False
    assert seen["log_config"]["loggers"]["statements"]["handlers"] == ["default"]
