"""The ``statements`` command line."""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import sys
import tempfile
from collections.abc import Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any

from eventstore import EventStore
from graphql_api.bootstrap import Services, open_services
from graphql_api.cli import transparency as cli_transparency
from graphql_api.service_layer.progress import Progress
from graphql_api.settings import Settings


def _add_db(parser: argparse.ArgumentParser, settings: Settings) -> None:
    parser.add_argument(
        "--db",
        default=settings.database_url,
        metavar="URL",
        help="database URL: sqlite:///FILE or postgresql://... "
        "(default: $STATEMENTS_DATABASE_URL, else sqlite:///./statements.db)",
    )


def build_parser(settings: Settings) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="statements", description="Event-sourced official statements with a GraphQL API."
    )
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="serve GraphQL over HTTP")
    _add_db(serve, settings)
    serve.add_argument("--host", default=settings.host)
    serve.add_argument("--port", type=int, default=settings.port)
    serve.add_argument("--workers", type=int, default=settings.workers)
    serve.add_argument("--production", action="store_true", default=settings.production)
    serve.add_argument(
        "--loop",
        choices=("asyncio", "uvloop"),
        default="asyncio",
        help="event loop (default asyncio: it serves connections in turn; docs/DECISIONS.md)",
    )

    init = sub.add_parser("init", help="create or upgrade the database schema")
    _add_db(init, settings)

    demo = sub.add_parser("demo", help="write deterministic demo data through the commands")
    _add_db(demo, settings)
    demo.add_argument("--statements", type=int, default=1000, metavar="N")
    demo.add_argument("--views", type=int, default=100_000, metavar="M")
    demo.add_argument("--seed", type=int, default=1)
    demo.add_argument(
        "--if-empty", action="store_true", help="do nothing when the log already has events"
    )

    verify = sub.add_parser("verify", help="recompute the hash chain of the log")
    _add_db(verify, settings)
    verify.add_argument("--from", dest="from_position", type=int, default=1, metavar="P")
    verify.add_argument("--to", dest="to_position", type=int, default=None, metavar="P")
    verify.add_argument("--expect-head", default=None, metavar="POSITION:HASH")

    events = sub.add_parser("events", help="export or restore the raw log")
    events_sub = events.add_subparsers(dest="events_command", required=True)
    export = events_sub.add_parser("export", help="stream the log as JSON lines")
    _add_db(export, settings)
    export.add_argument("--out", type=Path, default=None, metavar="FILE.jsonl[.gz]")
    export.add_argument("--from", dest="from_position", type=int, default=1, metavar="P")
    restore = events_sub.add_parser("import", help="restore an export into an empty database")
    _add_db(restore, settings)
    restore.add_argument("file", type=Path)

    proj = sub.add_parser("projections", help="read-model projections: status and rebuild")
    proj_sub = proj.add_subparsers(dest="projections_command", required=True)
    status = proj_sub.add_parser("status", help="position, head, lag and errors of each")
    _add_db(status, settings)
    rebuild = proj_sub.add_parser("rebuild", help="rebuild from position 0 aside, then swap in")
    _add_db(rebuild, settings)
    rebuild.add_argument("name", nargs="?", default=None, help="one projection (default: all)")
    retry = proj_sub.add_parser("retry", help="resume a failed projection from its failed event")
    _add_db(retry, settings)
    retry.add_argument("name")

    token = sub.add_parser("token", help="API tokens: create, revoke, list")
    token_sub = token.add_subparsers(dest="token_command", required=True)
    create = token_sub.add_parser("create", help="make a token and print it once")
    _add_db(create, settings)
    create.add_argument(
        "--role",
        required=True,
        choices=["editor", "auditor", "ingest"],
        help="editor: every mutation but recordViews; auditor: the audit fields; ingest: "
        "recordView and recordViews for many readers, under a per-token limit "
        "(STATEMENTS_INGEST_VIEW_RATE/_BURST)",
    )
    create.add_argument("--name", required=True)
    create.add_argument("--expires-in-days", type=float, default=None, metavar="DAYS")
    revoke = token_sub.add_parser("revoke", help="revoke a token by name or id")
    _add_db(revoke, settings)
    revoke.add_argument("name")
    listing = token_sub.add_parser("list", help="list tokens (never their secrets)")
    _add_db(listing, settings)

    imp = sub.add_parser("import", help="import scraped archive pages (files or folders)")
    _add_db(imp, settings)
    imp.add_argument("paths", nargs="+", metavar="PATH")
    imp.add_argument(
        "--workers",
        type=int,
        choices=range(1, 65),
        default=1,
        metavar="N",
        help="processes that parse pages (default 1: more pay only on idle cores)",
    )

    schema = sub.add_parser(
        "schema", help="print the GraphQL schema (SDL) the server serves, for code generators"
    )
    schema.add_argument("--out", type=Path, default=None, metavar="FILE")

    cli_transparency.add_parsers(sub, settings, _add_db)
    return parser


