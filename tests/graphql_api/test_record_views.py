"""recordViews through create_app on both backends: one append per batch, per-index errors,
idempotent retries, the ingest role, rate limiting by views, counts in the read models and
in the live hub."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.graphql_api.consistency_support import gql, ok, publish
from tests.graphql_api.test_consistency import BACKENDS, Running, running

RECORD_VIEWS = """mutation($input: RecordViewsInput!) {
  recordViews(input: $input) {
    batchId position viewsRecorded viewCounts { statementId viewCount } } }"""
VIEWS = """query($id: ID!) { statement(id: $id) { viewCount } }"""
DAYS = """query($id: ID!) { statement(id: $id) { viewsByDay { day count } } }"""
NOW = datetime.now(UTC).replace(microsecond=0)


@pytest.fixture(params=BACKENDS)
def db(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, str | None]:
    if request.param == "postgresql":
        url, schema = request.getfixturevalue("pg_schema")
        return url, schema
    return f"sqlite:///{tmp_path / 'app.db'}", None


def _batch(batch_id: str, *statement_ids: str, at: datetime = NOW) -> dict[str, Any]:
    return {
        "batchId": batch_id,
        "views": [{"statementId": s, "at": at.isoformat()} for s in statement_ids],
    }


async def _record(it: Running, batch: dict[str, Any], token: str | None = None) -> dict[str, Any]:
    return await gql(it.client, RECORD_VIEWS, {"input": batch}, token=token or it.ingest)


async def _head(it: Running) -> int:
    return await it.state.ready().store.head_position()


async def _count(it: Running, statement_id: str) -> int:
    data = ok(await gql(it.client, VIEWS, {"id": statement_id}))
    return int(data["statement"]["viewCount"])


def _code(body: dict[str, Any]) -> str:
    (error,) = body["errors"]
    return str(error["extensions"]["code"])


async def test_a_batch_is_one_append_and_counts_as_its_views(db: tuple[str, str | None]) -> None:
    async with running(db) as it:
        a = await publish(it.client, it.editor, "Batched A", 1)
        b = await publish(it.client, it.editor, "Batched B", 2)
        head = await _head(it)
        yesterday = NOW - timedelta(days=1)
        batch = {
            "batchId": "shipper-1",
            "views": [
                {"statementId": a, "at": NOW.isoformat()},
                {"statementId": b, "at": NOW.isoformat()},
                {"statementId": a, "at": yesterday.isoformat()},
            ],
        }
        payload = ok(await _record(it, batch))["recordViews"]
        assert payload["position"] == head + 1 == await _head(it)
        assert payload["viewsRecorded"] == 3
        assert payload["viewCounts"] == [
            {"statementId": a, "viewCount": 2},
            {"statementId": b, "viewCount": 1},
        ]
        # Read-your-writes: the answer means the next read sees the batch.
        assert await _count(it, a) == 2 and await _count(it, b) == 1
        # Each view counts on the UTC day of its own time.
        days = ok(await gql(it.client, DAYS, {"id": a}))["statement"]["viewsByDay"]
        assert days == [
            {"day": yesterday.date().isoformat(), "count": 1},
            {"day": NOW.date().isoformat(), "count": 1},
        ]


async def test_a_retry_gets_the_same_answer_and_writes_nothing(db: tuple[str, str | None]) -> None:
    async with running(db) as it:
        a = await publish(it.client, it.editor, "Retried", 1)
        batch = _batch("retry-1", a, a)
        first = ok(await _record(it, batch))["recordViews"]
        head = await _head(it)
        again = ok(await _record(it, batch))["recordViews"]
        assert again == first and await _head(it) == head
        assert await _count(it, a) == 2
        # The same id with other views is refused, and nothing is written.
        other = await _record(it, _batch("retry-1", a))
        assert _code(other) == "CONFLICT"
        assert other["errors"][0]["message"].startswith("batchId: batch 'retry-1' was already")
        assert await _head(it) == head


async def test_wrong_views_are_named_by_index_and_refuse_the_batch(
    db: tuple[str, str | None],
) -> None:
    async with running(db) as it:
        a = await publish(it.client, it.editor, "Named", 1)
        head = await _head(it)
        missing = "0b9f6a3e-0000-4000-8000-000000000000"
        # Ids that are no ids are named by the API, before anything is read.
        body = await _record(it, _batch("bad-1", a, "nope", a, "also nope"))
        (error,) = body["errors"]
        assert error["extensions"]["code"] == "BAD_USER_INPUT"
        fields = [p["field"] for p in error["extensions"]["problems"]]
        assert fields == ["views[1].statementId", "views[3].statementId"]
        assert error["message"].startswith("views[1].statementId: ")
        # Times ahead of the clock, then statements that do not exist, are named by the domain.
        later = (NOW + timedelta(hours=2)).isoformat()
        batch = _batch("bad-2", a, missing, a)
        batch["views"][2]["at"] = later
        body = await _record(it, batch)
        (error,) = body["errors"]
        assert error["extensions"]["code"] == "BAD_USER_INPUT"
        assert error["extensions"]["problems"] == [
            {"field": "views[2].at", "message": f"{later} is later than the server's clock"},
        ]
        body = await _record(it, _batch("bad-2", a, missing, missing))
        (error,) = body["errors"]
        assert error["extensions"]["code"] == "BAD_USER_INPUT"
        assert error["extensions"]["problems"] == [
            {"field": f"views[{i}].statementId", "message": f"statement {missing} does not exist"}
            for i in (1, 2)
        ]
        assert error["message"] == (
            f"views[1].statementId: statement {missing} does not exist; "
            f"views[2].statementId: statement {missing} does not exist"
        )
        assert body["data"] is None and await _head(it) == head
        assert await _count(it, a) == 0


async def test_the_ingest_role_the_cap_and_the_rate_in_views(db: tuple[str, str | None]) -> None:
    settings = {"ingest_max_batch_views": 4, "ingest_view_rate": 0.001, "ingest_view_burst": 6}
    async with running(db, **settings) as it:
        a = await publish(it.client, it.editor, "Limited", 1)
        assert _code(await gql(it.client, RECORD_VIEWS, {"input": _batch("r-0", a)})) == (
            "UNAUTHENTICATED"
        )
        assert _code(await _record(it, _batch("r-0", a), token=it.editor)) == "FORBIDDEN"
        over = await _record(it, _batch("r-0", a, a, a, a, a))
        assert _code(over) == "BAD_USER_INPUT"
        assert over["errors"][0]["message"] == (
            "views: holds 5 items; at most 4 are allowed per request"
        )
        # The bucket holds 6 views: 4 then 2 pass, the next view does not.
        ok(await _record(it, _batch("r-1", a, a, a, a)))
        ok(await _record(it, _batch("r-2", a, a)))
        limited = await _record(it, _batch("r-3", a))
        assert _code(limited) == "RATE_LIMITED"
        assert limited["errors"][0]["extensions"]["retryable"] is True
        assert await _count(it, a) == 6


async def test_a_live_subscriber_sees_the_batch_counts(db: tuple[str, str | None]) -> None:
    async with running(db) as it:
        a = await publish(it.client, it.editor, "Watched A", 1)
        b = await publish(it.client, it.editor, "Watched B", 2)
        hub = it.state.hub
        assert hub is not None
        seen: dict[str, list[int]] = {a: [], b: []}
        first_values = {a: asyncio.Event(), b: asyncio.Event()}

        async def watch(statement_id: str, until: int) -> None:
            async with contextlib.aclosing(hub.view_counts(statement_id)) as updates:
                async for update in updates:
                    seen[statement_id].append(update.view_count)
                    first_values[statement_id].set()
                    if update.view_count >= until:
                        return

        watchers = [asyncio.create_task(watch(a, 3)), asyncio.create_task(watch(b, 1))]
        # Both counts are loaded before the batches, so the batches arrive as changes.
        await asyncio.wait_for(asyncio.gather(*(e.wait() for e in first_values.values())), 10)
        ok(await _record(it, _batch("live-1", a, b, a)))
        ok(await _record(it, _batch("live-2", a)))
        await asyncio.wait_for(asyncio.gather(*watchers), 10)
        assert seen[a][0] == 0 and seen[a][-1] == 3 and seen[a] == sorted(seen[a])
        assert seen[b] == [0, 1]
