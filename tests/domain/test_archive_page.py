"""The archive page parser on the real scraped page, on variants of it, and on arbitrary text."""

from __future__ import annotations

import contextlib
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from domain.archive_page import (
    ArchiveMonth,
    ArchivePage,
    kind_of_title,
    parse_archive_page,
    parse_title_tail,
)
from domain.errors import PageParseError
from domain.events import MinisterRef
from tests.domain.domain_builders import MOSCOW

SEEDS = Path(__file__).resolve().parents[2].parent / "shared" / "seeds"
PAGE_PATH = SEEDS / "000_a4da26f8be4eafc8.txt"
PAGE = PAGE_PATH.read_text(encoding="utf-8")

TITLE = (
    "Comment by Russian Foreign Minister Sergey Lavrov on his meeting with US Secretary of "
    "State John Kerry, Beijing, 8 November 2014"
)
FIRST_PARAGRAPH_START = "A meeting with US Secretary of State John Kerry lasted an hour and a half."
FIRST_PARAGRAPH_END = "We will attempt to find solutions to the remaining two or three issues."
LAST_PARAGRAPH_START = "Russia and the United States have different views on the developments"
LAST_PARAGRAPH_END = (
    "For its part, Russia will do its best in relations with the self-defence forces and Kiev "
    "to ensure that this comes about."
)
RELATED = (
    "Foreign Minister Sergey Lavrov’s statement and answers to media questions at a joint news "
    "conference following talks with Iranian Foreign Minister Mohammad Javad Zarif, Moscow. "
    "August 17, 2015",
    "Foreign Minister Sergey Lavrov’s remarks and answers to media questions at a joint news "
    "conference following talks with Minister of Foreign and European Affairs of the Grand "
    "Duchy of Luxembourg Jean Asselborn, Moscow, July 3, 2015",
    "Speech by the Russian Foreign Minister Sergey Lavrov and his answers to questions from the "
    "mass media during the press conference on the side-lines of the Nuclear Security Summit, "
    "The Hague, 24 March 2014",
    "Answers to questions from the Russian mass media by Sergey Lavrov summarizing the results "
    "of the meeting with the US Secretary of State John Kerry “on the side-lines” of the 68th "
    "session of the UN General Assembly, New York, 24 09 2013",
    "Speech of and answers to questions by Russian Foreign Minister Sergey Lavrov during joint "
    "press conference summarizing the results of negotiations with US Secretary of State John "
    "Kerry, Moscow, 7 May 2013",
)
LAVROV = MinisterRef(
    id="sergey-lavrov",
    name="Sergey Lavrov",
    title="Minister of Foreign Affairs of the Russian Federation",
)


def parse(text: str) -> ArchivePage:
    return parse_archive_page(text, source="000_a4da26f8be4eafc8.txt")


def test_the_real_page_every_field() -> None:
    page = parse(PAGE)
    assert page.source == "000_a4da26f8be4eafc8.txt"
    assert page.title == TITLE
    assert page.kind == "comment"
    assert page.minister == LAVROV
    assert page.location == "Beijing"
    assert page.occurred_on == date(2014, 11, 8)
    assert page.published_at == datetime(2014, 11, 17, 16, 58, tzinfo=MOSCOW)
    assert page.published_at.utcoffset() is not None
    assert page.published_at.astimezone(UTC) == datetime(2014, 11, 17, 13, 58, tzinfo=UTC)
    assert len(page.paragraphs) == 9
    assert page.paragraphs[0].startswith(FIRST_PARAGRAPH_START)
    assert page.paragraphs[0].endswith(FIRST_PARAGRAPH_END)
    assert page.paragraphs[-1].startswith(LAST_PARAGRAPH_START)
    assert page.paragraphs[-1].endswith(LAST_PARAGRAPH_END)
    assert page.paragraphs[1] == (
        "We also discussed the situation in the Middle East and North Africa with a focus on the "
        "main threat –the Islamic State, Jabhat al-Nusra and other terrorist and extremist "
        "organisations."
    )
    assert page.views == 1993
    assert page.categories == ("Minister S.Lavrov",)
    assert page.tags == ()
    assert page.related_titles == RELATED
    assert page.language == "en"
    assert page.archive_months == (
        ArchiveMonth(2020, 7, 3),
        ArchiveMonth(2020, 6, 27),
        ArchiveMonth(2020, 5, 19),
        ArchiveMonth(2020, 4, 20),
        ArchiveMonth(2020, 3, 23),
        ArchiveMonth(2020, 2, 21),
    )


def test_no_navigation_archive_list_or_footer_in_the_body() -> None:
    body = "\n".join(parse(PAGE).paragraphs)
    for leftover in ("Golden Collection", "July 2020", "Category:", "Views:", "Print version", "•"):
        assert leftover not in body
    assert TITLE not in body
    assert "17-11-2014" not in body