def _run(coro: Coroutine[Any, Any, int]) -> int:
    return asyncio.run(coro)


async def _init(args: argparse.Namespace, settings: Settings) -> int:
    from eventstore import open_store

    store = open_store(args.db)
    try:
        await store.setup()
    finally:
        await store.close()
    print(f"schema ready in {args.db}")
    return 0


def _serve(args: argparse.Namespace, settings: Settings) -> int:
    from graphql_api.metrics import MULTIPROC_DIR

    # Workers are separate processes: they rebuild Settings from the environment we set here.
    os.environ["STATEMENTS_DATABASE_URL"] = args.db
    os.environ["STATEMENTS_PRODUCTION"] = "1" if args.production else ""
    if args.workers <= 1:
        _run_uvicorn(args, settings)
        return 0
    # Each worker writes its metrics into this directory and a scrape adds them all up
    # (graphql_api/metrics.py); a private, new one, so nothing of another run is counted.
    _remove_stale_metrics_dirs()
    metrics_dir = tempfile.mkdtemp(prefix=f"{_METRICS_DIR_PREFIX}{os.getpid()}-")
    os.environ[MULTIPROC_DIR] = metrics_dir
    try:
        _run_uvicorn(args, settings)
    finally:
        os.environ.pop(MULTIPROC_DIR, None)
        shutil.rmtree(metrics_dir, ignore_errors=True)
    return 0


_METRICS_DIR_PREFIX = "statements-metrics-"


def _remove_stale_metrics_dirs() -> None:
    """Remove the metrics directories of servers that were killed before they could."""
    for path in Path(tempfile.gettempdir()).glob(f"{_METRICS_DIR_PREFIX}*-*"):
        pid = path.name.removeprefix(_METRICS_DIR_PREFIX).partition("-")[0]
        if pid.isdigit() and not _running(int(pid)):
            shutil.rmtree(path, ignore_errors=True)


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def _run_uvicorn(args: argparse.Namespace, settings: Settings) -> None:
    import uvicorn

    uvicorn.run(
        "graphql_api.app:app_from_env",
        factory=True,
        host=args.host,
        port=args.port,
        workers=args.workers,
        # asyncio's loop, not uvloop, unless asked: under saturation uvloop left some
        # connections unserved for seconds at the same throughput (docs/DECISIONS.md).
        # httptools still parses HTTP either way.
        loop=args.loop,
        # The app's cap, enforced again by uvicorn from the frame's header: a larger frame
        # is refused (1009) without being buffered, where the app would see it only whole.
        ws_max_size=settings.max_request_bytes,
        # No permessage-deflate: a compressed frame's header tells nothing of the message's
        # size, so each oversized message was inflated up to the cap before being refused,
        # and websockets keeps that copy in a reference cycle (its exception's traceback)
        # until the next full garbage collection. Compression also costs zlib state on every
        # connection, and the payloads are small JSON.
        ws_per_message_deflate=False,
        # The app reads X-Forwarded-For itself, from STATEMENTS_TRUSTED_PROXIES only; uvicorn's
        # default would believe it from 127.0.0.1, so that any local client could pick its
        # rate-limit key.
        proxy_headers=False,
        log_level="info",
        # Request lines come from the app's own access log (STATEMENTS_ACCESS_LOG: off by
        # default, errors and slow requests always), through uvicorn's handlers.
        access_log=False,
        log_config=_log_config(),
    )


