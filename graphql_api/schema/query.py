"""The Query type: statements, ministers, topics, the archive, views, Relay nodes, and the audit
fields (auditor role).

Resolvers translate arguments and pick a source; the read models (through the request's
loaders, :mod:`graphql_api.schema.loaders`) and the log (:mod:`graphql_api.service_layer.asof`,
:mod:`graphql_api.service_layer.logview`, :mod:`eventstore.audit`) do the work. Lists leave
withdrawn statements out; ``statement`` and ``node`` return them with ``withdrawn: true``. Unknown
ids give null. A bad argument (cursor, page size, date range, ...) is ``BAD_USER_INPUT``; the audit
fields and time travel need a token with the auditor role (``UNAUTHENTICATED`` without a
token, ``FORBIDDEN`` with another role).

Build the schema with ``build_schema(Query, types=QUERY_TYPES)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime
from typing import Annotated, Final

import strawberry
from graphql import FieldNode
from strawberry.types.nodes import FragmentSpread, InlineFragment, SelectedField, Selection

from eventstore.audit import Anchor, verify
from graphql_api.errors import BadUserInput
from graphql_api.execution import IdentityCache, batched, each
from graphql_api.schema.ids import (
    StatementRef,
    minister_id_of,
    parse_global_id,
    statement_ref,
    topic_slug_of,
)
from graphql_api.schema.loaders import (
    Info,
    invalid_input,
    loaders_of,
    read,
    read_models_of,
    registry_of,
    store_of,
)
from graphql_api.schema.transparency import (
    ConsistencyProof,
    InclusionProof,
    LogCheckpoint,
    resolve_consistency_proof,
    resolve_inclusion_proof,
    resolve_log_checkpoint,
)
from graphql_api.schema.types.archive_month import ArchiveMonth
from graphql_api.schema.types.audit import LogHead, RawEventConnection, Verification
from graphql_api.schema.types.connection import Connection, selects_total
from graphql_api.schema.types.minister import Minister
from graphql_api.schema.types.node import MINISTER, STATEMENT, Node
from graphql_api.schema.types.statement import (
    AUDITOR,
    Statement,
    StatementConnection,
    statement_connection,
)
from graphql_api.schema.types.statement_filter import StatementFilterInput
from graphql_api.schema.types.statement_order import StatementOrderBy
from graphql_api.schema.types.topic import Topic
from graphql_api.schema.types.views import ViewedStatement
from graphql_api.security.auth import require_role
from graphql_api.service_layer.asof import Moment, statement_as_of, statement_id_for_slug
from graphql_api.service_layer.logview import read_events

#: The Node implementations, for ``build_schema(types=...)`` (``node`` may return each).
QUERY_TYPES: Final[tuple[type, ...]] = (Statement, Minister, Topic)
DEFAULT_MOST_VIEWED: Final = 10
#: Statement fields that need the views of a statement replayed from the log.
_VIEW_FIELDS: Final = frozenset({"viewCount", "viewsByDay"})


# --- statements ------------------------------------------------------------------------------


def _named(id: strawberry.ID | None, slug: str | None) -> StatementRef | None:
    """The statement ``statement(id:, slug:)`` names by id (None when it names it by slug)."""
    if (id is None) == (slug is None):
        raise BadUserInput("statement: give exactly one of id and slug")
    return statement_ref(id, "id") if id is not None else None


async def _statement(
    info: Info,
    id: strawberry.ID | None = None,
    slug: str | None = None,
    as_of: datetime | None = None,
    at_position: int | None = None,
) -> Statement | None:
    ref = _named(id, slug)
    if as_of is not None or at_position is not None or (ref is not None and ref.dated):
        return await _statement_then(info, ref, slug, as_of, at_position)
    loaders = loaders_of(info)
    if ref is not None:
        row = await loaders.statement_by_id.load(ref.statement_id)
    else:
        assert slug is not None
        row = await loaders.statement_by_slug.load(slug)
    return Statement.from_row(row) if row is not None else None


#: The fields of a statement that its page read (``ReadModels.statement_page``) brings along.
_PAGE_FIELDS: Final = frozenset({"minister", "topics", "related"})
_SELECTS_PAGE: IdentityCache[bool] = IdentityCache()


def _selects_page(info: Info) -> bool:
    """Whether the statement field selects its minister, topics or related statements
    (conservatively: a fragment counts as selecting them). Remembered per field node."""
    raw = info._raw_info
    nodes: tuple[FieldNode, ...] = tuple(raw.field_nodes)
    wanted = _SELECTS_PAGE.get(nodes)
    if wanted is None:
        wanted = any(
            node.selection_set is not None
            and any(
                not isinstance(selection, FieldNode) or selection.name.value in _PAGE_FIELDS
                for selection in node.selection_set.selections
            )
            for node in nodes
        )
        _SELECTS_PAGE.put(nodes, None, wanted)
    return wanted


async def _statement_batch(
    roots: Sequence[object],
    info: Info,
    id: strawberry.ID | None = None,
    slug: str | None = None,
    as_of: datetime | None = None,
    at_position: int | None = None,
) -> Sequence[object]:
    # The root's one statement, read at once: a DataLoader would spend a task and a round of
    # the event loop to batch a single key.
    ref = _named(id, slug)
    if as_of is not None or at_position is not None or (ref is not None and ref.dated):
        return await each(roots, lambda _root: _statement(info, id, slug, as_of, at_position))
    models = read_models_of(info)
    if models.pages_in_one_statement and _selects_page(info):
        # The statement with its minister, topics and related statements: one round trip.
        if ref is not None:
            page = await read(models.statement_page(ref.statement_id))
        else:
            page = await read(models.statement_page(slug=slug))
        found = Statement.from_page(page) if page is not None else None
        return [found] * len(roots)
    if ref is not None:
        key = ref.statement_id
        row = (await read(models.statements_by_ids([key]))).get(key)
    else:
        assert slug is not None
        row = (await read(models.statements_by_slugs([slug]))).get(slug)
    statement = Statement.from_row(row) if row is not None else None
    return [statement] * len(roots)


async def _statement_then(
    info: Info,
    ref: StatementRef | None,
    slug: str | None,
    as_of: datetime | None,
    at_position: int | None,
) -> Statement | None:
    require_role(info, AUDITOR)
    if ref is not None and ref.dated:
        if as_of is not None or at_position is not None:
            raise BadUserInput(
                "id: names a statement at a past moment already; asOf and atPosition "
                "cannot be added to it"
            )
        as_of, at_position = ref.as_of, ref.at_position
    try:
        moment = Moment.of(at_position, as_of)
    except ValueError as exc:
        raise invalid_input(exc) from exc
    store, registry = store_of(info), registry_of(info)
    if ref is not None:
        statement_id: str | None = ref.statement_id
    else:
        assert slug is not None
        statement_id = await statement_id_for_slug(store, registry, slug, moment)
    if statement_id is None:
        return None
    selected = [child for field in info.selected_fields for child in field.selections]
    with_views = _selects(selected, _VIEW_FIELDS)
    snapshot = await statement_as_of(store, registry, statement_id, moment, with_views=with_views)
    return Statement.from_snapshot(snapshot) if snapshot is not None else None


def _selects(selections: Sequence[Selection], names: frozenset[str]) -> bool:
    """Whether ``selections`` (through fragments, not into sub-fields) name one of ``names``."""
    for selection in selections:
        if isinstance(selection, SelectedField):
            if selection.name in names:
                return True
        elif isinstance(selection, FragmentSpread | InlineFragment) and _selects(
            selection.selections, names
        ):
            return True
    return False


async def _statements(
    info: Info,
    first: int | None = None,
    after: str | None = None,
    last: int | None = None,
    before: str | None = None,
    filter: StatementFilterInput | None = None,
    order_by: StatementOrderBy = StatementOrderBy.PUBLISHED_DESC,
) -> StatementConnection:
    criteria = filter.to_filter() if filter is not None else None
    models = read_models_of(info)
    page = await read(
        models.statements(
            criteria,
            order_by.order,
            first,
            after,
            last,
            before,
            with_total=selects_total(info),
        )
    )
    return statement_connection(page)


async def _most_viewed(
    info: Info, first: int = DEFAULT_MOST_VIEWED, since: date | None = None
) -> list[ViewedStatement]:
    rows = await read(read_models_of(info).most_viewed(first, since))
    return [ViewedStatement(statement=Statement.from_row(row), views=views) for row, views in rows]


# --- ministers, topics, the archive ------------------------------------------------------


async def _minister(info: Info, id: strawberry.ID) -> Minister | None:
    row = await loaders_of(info).minister_by_id.load(minister_id_of(id, "id"))
    return Minister.from_row(row) if row is not None else None


async def _ministers(info: Info) -> list[Minister]:
    return [Minister.from_row(row) for row in await read(read_models_of(info).ministers())]


async def _topic(info: Info, slug: str) -> Topic | None:
    row = await loaders_of(info).topic_by_slug.load(topic_slug_of(slug, "slug"))
    return Topic.from_row(row) if row is not None else None


async def _topics(
    info: Info, first: int | None = None, after: str | None = None
) -> Connection[Topic]:
    page = await read(read_models_of(info).topics(first, after))
    return Connection.of(page, Topic.from_row)


async def _archive(info: Info) -> list[ArchiveMonth]:
    return [ArchiveMonth.from_row(row) for row in await read(read_models_of(info).archive())]


async def _node(info: Info, id: strawberry.ID) -> Node | None:
    parsed = parse_global_id(id.strip())
    if parsed is None:
        raise BadUserInput("id: not a global id (the `id` of a Statement, Minister or Topic)")
    type_name = parsed[0]
    loaders = loaders_of(info)
    if type_name == STATEMENT:
        ref = statement_ref(id, "id")
        if ref.dated:
            return await _statement_then(info, ref, None, None, None)
        statement = await loaders.statement_by_id.load(ref.statement_id)
        return Statement.from_row(statement) if statement is not None else None
    if type_name == MINISTER:
        minister = await loaders.minister_by_id.load(minister_id_of(id, "id"))
        return Minister.from_row(minister) if minister is not None else None
    topic = await loaders.topic_by_slug.load(topic_slug_of(id, "id"))
    return Topic.from_row(topic) if topic is not None else None


# --- the audit fields (auditor role) ------------------------------------------------------


async def _log_head(info: Info) -> LogHead:
    require_role(info, AUDITOR)
    return LogHead.of(await store_of(info).head())


async def _verify_log(
    info: Info,
    from_: Annotated[int | None, strawberry.argument(name="from")] = None,
    to: int | None = None,
    expect_head: str | None = None,
) -> Verification:
    require_role(info, AUDITOR)
    if from_ is not None and from_ < 1:
        raise BadUserInput(f"from: must be at least 1, got {from_}")
    if to is not None and to < (from_ or 1):
        raise BadUserInput("to: must not be before from")
    try:
        anchor = Anchor.parse(expect_head) if expect_head is not None else None
    except ValueError as exc:
        raise BadUserInput(f"expectHead: {exc}") from exc
    result = await verify(store_of(info), from_ or 1, to, anchor)
    return Verification.of(result)


async def _events(
    info: Info,
    first: int | None = None,
    after: str | None = None,
    stream_id: str | None = None,
    types: list[str] | None = None,
) -> RawEventConnection:
    require_role(info, AUDITOR)
    page = await read(
        read_events(store_of(info), first=first, after=after, stream_id=stream_id, types=types)
    )
    return RawEventConnection.of(page)


@strawberry.type(
    description="Statements, ministers, topics and the archive; auditors also read the log."
)
class Query:
    statement: Statement | None = strawberry.field(
        resolver=_statement,
        metadata=batched(_statement_batch),
        description="A statement by id (its UUID or global id) or by slug; withdrawn ones "
        "too. With asOf or atPosition (auditor): as it stood then, replayed from the log, "
        "with an id of its own (which `node` and `statement(id:)` take back).",
    )
    statements: StatementConnection = strawberry.field(
        resolver=_statements,
        description="Statements (not withdrawn) matching the filter, in the order asked "
        "for; first/after page forwards, last/before backwards (at most 100; 20 by default).",
    )
    minister: Minister | None = strawberry.field(
        resolver=_minister, description="A minister by id (own id or global id)."
    )
    ministers: list[Minister] = strawberry.field(
        resolver=_ministers,
        description="Ministers with statements, most statements first, then by name.",
    )
    topic: Topic | None = strawberry.field(
        resolver=_topic, description="A topic by slug (or global id)."
    )
    topics: Connection[Topic] = strawberry.field(
        resolver=_topics,
        description="Topics with statements, most statements first, then by slug.",
    )
    archive: list[ArchiveMonth] = strawberry.field(
        resolver=_archive, description="The months with statements, newest first."
    )
    most_viewed: list[ViewedStatement] = strawberry.field(
        resolver=_most_viewed,
        description="The most viewed statements: overall, or since a UTC day (inclusive).",
    )
    node: Node | None = strawberry.field(
        resolver=_node, description="Any object with a global id (Relay)."
    )
    log_head: LogHead = strawberry.field(
        resolver=_log_head, description="The last event of the log and its hash (auditor)."
    )
    verify_log: Verification = strawberry.field(
        resolver=_verify_log,
        description="Recompute the hash chain over [from, to] (auditor); expectHead "
        "(POSITION:HASH) also checks the log against a head you trust.",
    )
    events: RawEventConnection = strawberry.field(
        resolver=_events,
        description="Raw events in log order after a cursor (or a position): of the whole log "
        "or one stream, of some types (auditor).",
    )
    log_checkpoint: LogCheckpoint = strawberry.field(
        resolver=resolve_log_checkpoint,
        description="A checkpoint of the log's Merkle tree (auditor): of that treeSize, or of "
        "the head if none is given; made (and signed) now if none was made yet.",
    )
    inclusion_proof: InclusionProof = strawberry.field(
        resolver=resolve_inclusion_proof,
        description="The proof that the event at `position` is in the tree of `treeSize` "
        "events (auditor; RFC 9162 §2.1.3).",
    )
    consistency_proof: ConsistencyProof = strawberry.field(
        resolver=resolve_consistency_proof,
        description="The proof that the tree of `fromSize` events is a prefix of that of "
        "`toSize` (auditor; RFC 9162 §2.1.4).",
    )
