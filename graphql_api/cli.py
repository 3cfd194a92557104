"""The ``statements`` command line."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

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


COMMANDS: dict[str, Callable[[argparse.Namespace, Settings], int]] = {
    "serve": _serve,
    "init": lambda args, settings: _run(_init(args, settings)),
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
