"""The executor: query plans compiled once per document, and the caches they share.

Only the names below are for use outside this package: its modules lean on private internals
of graphql-core and Strawberry, all reached through :mod:`graphql_api.execution.fence`.
"""

from graphql_api.execution.batch import BATCH, BatchResolver, batched, by_key, each
from graphql_api.execution.fence import (
    FenceReport,
    check,
    executor_class,
    per_event_executor,
    switch_off,
)
from graphql_api.execution.identity_cache import IdentityCache

__all__ = [
    "BATCH",
    "BatchResolver",
    "FenceReport",
    "IdentityCache",
    "batched",
    "by_key",
    "check",
    "each",
    "executor_class",
    "per_event_executor",
    "switch_off",
]