def _log_config() -> dict[str, Any]:
    """uvicorn's logging configuration, with the app's loggers on its default handler."""
    import copy

    from uvicorn.config import LOGGING_CONFIG

    config = copy.deepcopy(LOGGING_CONFIG)
    config["loggers"]["statements"] = {"handlers": ["default"], "level": "INFO", "propagate": False}
    return config


def _schema(args: argparse.Namespace, settings: Settings) -> int:
    from graphql_api.app import api_schema

    sdl = api_schema().as_str() + "\n"
    if args.out is None:
        sys.stdout.write(sdl)
        return 0
    try:
        args.out.write_text(sdl, encoding="utf-8")
    except OSError as exc:
        print(f"statements schema: --out: {exc}", file=sys.stderr)
        return 1
    print(f"schema written to {args.out}", file=sys.stderr)
    return 0


async def _open(args: argparse.Namespace, settings: Settings) -> Services:
    return await open_services(settings.with_changes(database_url=args.db))


async def _demo(args: argparse.Namespace, settings: Settings) -> int:
    from graphql_api.service_layer.demo_loader import write_demo

    services = await _open(args, settings)
    try:
        head = await services.store.head_position()
        if args.if_empty and head > 0:
            print(f"{args.db} already holds {head:,} events; demo data not loaded")
            return 0
        summary = await write_demo(
            services.handlers, statements=args.statements, views=args.views, seed=args.seed
        )
        print(summary)
    finally:
        await services.close()
    return 0


async def _import(args: argparse.Namespace, settings: Settings) -> int:
    from graphql_api.service_layer.archive_import import import_paths

    services = await _open(args, settings)
    try:
        report = await import_paths(
            services.handlers,
            [Path(p) for p in args.paths],
            engine=services.engine,
            workers=args.workers,
        )
    finally:
        await services.close()
    for failure in report.failures:
        print(f"statements import: {failure}", file=sys.stderr)
    print(report.summary_line())
    return 1 if report.failures else 0


async def _open_store(args: argparse.Namespace, settings: Settings) -> EventStore:
    from eventstore import open_store

    options = {"schema": settings.database_schema} if settings.database_schema else {}
    store = open_store(args.db, **options)
    await store.setup()
    return store


async def _verify(args: argparse.Namespace, settings: Settings) -> int:
    from eventstore.audit import Anchor, verify

    expect = Anchor.parse(args.expect_head) if args.expect_head else None
    store = await _open_store(args, settings)
    progress = Progress("verify")
    try:
        result = await verify(
            store,
            args.from_position,
            args.to_position,
            expect,
            lambda checked, position: progress.update(events=checked, position=position),
        )
    finally:
        await store.close()
    progress.done(events=result.checked, position=result.head.position)
    print(result.describe())
    if result.ok:
        print(f"Merkle tree sound: root {result.root.hex()} of {result.head.position:,} events")
        # Last, alone: scripts take the anchor from the end of the output.
        print(f"head {result.head}")
    return 0 if result.ok else 1


async def _with_store(
    command: Callable[[argparse.Namespace, Settings, EventStore], Coroutine[Any, Any, int]],
    args: argparse.Namespace,
    settings: Settings,
) -> int:
    store = await _open_store(args, settings)
    try:
        return await command(args, settings, store)
    finally:
        await store.close()


async def _events(args: argparse.Namespace, settings: Settings) -> int:
    from eventstore.audit import RestoreError, export_file, restore_file

    store = await _open_store(args, settings)
    try:
        if args.events_command == "export":
            count = await export_file(store, args.out, args.from_position)
            print(f"exported {count:,} events", file=sys.stderr)
            return 0
        try:
            count = await restore_file(store, args.file)
        except (RestoreError, OSError) as exc:
            print(f"statements events import: {exc}; nothing was written", file=sys.stderr)
            return 1
        print(f"restored {count:,} events from {args.file}")
    finally:
        await store.close()
    # The restored log is the truth now: build every read model from it.
    return await _projections(
        argparse.Namespace(db=args.db, projections_command="rebuild", name=None), settings
    )


