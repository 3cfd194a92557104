"""The request's DataLoaders over the read models, and what the query layer takes from the context.

One :class:`Loaders` per request (:func:`make_loaders`), so nothing is cached across requests.
Every loader turns the keys collected in one tick of the event loop into ONE call of a
batch-shaped :class:`~projections.read_models.ReadModels` method, and every such method is one SQL
statement. Loaders of nested connections are keyed by ``(parent, first, after)`` and issue one
``statements_for_*`` call per distinct ``(first, after)`` — in practice one, since siblings in a
list share their arguments.

Hence the bound on SQL statements: resolving a level of a query costs at most one statement per
relation field selected on it, whatever the number of objects, so a query of depth d issues
about d + 1 statements (measured in ``tests/graphql_api/test_query_sql_counts.py``).

A ``ValueError`` from the read models (a bad cursor, a page size out of range, ...) becomes
:class:`~graphql_api.errors.BadUserInput` (``BAD_USER_INPUT``) for the keys it concerns.

The context: ``context.read_models`` is a :class:`ReadModels`; ``context.loaders`` is filled on
first use (a context factory may also set ``make_loaders(read_models)`` itself);
``context.store`` (an :class:`~eventstore.EventStore`) and ``context.registry`` (an
:class:`~eventstore.EventRegistry`) serve the audit fields and time travel.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable, Hashable, Mapping, Sequence
from datetime import date
from typing import TypeAlias, TypeVar

import strawberry
from strawberry.dataloader import DataLoader

from eventstore import EventRegistry, EventStore
from graphql_api.context import Context
from graphql_api.errors import BadUserInput
from projections.paging import MAX_IDS
from projections.read_models import ReadModels
from projections.rows import DayCount, MinisterRow, MinisterTopicRow, Page, StatementRow, TopicRow

Info: TypeAlias = strawberry.Info[Context, None]

K = TypeVar("K", bound=Hashable)
P = TypeVar("P", bound=Hashable)
A = TypeVar("A", bound=Hashable)
V = TypeVar("V")
T = TypeVar("T")

Month: TypeAlias = tuple[int, int]
#: (parent, first, after, with_total): one page of a nested connection; without
#: ``with_total`` its ``total_count`` is not counted (-1), for queries that do not ask for it.
PageKey: TypeAlias = tuple[P, int, str | None, bool]
#: (statement id, from, to): views per day within a range.
DaysKey: TypeAlias = tuple[str, date | None, date | None]


def invalid_input(exc: ValueError) -> BadUserInput:
    """The API error for a read model's refusal of an argument."""
    return BadUserInput(str(exc))


async def read(call: Awaitable[T]) -> T:
    """Await a read-model call, turning its ValueError into BAD_USER_INPUT."""
    try:
        return await call
    except ValueError as exc:
        raise invalid_input(exc) from exc


def _keyed(
    fetch: Callable[[list[K]], Awaitable[Mapping[K, V]]], missing: V
) -> Callable[[list[K]], Awaitable[Sequence[V | BaseException]]]:
    """A batch function: one ``fetch`` of every key; absent keys get ``missing``."""

    async def load(keys: list[K]) -> Sequence[V | BaseException]:
        found = await read(fetch(keys))
        return [found.get(key, missing) for key in keys]

    return load


def _grouped(
    split: Callable[[K], tuple[P, A]],
    fetch: Callable[[list[P], A], Awaitable[Mapping[P, V]]],
) -> Callable[[list[K]], Awaitable[Sequence[V | BaseException]]]:
    """A batch function: one ``fetch`` per distinct argument tuple, for all its parents."""

    async def load(keys: list[K]) -> Sequence[V | BaseException]:
        groups: dict[A, list[P]] = {}
        for key in keys:
            parent, arguments = split(key)
            groups.setdefault(arguments, []).append(parent)
        results = await asyncio.gather(
            *(fetch(parents, arguments) for arguments, parents in groups.items()),
            return_exceptions=True,
        )
        for result in results:
            if isinstance(result, asyncio.CancelledError):
                raise result
        by_arguments = dict(zip(groups, results, strict=True))
        values: list[V | BaseException] = []
        for key in keys:
            parent, arguments = split(key)
            result = by_arguments[arguments]
            if isinstance(result, ValueError):
                values.append(invalid_input(result))
            elif isinstance(result, BaseException):
                values.append(result)
            else:
                values.append(result[parent])
        return values

    return load


def _page_key(key: PageKey[P]) -> tuple[P, tuple[int, str | None, bool]]:
    return key[0], (key[1], key[2], key[3])


def _loader(load: Callable[[list[K]], Awaitable[Sequence[V | BaseException]]]) -> DataLoader[K, V]:
    return DataLoader(load, max_batch_size=MAX_IDS)


