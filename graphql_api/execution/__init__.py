"""The executor: query plans compiled once per document, and the caches they share.

Only the names below are for use outside this package; its modules are its own business, since
they lean on private internals of graphql-core and Strawberry.
"""

from graphql_api.execution.batch import BATCH, BatchResolver, batched, by_key, each
from graphql_api.execution.executor import CompiledExecutor, PlanCache
from graphql_api.execution.identity_cache import IdentityCache

__all__ = [
    "BATCH",
    "BatchResolver",
    "CompiledExecutor",
    "IdentityCache",
    "PlanCache",
    "batched",
    "by_key",
    "each",
]
