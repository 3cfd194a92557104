"""The site's GraphQL client: runs a page's document in-process, as ``/graphql`` would.

The same schema object (its limits and its executor are extensions of it), the same context
factory (read models, DataLoaders, handlers, the view rate limit) and the same read-your-writes
wait; only the HTTP hop is left out. The site is anonymous: it holds no token.
"""

from __future__ import annotations

import inspect
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from graphql import GraphQLError
from starlette.requests import Request
from strawberry.types.graphql import OperationType

from graphql_api.errors import iter_codes
from graphql_api.schema.api_schema import ApiSchema
from graphql_api.site.documents import SiteDocuments
from graphql_api.transport.http import ContextFactory

_OPERATIONS = frozenset({OperationType.QUERY, OperationType.MUTATION})


class SiteQueryError(Exception):
    """A page's document answered with errors the page cannot show as content."""

    def __init__(self, document: str, errors: list[GraphQLError]) -> None:
        super().__init__(f"{document}: " + "; ".join(error.message for error in errors))
        self.errors = errors
        self.codes = frozenset(iter_codes(errors))


@dataclass
class Answer:
    """What a document returned: its data, and the errors beside it (a partial answer)."""

    data: dict[str, Any]
    errors: list[GraphQLError] = field(default_factory=list)

    @property
    def codes(self) -> frozenset[str]:
        return frozenset(iter_codes(self.errors))


class SiteClient:
    """Runs the site's documents by name for a request."""

    def __init__(
        self, schema: ApiSchema, context_factory: ContextFactory, documents: SiteDocuments
    ) -> None:
        self.schema = schema
        self.context_factory = context_factory
        self.documents = documents

    async def run(
        self, request: Request, name: str, variables: Mapping[str, Any] | None = None
    ) -> Answer:
        """Run the document ``name``; raises :class:`SiteQueryError` when it has no data."""
        document = self.documents[name]
        context = self.context_factory(request, None, str(uuid.uuid4()))
        if inspect.isawaitable(context):
            context = await context
        result = await self.schema.execute(
            document.text,
            variable_values=dict(variables or {}),
            context_value=context,
            allowed_operation_types=_OPERATIONS,
        )
        errors = list(result.errors or [])
        if result.data is None:
            raise SiteQueryError(name, errors)
        return Answer(result.data, errors)
