"""The ``statements`` command line."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any

from eventstore import EventStore
from graphql_api.progress import Progress
from graphql_api.services import Services, open_services
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

    imp = sub.add_parser("import", help="import scraped archive pages (files or folders)")
    _add_db(imp, settings)
    imp.add_argument("paths", nargs="+", metavar="PATH")
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
    import uvicorn

    # Workers are separate processes: they rebuild Settings from the environment we set here.
    os.environ["STATEMENTS_DATABASE_URL"] = args.db
    os.environ["STATEMENTS_PRODUCTION"] = "1" if args.production else ""
    uvicorn.run(
        "graphql_api.app:app_from_env",
        factory=True,
        host=args.host,
        port=args.port,
        workers=args.workers,
        log_level="info",
    )
    return 0


async def _open(args: argparse.Namespace, settings: Settings) -> Services:
    return await open_services(settings.with_changes(database_url=args.db))


async def _demo(args: argparse.Namespace, settings: Settings) -> int:
    from graphql_api.demo import write_demo

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
    from graphql_api.importer import import_paths

    services = await _open(args, settings)
    try:
        report = await import_paths(services.handlers, [Path(p) for p in args.paths])
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
        print(f"head {result.head}")
    return 0 if result.ok else 1


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
        print(f"restored {count:,} events from {args.file}; projections rebuild on next start")
        return 0
    finally:
        await store.close()


COMMANDS: dict[str, Callable[[argparse.Namespace, Settings], int]] = {
    "verify": lambda args, settings: _run(_verify(args, settings)),
    "events": lambda args, settings: _run(_events(args, settings)),
    "serve": _serve,
    "init": lambda args, settings: _run(_init(args, settings)),
    "demo": lambda args, settings: _run(_demo(args, settings)),
    "import": lambda args, settings: _run(_import(args, settings)),
}


def main(argv: Sequence[str] | None = None) -> int:
    settings = Settings.from_env()
    args = build_parser(settings).parse_args(argv)
    try:
        return COMMANDS[args.command](args, settings)
    except KeyboardInterrupt:
        return 130
    except ValueError as exc:
        print(f"statements: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