@pytest.mark.parametrize(
    ("title", "location", "day"),
    [
        (TITLE, "Beijing", date(2014, 11, 8)),
        (RELATED[0], "Moscow", date(2015, 8, 17)),
        (RELATED[1], "Moscow", date(2015, 7, 3)),
        (RELATED[2], "The Hague", date(2014, 3, 24)),
        (RELATED[3], "New York", date(2013, 9, 24)),
        (RELATED[4], "Moscow", date(2013, 5, 7)),
        ("Interview to Kommersant, 2 Sept. 2016", None, date(2016, 9, 2)),
        ("Remarks, Geneva, 2014-01-22", "Geneva", date(2014, 1, 22)),
        ("Remarks, Geneva, 22.01.2014.", "Geneva", date(2014, 1, 22)),
        ("Комментарий Министра, Пекин, 8 ноября 2014 года", "Пекин", date(2014, 11, 8)),
        ("Statement on the anniversary", None, None),
        ("Statement, Moscow, 31 February 2014", None, None),
        ("Statement, Moscow, Smarch 3, 2014", None, None),
    ],
)
def test_title_tails(title: str, location: str | None, day: date | None) -> None:
    assert parse_title_tail(title) == (location, day)


@pytest.mark.parametrize(
    ("title", "kind"),
    [
        (TITLE, "comment"),
        (RELATED[0], "statement"),
        (RELATED[1], "remarks"),
        (RELATED[2], "speech"),
        (RELATED[3], "answers"),
        (RELATED[4], "speech"),
        ("Interview of Sergey Lavrov to Kommersant", "interview"),
        ("Article by Sergey Lavrov for Foreign Affairs", "article"),
        ("Greetings to the participants of the forum", "message"),
        ("Выступление Министра иностранных дел России С.В.Лаврова", "speech"),
        ("Notes on the weather", "other"),
    ],
)
def test_kind_from_title_wording(title: str, kind: str) -> None:
    assert kind_of_title(title) == kind


# --- variants of the real page -----------------------------------------------------------


def test_crlf_line_endings() -> None:
    assert parse(PAGE.replace("\n", "\r\n")) == parse(PAGE)
    assert parse(PAGE.replace("\n", "\r")) == parse(PAGE)


def test_no_views_line() -> None:
    text = "\n".join(line for line in PAGE.split("\n") if "Views:" not in line)
    page = parse(text)
    assert page.views is None
    assert page.related_titles == RELATED
    assert page.categories == ("Minister S.Lavrov",)


def test_no_related_list() -> None:
    text = PAGE[: PAGE.index("Print version |") + len("Print version |")] + "\n"
    page = parse(text)
    assert page.related_titles == ()
    assert page.views == 1993
    assert len(page.paragraphs) == 9


def test_no_footer_at_all_still_needs_a_minister_from_the_title() -> None:
    text = PAGE[: PAGE.index("  • Category")]
    page = parse(text)
    assert page.minister == LAVROV
    assert (page.views, page.categories, page.related_titles) == (None, (), ())
    assert len(page.paragraphs) == 9


def test_tags_are_read_apart_from_the_category() -> None:
    text = PAGE.replace(
        "  • Category: Minister S.Lavrov\n",
        "  • Category: Minister S.Lavrov\n  • Tags: NATO, Middle East; Syria |\n",
    )
    page = parse(text)
    assert page.categories == ("Minister S.Lavrov",)
    assert page.tags == ("NATO", "Middle East", "Syria")
    assert page.minister == LAVROV
    assert page.related_titles == RELATED
    assert len(page.paragraphs) == 9
    russian = parse(_russian_page().replace("Просмотров:", "Теги: Сирия\n  • Просмотров:"))
    assert russian.tags == ("Сирия",)
    assert russian.categories == ("Министр С.Лавров",)


def test_extra_whitespace() -> None:
    lines = PAGE.split("\n")
    noisy = "\n\n".join(f" \t {line.replace(' ', '  ')}\u00a0 " for line in lines)
    page = parse("\ufeff\n\n" + noisy + "\n\n\n")
    assert page == parse(PAGE)


def test_views_with_other_separators() -> None:
    for shown in ("1993", "1,993", "1\u00a0993", "1\u202f993"):
        assert parse(PAGE.replace("Views: 1 993 |", f"Views: {shown}")).views == 1993
    assert parse(PAGE.replace("Views: 1 993 |", "Views: many")).views is None
    huge = parse(PAGE.replace("Views: 1 993 |", "Views: " + "9" * 5000))
    assert huge.views is None


CYRILLIC_TITLE = (
    "Комментарий Министра иностранных дел России С.В.Лаврова по итогам встречи с "
    "Государственным секретарём США Дж.Керри, Пекин, 8 ноября 2014 года"
)
CYRILLIC_PARAGRAPHS = (
    "Встреча с Госсекретарём США Джоном Керри продолжалась полтора часа.",
    "Мы обсудили ход переговоров по иранской ядерной программе.",
    "Ситуация на Ближнем Востоке и в Северной Африке также была в центре внимания.",
)


