"""Query operations over HTTP read the copy of the read models the replica router chooses.

:class:`~projections.replicas.ReplicaRouter` (opened by the bootstrap when
``STATEMENTS_READ_REPLICA_URLS`` names replicas) is asked once per query operation, with the
request's ``X-Min-Position``, when the operation's type is known. Mutations, subscriptions and
whatever a WebSocket carries keep the primary's read models (a mutation's payload reads what the
primary's read models were waited for), and so does anything served from the event store
(proofs, ``verifyLog``, time travel), which is on the primary.
"""

from __future__ import annotations

from collections.abc import Iterator

from strawberry.extensions import SchemaExtension
from strawberry.types.graphql import OperationType

from graphql_api.service_layer.consistency import MIN_POSITION_HEADER, parse_min_position
from projections.replicas import ReplicaRouter


class ReadFromReplicas(SchemaExtension):
    """Gives a query operation the read models the router chooses for its request.

    The context starts with the primary's read models and no loaders (they are made on first
    use, from whichever read models the context holds by then).
    """

    def on_execute(self) -> Iterator[None]:
        execution = self.execution_context
        context = execution.context
        router = getattr(context, "replicas", None)
        request = getattr(context, "request", None)
        if (
            isinstance(router, ReplicaRouter)
            and execution.operation_type == OperationType.QUERY
            # A context of its own per request: a WebSocket's serves every operation of the
            # connection, mutations too, so its operations keep the primary.
            and request is not None
            and request.scope.get("type") == "http"
        ):
            try:
                position = parse_min_position(request.headers.get(MIN_POSITION_HEADER))
            except ValueError:
                position = None  # the HTTP endpoint refuses it before executing anything
            context.read_models = router.choose(position)
        yield
