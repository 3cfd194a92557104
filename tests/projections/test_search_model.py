"""Full-text search: ranking, snippets, hostile input, paging by relevance."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from projections.read_models import ReadModels
from projections.rows import StatementFilter, StatementOrder
from projections.search_sql import SNIPPET_END, SNIPPET_START
from projections.search_text import SearchTerms, fts5_query, search_terms
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
    other_form = await log.publish(
        title="Unrelated", paragraphs=("Sanction is a different form of the word.",)
    )
    await project()

    page = await models.statements(
        StatementFilter(search="sanctions"), StatementOrder.RELEVANCE, first=10
    )
    # A title hit first; "Sanction" is the same word; a hit in a shorter text ranks higher.
    assert [r.id for r in page.items] == [in_title, other_form, in_body]
    assert page.total_count == 3
    ranks = [r.rank for r in page.items]
    assert all(rank is not None for rank in ranks)
    assert ranks == sorted(ranks, reverse=True) and ranks[0] > ranks[1] > ranks[2] > 0  # type: ignore[operator]
    snippets = {r.id: r.snippet or "" for r in page.items}
    assert f"{SNIPPET_START}Sanctions{SNIPPET_END}" in snippets[in_title]
    assert f"{SNIPPET_START}sanctions{SNIPPET_END}" in snippets[in_body]
    assert f"{SNIPPET_START}Sanction{SNIPPET_END}" in snippets[other_form]

    # Every word must match, in any case; other orders keep rank and snippet.
    both = await models.statements(StatementFilter(search="SANCTIONS regime"))
    assert [r.id for r in both.items] == [in_body]
    assert both.items[0].snippet and both.items[0].rank is not None


async def test_word_forms_and_prefixes(log: Log, project: Project, models: ReadModels) -> None:
    await _filler(log)
    talks = await log.publish(title="Talks in Geneva", paragraphs=("A long day.",))
    talked = await log.publish(title="Evening", paragraphs=("The ministers talked for hours.",))
    talking = await log.publish(title="Morning", paragraphs=("Talking points were agreed.",))
    resuming = await log.publish(
        title="Dialogue", paragraphs=("Both sides are resuming consultations on the treaty.",)
    )
    nuclear = await log.publish(title="Non-proliferation", paragraphs=("Nuclear weapons.",))
    accented = await log.publish(title="Meeting", paragraphs=("Talks with Mevlüt Çavuşoğlu.",))
    await project()

    async def found(text: str) -> list[str]:
        page = await models.statements(StatementFilter(search=text), StatementOrder.RELEVANCE)
        return sorted(r.id for r in page.items)

    every_form = sorted([talks, talked, talking, accented])
    for text in ("talk", "talks", "TALKED", "talking"):
        assert await found(text) == every_form, text
    assert await found("resume") == [resuming]
    assert await found("consultation treaties") == [resuming]
    # A trailing "*" makes the last word a prefix of a word's stem; elsewhere it is ignored.
    assert await found("nucl*") == [nuclear]
    assert await found("nucl") == []
    assert await found("nucl* weapons") == []
    assert await found("weapons nucl*") == [nuclear]
    assert await found("talk*") == every_form
    assert await found("treat*") == [resuming]
    # Diacritics of Latin letters do not matter, either way round.
    assert await found("cavusoglu mevlut") == [accented]
    assert await found("Çavuşoğlu") == [accented]

    # Snippets mark the word forms that matched.
    page = await models.statements(StatementFilter(search="talk"), StatementOrder.RELEVANCE)
    snippets = {r.id: r.snippet or "" for r in page.items}
    assert f"{SNIPPET_START}talked{SNIPPET_END}" in snippets[talked]
    assert f"{SNIPPET_START}Talking{SNIPPET_END}" in snippets[talking]
    assert f"{SNIPPET_START}Talks{SNIPPET_END}" in snippets[talks]
    page = await models.statements(StatementFilter(search="nucl*"), StatementOrder.RELEVANCE)
    assert f"{SNIPPET_START}Nuclear{SNIPPET_END}" in (page.items[0].snippet or "")


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
    "²",
    "peace²*",
    "\u0301",
    "e\u0301*",
    "ǅ ﬁ ſ",
    "*peace",
    "**",
    "peace**",
    "peace:*",
    "peace' | war:*",
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
    assert search_terms('he said "peace" OR war_time*') == SearchTerms(
        ("he", "said", "peace", "or", "war", "time"), prefix=True
    )
    # Words are folded as FTS5 folds them: lower case, Latin letters without diacritics.
    assert search_terms("Çavuşoğlu São Paulo Ёлка İ") == SearchTerms(
        ("cavusoglu", "sao", "paulo", "ёлка", "i")
    )
    # Only a "*" right after the last word makes a prefix; elsewhere it separates words.
    assert search_terms("nucl* talks").prefix is False
    assert search_terms("talks nucl *").prefix is False
    assert search_terms("talks nucl*  ") == SearchTerms(("talks", "nucl"), prefix=True)
    assert search_terms("*") == SearchTerms(())
    assert fts5_query(SearchTerms(("peace", "or"))) == '"peace" "or"'
    assert fts5_query(SearchTerms(("peace", "nucl"), prefix=True)) == '"peace" "nucl"*'
    assert fts5_query(SearchTerms(('a"b',))) == '"a""b"'
    with pytest.raises(ValueError, match=r"^search: at most"):
        search_terms("x" * 501)
    with pytest.raises(ValueError, match=r"^search: at most 32 words"):
        search_terms(" ".join(["w"] * 33))


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