CYRILLIC_RELATED = (
    "Выступление Министра иностранных дел России С.В.Лаврова, Москва, 17 августа 2015 года"
)


def _russian_page() -> str:
    head = PAGE[: PAGE.index(TITLE)]
    head = head.replace("July 2020 (3)", "Июль 2020 (3)")
    footer = (
        "  • Категория: Министр С.Лавров\n"
        "  • Просмотров: 1 993 |\n"
        "  • Версия для печати |\n"
        f"  • {CYRILLIC_RELATED}\n"
    )
    body = "\n\n".join(CYRILLIC_PARAGRAPHS)
    return f"{head}{CYRILLIC_TITLE}\n\n17-11-2014, 16:58\n\n{body}\n\n\n{footer}"


def test_cyrillic_page() -> None:
    page = parse(_russian_page())
    assert page.title == CYRILLIC_TITLE
    assert page.kind == "comment"
    assert page.minister == LAVROV
    assert page.location == "Пекин"
    assert page.occurred_on == date(2014, 11, 8)
    assert page.published_at == datetime(2014, 11, 17, 16, 58, tzinfo=MOSCOW)
    assert page.paragraphs == CYRILLIC_PARAGRAPHS
    assert page.views == 1993
    assert page.categories == ("Министр С.Лавров",)
    assert page.related_titles == (CYRILLIC_RELATED,)
    assert page.language == "ru"
    assert page.archive_months[0] == ArchiveMonth(2020, 7, 3)


def test_cyrillic_body_with_english_labels() -> None:
    first = PAGE.index(FIRST_PARAGRAPH_START)
    end = PAGE.index(FIRST_PARAGRAPH_END) + len(FIRST_PARAGRAPH_END)
    text = PAGE[:first] + CYRILLIC_PARAGRAPHS[0] + PAGE[end:]
    page = parse(text)
    assert page.paragraphs[0] == CYRILLIC_PARAGRAPHS[0]
    assert page.language == "en"
    assert len(page.paragraphs) == 9


def test_unknown_minister_is_named_from_category_and_title() -> None:
    text = PAGE.replace("Minister S.Lavrov", "Deputy Minister A.Meshkov").replace(
        "Foreign Minister Sergey Lavrov on his", "Deputy Foreign Minister Alexey Meshkov on his"
    )
    assert parse(text).minister == MinisterRef(
        id="alexey-meshkov",
        name="Alexey Meshkov",
        title="Deputy Minister of Foreign Affairs of the Russian Federation",
    )


# --- errors ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "missing"),
    [
        ("", "no publication date line"),
        (PAGE.replace("17-11-2014, 16:58", "17 November 2014"), "no publication date line"),
        (PAGE.replace("17-11-2014, 16:58", "31-02-2014, 16:58"), "not a valid date and time"),
        (PAGE.replace("17-11-2014, 16:58", "17-11-2014, 25:58"), "not a valid date and time"),
        (PAGE.replace(TITLE, ""), "no title"),
        (PAGE[: PAGE.index(FIRST_PARAGRAPH_START)], "no body paragraphs"),
        (
            PAGE.replace("Minister S.Lavrov", "Foreign policy").replace("Sergey Lavrov", "he"),
            "no minister",
        ),
    ],
)
def test_errors_name_the_source_and_what_is_missing(text: str, missing: str) -> None:
    with pytest.raises(PageParseError) as caught:
        parse(text)
    assert caught.value.source == "000_a4da26f8be4eafc8.txt"
    assert str(caught.value).startswith("000_a4da26f8be4eafc8.txt: cannot parse archive page: ")
    assert missing in str(caught.value)
    assert caught.value.code == "BAD_USER_INPUT"


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.text())
def test_arbitrary_text_parses_or_raises_page_parse_error(text: str) -> None:
    try:
        page = parse_archive_page(text, source="fuzz.txt")
    except PageParseError as error:
        assert error.source == "fuzz.txt"
        return
    assert page.title
    assert page.paragraphs


_LINES = PAGE.split("\n")


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.one_of(
            st.sampled_from(_LINES),
            st.text(max_size=40),
            st.sampled_from(
                [
                    "  • Views: 1 2 3 |",
                    "  • Category: Minister",
                    "•",
                    "01-01-0001, 00:00",
                    "99-99-9999, 99:99",
                    "Statement, Moscow, 29 February 2015",
                    "May 2020 (99999999999)",
                ]
            ),
        ),
        max_size=60,
    )
)
def test_mangled_pages_parse_or_raise_page_parse_error(lines: list[str]) -> None:
    with contextlib.suppress(PageParseError):
        parse_archive_page("\n".join(lines), source="mangled.txt")