async def _projections(args: argparse.Namespace, settings: Settings) -> int:
    from eventstore.projection import (
        projection_status,
        rebuild_many,
        retry_projection,
        setup_checkpoints,
    )
    from projections import all_projections

    services = await _open(args, settings)
    try:
        await setup_checkpoints(services.engine)
        projections = all_projections()
        if args.projections_command == "status":
            rows = await projection_status(services.store, services.engine, projections)
            print(
                f"{'projection':<12} {'status':<10} {'position':>10} {'head':>10} "
                f"{'lag':>8} {'lag s':>8}  error"
            )
            for row in rows:
                error = f"at {row.error_position}: {row.error}" if row.error else ""
                print(
                    f"{row.name:<12} {row.status:<10} {row.position:>10,} {row.head:>10,} "
                    f"{row.lag_events:>8,} {row.lag_seconds:>8.1f}  {error}"
                )
            return 1 if any(row.status == "failed" for row in rows) else 0
        if args.projections_command == "retry":
            if not await retry_projection(services.engine, args.name):
                print(f"statements: projection {args.name!r} is not failed", file=sys.stderr)
                return 1
            print(f"{args.name}: will resume from its failed event")
            return 0
        chosen = [p for p in projections if args.name in (None, p.name)]
        if not chosen:
            names = ", ".join(p.name for p in projections)
            print(f"statements: no projection {args.name!r} (one of: {names})", file=sys.stderr)
            return 2
        # One pass over the log for all of them: each event is read and decoded once.
        progress = Progress("rebuild " + ", ".join(p.name for p in chosen))
        positions = await rebuild_many(services.store, services.engine, chosen)
        progress.done(position=max(positions.values(), default=0))
        return 0
    finally:
        await services.close()


async def _token(args: argparse.Namespace, settings: Settings) -> int:
    from datetime import timedelta

    from graphql_api.security.auth import create_token, list_tokens, revoke_token, setup_tokens

    services = await _open(args, settings)
    try:
        await setup_tokens(services.engine)
        if args.token_command == "create":
            expires = (
                timedelta(days=args.expires_in_days) if args.expires_in_days is not None else None
            )
            plaintext, record = await create_token(services.engine, args.role, args.name, expires)
            print(plaintext)
            print(
                f"token {record.name!r} ({record.role}) created; it is shown only this once",
                file=sys.stderr,
            )
            return 0
        if args.token_command == "revoke":
            revoked = await revoke_token(services.engine, args.name)
            if revoked is None:
                print(f"statements: no token named {args.name!r}", file=sys.stderr)
                return 1
            print(f"token {revoked.name!r} revoked")
            return 0
        for record in await list_tokens(services.engine):
            state = "revoked" if record.revoked_at else "active"
            until = record.expires_at.isoformat() if record.expires_at else "never"
            print(f"{record.id}  {record.name:<24} {record.role:<8} {state:<8} expires {until}")
        return 0
    finally:
        await services.close()


COMMANDS: dict[str, Callable[[argparse.Namespace, Settings], int]] = {
    "projections": lambda args, settings: _run(_projections(args, settings)),
    "token": lambda args, settings: _run(_token(args, settings)),
    "verify": lambda args, settings: _run(_verify(args, settings)),
    "events": lambda args, settings: _run(_events(args, settings)),
    "serve": _serve,
    "schema": _schema,
    "init": lambda args, settings: _run(_init(args, settings)),
    "demo": lambda args, settings: _run(_demo(args, settings)),
    "import": lambda args, settings: _run(_import(args, settings)),
    "keys": cli_transparency.keys,
    "checkpoint": lambda args, settings: _run(
        _with_store(cli_transparency.checkpoint, args, settings)
    ),
    "prove": lambda args, settings: _run(_with_store(cli_transparency.prove, args, settings)),
}


def main(argv: Sequence[str] | None = None) -> int:
    try:
        settings = Settings.from_env()
    except ValueError as exc:
        print(f"statements: error: {exc}", file=sys.stderr)
        return 2
    args = build_parser(settings).parse_args(argv)
    try:
        return COMMANDS[args.command](args, settings)
    except KeyboardInterrupt:
        return 130
    except ValueError as exc:
        print(f"statements: error: {exc}", file=sys.stderr)
        return 2