class Loaders:
    """The DataLoaders of one request, each made on first use (most requests need few)."""

    def __init__(self, models: ReadModels) -> None:
        self._models = models

    @functools.cached_property
    def statement_by_id(self) -> DataLoader[str, StatementRow | None]:
        return _loader(_keyed(self._models.statements_by_ids, None))

    @functools.cached_property
    def statement_by_slug(self) -> DataLoader[str, StatementRow | None]:
        return _loader(_keyed(self._models.statements_by_slugs, None))

    @functools.cached_property
    def minister_by_id(self) -> DataLoader[str, MinisterRow | None]:
        return _loader(_keyed(self._models.ministers_by_ids, None))

    @functools.cached_property
    def topic_by_slug(self) -> DataLoader[str, TopicRow | None]:
        return _loader(_keyed(self._models.topics_by_slugs, None))

    @functools.cached_property
    def topics_of(self) -> DataLoader[str, list[TopicRow]]:
        return _loader(_keyed(self._models.topics_of, []))

    @functools.cached_property
    def related_of(self) -> DataLoader[str, list[str]]:
        return _loader(_keyed(self._models.related_of, []))

    @functools.cached_property
    def related_statements(self) -> DataLoader[str, list[StatementRow]]:
        return _loader(_keyed(self._models.related_statements_of, []))

    @functools.cached_property
    def view_count(self) -> DataLoader[str, int]:
        return _loader(_keyed(self._models.view_counts, 0))

    @functools.cached_property
    def views_by_day(self) -> DataLoader[DaysKey, list[DayCount]]:
        models = self._models

        async def fetch(
            ids: list[str], window: tuple[date | None, date | None]
        ) -> Mapping[str, list[DayCount]]:
            return await models.views_by_day(ids, window[0], window[1])

        def days_key(key: DaysKey) -> tuple[str, tuple[date | None, date | None]]:
            return key[0], (key[1], key[2])

        return _loader(_grouped(days_key, fetch))

    @functools.cached_property
    def minister_topics(self) -> DataLoader[tuple[str, int], list[MinisterTopicRow]]:
        models = self._models

        async def fetch(ids: list[str], limit: int) -> Mapping[str, list[MinisterTopicRow]]:
            return await models.minister_topics(ids, limit)

        def topics_key(key: tuple[str, int]) -> tuple[str, int]:
            return key

        return _loader(_grouped(topics_key, fetch))

    @functools.cached_property
    def minister_statements(self) -> DataLoader[PageKey[str], Page[StatementRow]]:
        models = self._models

        async def fetch(
            ids: list[str], page: tuple[int, str | None, bool]
        ) -> Mapping[str, Page[StatementRow]]:
            return await models.statements_for_ministers(ids, page[0], page[1], with_total=page[2])

        return _loader(_grouped(_page_key, fetch))

    @functools.cached_property
    def topic_statements(self) -> DataLoader[PageKey[str], Page[StatementRow]]:
        models = self._models

        async def fetch(
            slugs: list[str], page: tuple[int, str | None, bool]
        ) -> Mapping[str, Page[StatementRow]]:
            return await models.statements_for_topics(slugs, page[0], page[1], with_total=page[2])

        return _loader(_grouped(_page_key, fetch))

    @functools.cached_property
    def minister_topic_statements(
        self,
    ) -> DataLoader[PageKey[tuple[str, str]], Page[StatementRow]]:
        models = self._models

        async def fetch(
            pairs: list[tuple[str, str]], page: tuple[int, str | None, bool]
        ) -> Mapping[tuple[str, str], Page[StatementRow]]:
            return await models.statements_for_minister_topics(
                pairs, page[0], page[1], with_total=page[2]
            )

        return _loader(_grouped(_page_key, fetch))

    @functools.cached_property
    def month_statements(self) -> DataLoader[PageKey[Month], Page[StatementRow]]:
        models = self._models

        async def fetch(
            months: list[Month], page: tuple[int, str | None, bool]
        ) -> Mapping[Month, Page[StatementRow]]:
            return await models.statements_for_months(months, page[0], page[1], with_total=page[2])

        return _loader(_grouped(_page_key, fetch))


def make_loaders(models: ReadModels) -> Loaders:
    """A fresh set of loaders over ``models``, for one request."""
    return Loaders(models)


# --- what the query layer takes from the context -------------------------------------------


def read_models_of(info: Info) -> ReadModels:
    """The request's read models (``context.read_models``)."""
    models = info.context.read_models
    if models is None:
        raise RuntimeError("the request context has no read models (context.read_models)")
    return models


def loaders_of(info: Info) -> Loaders:
    """The request's loaders, made on first use when the context factory did not set them."""
    context = info.context
    loaders = context.loaders
    if loaders is None:
        loaders = context.loaders = make_loaders(read_models_of(info))
    return loaders


def store_of(info: Info) -> EventStore:
    """The event store, for the audit fields (``context.store``)."""
    store = info.context.store
    if store is None:
        raise RuntimeError("the request context has no event store (context.store)")
    return store


def registry_of(info: Info) -> EventRegistry:
    """The event registry that decodes the log (``context.registry``)."""
    registry = info.context.registry
    if registry is None:
        raise RuntimeError("the request context has no registry (context.registry)")
    return registry
