"""Batches of views: the rules a batch must meet, decided without IO.

A batch is recorded whole or not at all: one wrong view refuses the batch, and the error names
every wrong view by its index, so a sender can drop or fix those and send the batch again. A
batch that skipped its wrong views would make its retry's answer depend on what changed in
between; refusing it keeps "same batch id, same views, same answer".
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC

from domain.commands import RecordViews
from domain.errors import BatchTooLarge, InvalidBatchId, ItemProblem, ItemsRejected
from domain.events import ViewAt, ViewsRecorded
from domain.ids import is_statement_id
from domain.limits import MAX_BATCH_ID_LENGTH, MAX_VIEW_CLOCK_SKEW

#: How many wrong views one error lists; a batch of a thousand bad views names the first ones.
MAX_PROBLEMS_LISTED = 20


def check_batch(command: RecordViews, max_views: int) -> ViewsRecorded:
    """The batch as it would be recorded, by the rules that need no state: its size, its id,
    each view's time (normalised to UTC). Raises on the first rule broken, naming every view
    that breaks one."""
    count = len(command.views)
    if count == 0 or count > max_views:
        raise BatchTooLarge("views", count, max_views)
    batch_id = command.batch_id
    if not batch_id.strip():
        raise InvalidBatchId("must not be empty")
    if len(batch_id) > MAX_BATCH_ID_LENGTH:
        raise InvalidBatchId(
            f"has {len(batch_id)} characters; at most {MAX_BATCH_ID_LENGTH} are allowed"
        )
    if not batch_id.isprintable():
        raise InvalidBatchId("must be printable text")
    latest = command.received_at + MAX_VIEW_CLOCK_SKEW
    problems: list[ItemProblem] = []
    views: list[ViewAt] = []
    for index, view in enumerate(command.views):
        if not is_statement_id(view.statement_id):
            problems.append(ItemProblem(index, "statement_id", "is not a statement id (a UUID)"))
            continue
        at = view.at
        if at.tzinfo is None:
            problems.append(ItemProblem(index, "at", "must include a timezone offset"))
            continue
        if at > latest:
            problems.append(
                ItemProblem(index, "at", f"{at.isoformat()} is later than the server's clock")
            )
            continue
        views.append(ViewAt(view.statement_id, at.astimezone(UTC)))
    _raise_if(problems)
    return ViewsRecorded(batch_id=batch_id, views=tuple(views))


def check_targets(batch: ViewsRecorded, withdrawn: Mapping[str, bool]) -> None:
    """Raise unless every view's statement exists and takes views.

    ``withdrawn`` maps every published statement of the batch to whether it was withdrawn; a
    statement it leaves out does not exist.
    """
    problems: list[ItemProblem] = []
    for index, view in enumerate(batch.views):
        state = withdrawn.get(view.statement_id)
        if state is None:
            problems.append(
                ItemProblem(index, "statement_id", f"statement {view.statement_id} does not exist")
            )
        elif state:
            problems.append(
                ItemProblem(
                    index,
                    "statement_id",
                    f"statement {view.statement_id} was withdrawn and takes no further views",
                )
            )
    _raise_if(problems)


def _raise_if(problems: list[ItemProblem]) -> None:
    if problems:
        raise ItemsRejected("views", tuple(problems[:MAX_PROBLEMS_LISTED]), total=len(problems))
