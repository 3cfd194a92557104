"""The ``statements`` command line (the console script's entry point is :func:`main`)."""

from graphql_api.cli.commands import main

__all__ = ["main"]
