"""Full-text search: ranking, snippets, hostile input, paging by relevance."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from projections.queries import SNIPPET_END, SNIPPET_START, ReadModels, fts5_query, search_words
from projections.rows import StatementFilter, StatementOrder
from tests.projections.conftest import MSK, Log, Project

FILLER = (
    ("Budget report", ("The annual budget was discussed.",)),
    ("Weather note", ("Rain is expected tomorrow in the capital.",)),
    ("Culture week", ("Museums open their doors for the festival.",)),
    ("Sports news", ("The team won the final match.",)),
    ("Science prize", ("A physicist received the award.",)),
    ("Transport plan", ("New metro lines open next year.",)),
)


async def _filler(log: Log) -> None:
    # Enough unrelated statements that the searched words are rare, as bm25 and ts_rank expect.
    for title, paragraphs in FILLER:
        await log.publish(title=title, paragraphs=paragraphs)


async def test_ranking_and_snippets(log: Log, project: Project, models: ReadModels) -> None:
    await _filler(log)
    in_title = await log.publish(
        title="Sanctions against the embargo", paragraphs=("Nothing else here.",)
    )
    in_body = await log.publish(
        title="Weekly briefing",
        paragraphs=("Long introduction about many things.", "We oppose the sanctions regime."),
    )
    await log.publish(title="Unrelated", paragraphs=("Sanction is a different word.",))
    await project()

    page = await models.statements(
        StatementFilter(search="sanctions"), StatementOrder.RELEVANCE, first=10
    )
    assert [r.id for r in page.items] == [in_title, in_body]  # no stemming: "sanction" differs
    assert page.total_count == 2
    ranks = [r.rank for r in page.items]
    assert ranks[0] is not None and ranks[1] is not None
    assert ranks[0] > ranks[1] > 0
    body_hit = page.items[1]
    assert body_hit.snippet is not None
    assert f"{SNIPPET_START}sanctions{SNIPPET_END}" in body_hit.snippet
    title_hit = page.items[0]
    assert title_hit.snippet is not None and f"{SNIPPET_START}Sanctions{SNIPPET_END}" in (
        title_hit.snippet
    )

    # Every word must match, in any case; other orders keep rank and snippet.
    both = await models.statements(StatementFilter(search="SANCTIONS regime"))
    assert [r.id for r in both.items] == [in_body]
    assert both.items[0].snippet and both.items[0].rank is not None


async def test_russian_text(log: Log, project: Project, models: ReadModels) -> None:
    await _filler(log)
    sid = await log.publish(
        title="Комментарий МИД России",
        paragraphs=("Переговоры в Женеве прошли успешно.",),
        language="ru",
    )
    await project()
    page = await models.statements(StatementFilter(search="переговоры"))
    assert [r.id for r in page.items] == [sid]
    assert page.items[0].snippet and f"{SNIPPET_START}Переговоры{SNIPPET_END}" in (
        page.items[0].snippet
    )
    assert [r.id for r in (await models.statements(StatementFilter(search="МИД"))).items] == [sid]


HOSTILE = [
    '"',
    '""',
    '"unbalanced',
    "peace OR war",
    "peace AND NOT war",
    "NEAR(peace war, 2)",
    "title:peace",
    "body : peace",
    "peace*",
    "^peace",
    "-peace +war",
    "(((",
    "')) OR 1=1 --",
    "'; DROP TABLE statements; --",
    "\\",
    "%_",
    "\x00",
    "peace\u200bwar",
    "{title body}: peace",
    "   ",
    "",
    "!!! ??? ...",
    "a" * 400,
]


async def test_hostile_search_text_neither_errors_nor_injects(
    log: Log, project: Project, models: ReadModels
) -> None:
    await _filler(log)
    peace = await log.publish(title="Peace talks", paragraphs=("On peace and war.",))
    await project()
    for text in HOSTILE:
        for order in (StatementOrder.RELEVANCE, StatementOrder.PUBLISHED_DESC):
            page = await models.statements(StatementFilter(search=text), order, first=5)
            assert page.total_count == len(page.items) <= 1, text
            assert all(r.id == peace for r in page.items), text
    # The tables are all still there.
    assert (await models.statements()).total_count == len(FILLER) + 1


async def test_operators_are_plain_words(log: Log, project: Project, models: ReadModels) -> None:
    await _filler(log)
    peace = await log.publish(title="Peace talks", paragraphs=("On peace and war.",))
    await log.publish(title="Peace only", paragraphs=("Peace.",))
    await project()
    # OR, NOT, NEAR are words that must occur, not operators: nothing has "or" or "not".
    for text in ("peace OR war", "peace NOT war", "NEAR(peace war)"):
        assert (await models.statements(StatementFilter(search=text))).items == []
    # Punctuation only separates words.
    found = await models.statements(StatementFilter(search='"peace" -war*'))
    assert [r.id for r in found.items] == [peace]


def test_query_building() -> None:
    assert search_words('he said "peace" OR war_time*') == [
        "he",
        "said",
        "peace",
        "OR",
        "war",
        "time",
    ]
    assert fts5_query(["peace", "OR"]) == '"peace" "OR"'
    assert fts5_query(['a"b']) == '"a""b"'
    with pytest.raises(ValueError, match=r"^search: at most"):
        search_words("x" * 501)
    with pytest.raises(ValueError, match=r"^search: at most 32 words"):
        search_words(" ".join(["w"] * 33))


async def test_relevance_pages(log: Log, project: Project, models: ReadModels) -> None:
    await _filler(log)
    start = datetime(2020, 7, 1, tzinfo=MSK)
    ids = []
    for i in range(7):
        # Different numbers of hits give different ranks; some ranks tie.
        body = ("treaty " * (1 + i // 2)).strip()
        ids.append(
            await log.publish(
                title=f"Note {i}", paragraphs=(body, "more"), published_at=start + timedelta(i)
            )
        )
    await project()
    full = await models.statements(
        StatementFilter(search="treaty"), StatementOrder.RELEVANCE, first=100
    )
    assert sorted(r.id for r in full.items) == sorted(ids)
    seen = []
    after = None
    while True:
        page = await models.statements(
            StatementFilter(search="treaty"), StatementOrder.RELEVANCE, first=3, after=after
        )
        assert page.total_count == 7
        seen += [r.id for r in page.items]
        if not page.has_next:
            break
        after = page.cursors[-1]
    assert seen == [r.id for r in full.items]
    back = await models.statements(
        StatementFilter(search="treaty"), StatementOrder.RELEVANCE, last=2, before=full.cursors[5]
    )
    assert [r.id for r in back.items] == seen[3:5]
    assert back.cursors == full.cursors[3:5]
    assert back.has_previous and back.has_next


async def test_empty_search_and_relevance_without_search(
    log: Log, project: Project, models: ReadModels
) -> None:
    await _filler(log)
    await project()
    empty = await models.statements(StatementFilter(search="?!"), StatementOrder.RELEVANCE)
    assert empty.items == [] and empty.total_count == 0
    with pytest.raises(ValueError, match=r"^orderBy: RELEVANCE"):
        await models.statements(order=StatementOrder.RELEVANCE)
