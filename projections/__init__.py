"""The read models: projections of the log into SQL tables, and the queries over them.

Each projection folds part of the log into tables it alone owns (see the contract in
``eventstore.projection``) and is self-contained: it keeps whatever per-statement state it needs
in its own tables, so it can be rebuilt, or fail, on its own. ``projections.read_models.ReadModels``
reads across them.
"""

from __future__ import annotations

from eventstore.projection import Projection
from projections.archive import ArchiveProjection
from projections.ministers import MinistersProjection
from projections.search import SearchProjection
from projections.statements import StatementsProjection
from projections.topics import TopicsProjection
from projections.views import ViewsProjection

__all__ = [
    "ArchiveProjection",
    "MinistersProjection",
    "SearchProjection",
    "StatementsProjection",
    "TopicsProjection",
    "ViewsProjection",
    "all_projections",
]


def all_projections() -> list[Projection]:
    """One instance of every read-model projection, in the order they are best started."""
    return [
        StatementsProjection(),
        ViewsProjection(),
        ArchiveProjection(),
        TopicsProjection(),
        MinistersProjection(),
        SearchProjection(),
    ]
