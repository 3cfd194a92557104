"""The fence around the executor's private hooks: the start-up check, its one warning, the
fallback to graphql-core's executor, and the STATEMENTS_COMPILED_EXECUTOR switch."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from graphql import parse
from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext

from domain.handlers import StatementHandlers
from graphql_api import execution
from graphql_api.bootstrap import start_execution
from graphql_api.execution import fence
from graphql_api.execution.executor import CompiledExecutor
from graphql_api.schema.subscriptions import StreamingSchema
from graphql_api.settings import Settings
from tests.graphql_api.support import context_of, make_app, make_schema

QUERY = '{ hello(name: "fence") items(first: 2) { totalCount edges { node { id tags } } } }'
ANSWER = {
    "hello": "hello fence",
    "items": {
        "totalCount": 2,
        "edges": [
            {"node": {"id": "0", "tags": ["a", "b"]}},
            {"node": {"id": "1", "tags": ["a", "b"]}},
        ],
    },
}


@pytest.fixture
def fresh(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A process that has not checked yet and has not switched the executor off."""
    monkeypatch.setattr(fence.STATE, "report", None)
    monkeypatch.setattr(fence.STATE, "switched_off", False)
    yield


def _warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        record.getMessage()
        for record in caplog.records
        if record.name == fence.__name__ and record.levelno == logging.WARNING
    ]


def test_every_hook_is_there_on_the_pinned_versions(
    fresh: None, caplog: pytest.LogCaptureFixture
) -> None:
    report = execution.check()
    assert report == fence.FenceReport()
    assert report.warning() is None
    assert execution.executor_class() is CompiledExecutor
    assert _warnings(caplog) == []


def test_a_missing_graphql_core_hook_falls_back_with_one_warning(
    fresh: None, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.delattr("graphql.execution.collect_fields.collect_subfields")
    report = execution.check()
    execution.check()  # checked once per process: still one warning
    assert report.executor_missing == ("graphql.execution.collect_fields.collect_subfields",)
    assert report.per_event_executor
    [warning] = _warnings(caplog)
    assert "graphql.execution.collect_fields.collect_subfields" in warning
    assert "the compiled executor is off" in warning
    assert execution.executor_class() is None


def test_a_renamed_strawberry_closure_falls_back(
    fresh: None, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(fence, "BASIC_GETTER", "_get_result_renamed")
    report = execution.check()
    assert report.executor_missing == ("Strawberry's _get_result_renamed wrapper of plain fields",)
    assert len(_warnings(caplog)) == 1
    assert execution.executor_class() is None


def test_a_missing_executor_attribute_falls_back(
    fresh: None, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(fence, "EXECUTOR_ATTRIBUTES", (*fence.EXECUTOR_ATTRIBUTES, "gone_away"))
    assert execution.check().executor_missing == ("graphql.Executor.gone_away",)
    [warning] = _warnings(caplog)
    assert "graphql.Executor.gone_away" in warning


async def test_the_fallback_answers_queries(
    fresh: None,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    handlers: StatementHandlers,
) -> None:
    monkeypatch.delattr("graphql.execution.collect_fields.collect_fields")
    schema = make_schema()
    assert schema.execution_context_class is StrawberryGraphQLCoreExecutionContext
    result = await schema.execute(QUERY, context_value=context_of(handlers))
    assert result.errors is None
    assert result.data == ANSWER
    assert len(_warnings(caplog)) == 1


def test_a_missing_subscription_hook_says_what_it_means(
    fresh: None, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(fence, "SUB_FIELD_MEMO", "_memo_renamed")
    report = execution.check()
    assert report.subscription_missing == ("graphql.Executor._memo_renamed",)
    assert report.compiled_executor  # queries keep the compiled executor
    [warning] = _warnings(caplog)
    assert "graphql.Executor._memo_renamed" in warning
    assert "memory grows" in warning
    streaming = StreamingSchema(make_schema())
    assert streaming.execution_context_class is CompiledExecutor


def test_the_per_event_executor_gets_a_memo_of_its_own(fresh: None) -> None:
    streaming = StreamingSchema(make_schema())
    cls: Any = streaming.execution_context_class
    assert issubclass(cls, CompiledExecutor) and cls is not CompiledExecutor
    executor = cls.build(make_schema()._schema, parse("{ hello }"))
    memo = executor._relevant_sub_fields
    event_executor = executor.build_per_event_executor({"hello": "x"})
    assert event_executor._relevant_sub_fields == {}
    assert event_executor._relevant_sub_fields is not memo


def test_the_setting_reads_the_environment() -> None:
    assert Settings().compiled_executor
    assert Settings.from_env({}).compiled_executor
    assert not Settings.from_env({"STATEMENTS_COMPILED_EXECUTOR": "0"}).compiled_executor
    assert Settings.from_env({"STATEMENTS_COMPILED_EXECUTOR": "yes"}).compiled_executor
    with pytest.raises(ValueError, match="STATEMENTS_COMPILED_EXECUTOR must be 1 or 0"):
        Settings.from_env({"STATEMENTS_COMPILED_EXECUTOR": "maybe"})


async def test_switched_off_the_api_runs_on_graphql_core(
    fresh: None, caplog: pytest.LogCaptureFixture, handlers: StatementHandlers
) -> None:
    start_execution(Settings(compiled_executor=False))
    assert execution.executor_class() is None
    assert _warnings(caplog) == []  # switched off on purpose: nothing to warn about
    app = make_app(handlers)
    assert app.endpoint.schema.execution_context_class is StrawberryGraphQLCoreExecutionContext
    transport = httpx.ASGITransport(app=app.app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        response = await client.post("/graphql", json={"query": QUERY})
    assert response.json() == {"data": ANSWER}
