"""The RSS measurement's child process: ``python -m bench._rss SPEC``, run by bench.eventstore."""

from __future__ import annotations

import sys

from bench.eventstore import rss_child

if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python -m bench._rss SPEC  (internal; run python -m bench)")
    rss_child(sys.argv[1])
