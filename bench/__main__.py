"""Run the benchmarks: ``python -m bench [--quick | --full] [--only NAME ...]``."""

from __future__ import annotations

import argparse
import importlib
import os
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from bench.common import DEFAULT_PG_URL, PG_URL_ENV, Config, Result, format_table, write_results

#: name -> module; each module has ``run(config) -> list[Result]``.
BENCHMARKS = {
    "eventstore": "bench.eventstore",
    "domain": "bench.domain",
    "projections": "bench.projections",
    "graphql": "bench.graphql",
    "subscriptions": "bench.subscriptions",
    "audit": "bench.audit",
    "search": "bench.search",
    "fanout": "bench.fanout",
    "failover": "bench.failover",
    "scale": "bench.scale",
    "views": "bench.views",
    "ingest": "bench.ingest",
    "merkle": "bench.merkle",
    "site": "bench.site",
    "postgraphile": "bench.postgraphile",
    "replicas": "bench.replicas",
    "commodity": "bench.commodity",
    "importer": "bench.importer",
}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    size = parser.add_mutually_exclusive_group()
    size.add_argument(
        "--quick",
        action="store_true",
        help="a small smoke run (results go to bench/results/NAME-quick.json)",
    )
    size.add_argument(
        "--full",
        action="store_true",
        help="long run: the read_all RSS check reads 1,000,000 events instead of 200,000",
    )
    parser.add_argument(
        "--only",
        action="append",
        choices=sorted(BENCHMARKS),
        metavar="NAME",
        help=f"run only this benchmark (repeatable; one of: {', '.join(sorted(BENCHMARKS))})",
    )
    parser.add_argument(
        "--events",
        type=int,
        default=None,
        metavar="N",
        help="the log's size for the scale benchmark (e.g. 20000000; default 2,000,000, "
        "200,000 with --quick)",
    )
    args = parser.parse_args(argv)
    # The scale benchmark fills millions of events (an hour or more): only when asked for.
    names = args.only or [n for n in BENCHMARKS if n != "scale" or args.events is not None]
    pg_url = os.environ.get(PG_URL_ENV, DEFAULT_PG_URL)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        config = Config(
            quick=args.quick, full=args.full, pg_url=pg_url, tmp_dir=Path(tmp), events=args.events
        )
        for name in names:
            run: Callable[[Config], list[Result]] = importlib.import_module(BENCHMARKS[name]).run
            results = run(config)
            path = write_results(f"{name}-quick" if config.quick else name, results)
            print(f"\n{name} ({config.mode} run; ratio = ours/peer)\n")
            print(format_table(results))
            print(f"\nwritten to {path}")
    print(f"total {time.perf_counter() - started:.0f}s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
