"""Parsing a scraped archive page (the format of ``shared/seeds/*.txt``) into plain values.

The layout: site navigation, the archive month list ("July 2020 (3)"), the title, the
publication time ("17-11-2014, 16:58", Moscow time), the body paragraphs (one per line), then
a bulleted footer ("Category: ...", "Tags: ...", "Views: 1 993 |", "Print version |") followed
by the titles of related statements. English and Russian labels are understood.

The site's category names who spoke ("Minister S.Lavrov"): it gives the minister, never a
topic. Its tags ("Tags: NATO, Syria"), when a page lists them, are topics.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime
from typing import Final

from domain.errors import PageParseError
from domain.events import MinisterRef
from domain.ministers import (
    DEPUTY_FOREIGN_MINISTER,
    FIRST_DEPUTY_FOREIGN_MINISTER,
    FOREIGN_MINISTER,
    KNOWN_MINISTERS,
    find_known_minister,
)
from domain.moscow_time import MOSCOW
from domain.slugs import slugify

_MONTHS: Final = {
    "january": 1, "jan": 1, "february": 2, "feb": 2, "march": 3, "mar": 3, "april": 4,
    "apr": 4, "may": 5, "june": 6, "jun": 6, "july": 7, "jul": 7, "august": 8, "aug": 8,
    "september": 9, "sep": 9, "sept": 9, "october": 10, "oct": 10, "november": 11, "nov": 11,
    "december": 12, "dec": 12,
    "январь": 1, "января": 1, "февраль": 2, "февраля": 2, "март": 3, "марта": 3,
    "апрель": 4, "апреля": 4, "май": 5, "мая": 5, "июнь": 6, "июня": 6, "июль": 7,
    "июля": 7, "август": 8, "августа": 8, "сентябрь": 9, "сентября": 9, "октябрь": 10,
    "октября": 10, "ноябрь": 11, "ноября": 11, "декабрь": 12, "декабря": 12,
}  # fmt: skip

_NAVIGATION: Final = frozenset(
    {
        "editor's column",
        "golden collection",
        "mfa russia news",
        "all tags",
        "archive material",
        "колонка редактора",
        "золотая коллекция",
        "новости мид россии",
        "все теги",
        "архив",
        "архивные материалы",
    }
)

# Kinds by the words that announce them; the earliest word in the title decides.
_KIND_WORDS: Final = (
    (r"comment(?:s|ary)?|комментари\w*", "comment"),
    (r"speech(?:es)?|выступлени\w*|речь", "speech"),
    (r"interview(?:s)?|интервью", "interview"),
    (r"remarks|вступительное\s+слово", "remarks"),
    (r"answers?|ответы?|ответов", "answers"),
    (r"article(?:s)?|op-ed|стать[яи]", "article"),
    (r"statements?|заявлени\w*", "statement"),
    (r"address(?:es)?|обращени\w*", "address"),
    (r"briefing(?:s)?|брифинг\w*", "briefing"),
    (r"message(?:s)?|greetings?|послани\w*|приветстви\w*", "message"),
)
# One search for all kinds: the leftmost match wins, and at one position the earlier kind.
_KIND_PATTERN: Final = re.compile(
    "|".join(rf"(?<!\w)(?P<k{i}>{words})(?!\w)" for i, (words, _) in enumerate(_KIND_WORDS)),
    re.IGNORECASE,
)

_CYRILLIC_LEADS: Final = (b"\xd0", b"\xd1", b"\xd2", b"\xd3")
_NOT_ASCII_LETTERS: Final = bytes(b for b in range(128) if not chr(b).isalpha())
_INVISIBLE_CHARS: Final = "\ufeff\u200b\u200c\u200d\u2060"
# Looked for first: a substring search is far cheaper than a substitution that finds nothing.
_INVISIBLE: Final = re.compile(f"[{_INVISIBLE_CHARS}]")
_BULLET: Final = re.compile(r"^[•·▪●◦‣∙]\s*")
_MONTH_LINE: Final = re.compile(
    r"(?P<month>[^\W\d_]+) (?P<year>[0-9]{4}) ?\((?P<count>[0-9]{1,9})\)"
)
_PUBLISHED: Final = re.compile(
    r"(?P<d>[0-9]{1,2})[-./](?P<m>[0-9]{1,2})[-./](?P<y>[0-9]{4}),? ?"
    r"(?P<hh>[0-9]{1,2}):(?P<mm>[0-9]{2})"
)
_CATEGORY: Final = re.compile(
    r"(?:categor(?:y|ies)|категори[яи]|рубрик[аи])\s*:\s*(?P<value>.*?)\s*\|?", re.IGNORECASE
)
_TAGS: Final = re.compile(r"(?:tags|теги)\s*:\s*(?P<value>.*?)\s*\|?", re.IGNORECASE)
_VIEWS: Final = re.compile(
    r"(?:views|просмотр(?:ов|ы)?)\s*:\s*(?P<value>[0-9][0-9 .,'’]*)\s*\|?", re.IGNORECASE
)
_PRINT: Final = re.compile(r"(?:print version|версия для печати)\s*\|?", re.IGNORECASE)

_NAME: Final = r"[^\W\d_]+(?:-[^\W\d_]+)?"
_CATEGORY_MINISTER: Final = re.compile(
    r"(?P<role>(?:first\s+)?(?:deputy\s+)?(?:foreign\s+)?minister"
    r"|(?:первый\s+)?(?:заместитель\s+)?министр\w*)\s*"
    rf"(?:(?P<initials>(?:[^\W\d_]{{1,2}}\.\s*)+)|(?P<first>{_NAME})\s+)"
    rf"(?P<surname>{_NAME})",
    re.IGNORECASE,
)
_TITLE_MINISTER: Final = re.compile(
    r"(?P<role>(?:First\s+)?(?:Deputy\s+)?(?:Foreign\s+)?Minister)\s+"
    r"(?:of\s+Foreign\s+Affairs\s+)?"
    r"(?P<first>[A-Z][a-z]+)\s+(?P<surname>[A-Z][a-z]+(?:-[A-Z][a-z]+)?)"
)

_TAIL_JUNK: Final = re.compile(r"\s*(?:года|г\.)?\s*\.?\s*$")
_TAIL_DATES: Final = (
    re.compile(r"(?<!\w)(?P<d>[0-9]{1,2})\s+(?P<mon>[^\W\d_]+)\.?,?\s+(?P<y>[0-9]{4})$"),
    re.compile(
        r"(?<!\w)(?P<mon>[^\W\d_]+)\.?\s+(?P<d>[0-9]{1,2})(?:st|nd|rd|th)?,?\s+(?P<y>[0-9]{4})$"
    ),
    re.compile(r"(?<!\w)(?P<d>[0-9]{1,2})[ ./-](?P<m>[0-9]{1,2})[ ./-](?P<y>[0-9]{4})$"),
    re.compile(r"(?<!\w)(?P<y>[0-9]{4})-(?P<m>[0-9]{1,2})-(?P<d>[0-9]{1,2})$"),
)
_SEPARATORS: Final = " ,.;:–—-"
_MAX_PLACE_LENGTH: Final = 60
_MAX_PLACE_WORDS: Final = 5
_MAX_VIEW_DIGITS: Final = 15


@dataclass(frozen=True, slots=True)
class ArchiveMonth:
    """An entry of the archive month list: "July 2020 (3)"."""

    year: int
    month: int
    count: int


@dataclass(frozen=True, slots=True)
class ArchivePage:
    """Everything the importer needs from one archive page."""

    source: str
    title: str
    kind: str
    minister: MinisterRef
    location: str | None
    occurred_on: date | None
    published_at: datetime
    paragraphs: tuple[str, ...]
    language: str
    views: int | None
    categories: tuple[str, ...]
    tags: tuple[str, ...]
    related_titles: tuple[str, ...]
    archive_months: tuple[ArchiveMonth, ...]


def parse_archive_page(text: str, *, source: str) -> ArchivePage:
    """Parse one page; raises PageParseError (and nothing else) naming what is missing."""
    if any(ch in text for ch in _INVISIBLE_CHARS):
        text = _INVISIBLE.sub("", text)
    lines = [_clean(line) for line in text.splitlines()]

    published_index, published_at = _published(lines, source)
    title = _title(lines, published_index, source)
    footer_index = _footer_start(lines, published_index + 1)
    paragraphs = tuple(line for line in lines[published_index + 1 : footer_index] if line)
    if not paragraphs:
        raise PageParseError(source, "no body paragraphs after the publication date line")
    categories, tags, views, related = _footer(lines[footer_index:])
    minister = _minister(categories, title)
    if minister is None:
        raise PageParseError(
            source,
            "no minister: expected a 'Category: Minister S.Lavrov' line "
            "or a minister named in the title",
        )
    location, occurred_on = parse_title_tail(title)
    return ArchivePage(
        source=source,
        title=title,
        kind=kind_of_title(title),
        minister=minister,
        location=location,
        occurred_on=occurred_on,
        published_at=published_at,
        paragraphs=paragraphs,
        language=_language(title + " " + paragraphs[0]),
        views=views,
        categories=categories,
        tags=tags,
        related_titles=related,
        archive_months=_archive_months(lines[:published_index]),
    )


def kind_of_title(title: str) -> str:
    """The statement kind announced by the earliest kind word in the title, else "other"."""
    match = _KIND_PATTERN.search(title)
    if match is None or match.lastgroup is None:
        return "other"
    return _KIND_WORDS[int(match.lastgroup[1:])][1]


def parse_title_tail(title: str) -> tuple[str | None, date | None]:
    """The place and date a title ends with ("..., Beijing, 8 November 2014"), when present."""
    trimmed = _TAIL_JUNK.sub("", title)
    for pattern in _TAIL_DATES:
        match = pattern.search(trimmed)
        if match is None:
            continue
        day = _date(match)
        if day is None:
            continue
        return _place(trimmed[: match.start()].rstrip(_SEPARATORS)), day
    return None, None


# --- pieces ------------------------------------------------------------------------------


def _clean(line: str) -> str:
    # str.split() splits on exactly the characters that ``\s`` matches, several times faster.
    return " ".join(line.split())


def _published(lines: list[str], source: str) -> tuple[int, datetime]:
    for index, line in enumerate(lines):
        match = _PUBLISHED.fullmatch(line)
        if match is None:
            continue
        try:
            value = datetime(
                int(match["y"]),
                int(match["m"]),
                int(match["d"]),
                int(match["hh"]),
                int(match["mm"]),
                tzinfo=MOSCOW,
            )
        except ValueError:
            raise PageParseError(
                source, f"the publication date line {line!r} is not a valid date and time"
            ) from None
        return index, value
    raise PageParseError(
        source, "no publication date line (like '17-11-2014, 16:58') after the title"
    )


def _title(lines: list[str], published_index: int, source: str) -> str:
    for line in reversed(lines[:published_index]):
        if not line:
            continue
        if _is_month_line(line) or _is_navigation(line):
            break
        return line
    raise PageParseError(
        source, "no title: expected it on the line before the publication date line"
    )


def _is_month_line(line: str) -> bool:
    match = _MONTH_LINE.fullmatch(line)
    return match is not None and match["month"].casefold() in _MONTHS


def _is_navigation(line: str) -> bool:
    return line.replace("’", "'").casefold() in _NAVIGATION


def _archive_months(lines: list[str]) -> tuple[ArchiveMonth, ...]:
    months: list[ArchiveMonth] = []
    for line in lines:
        match = _MONTH_LINE.fullmatch(line)
        if match is None:
            continue
        month = _MONTHS.get(match["month"].casefold())
        if month is not None:
            months.append(ArchiveMonth(int(match["year"]), month, int(match["count"])))
    return tuple(months)


def _footer_start(lines: list[str], start: int) -> int:
    for index in range(start, len(lines)):
        line = lines[index]
        if _BULLET.match(line) or _footer_label(line):
            return index
    return len(lines)


def _footer_label(line: str) -> bool:
    return any(p.fullmatch(line) for p in (_CATEGORY, _TAGS, _VIEWS, _PRINT))


def _footer(
    lines: list[str],
) -> tuple[tuple[str, ...], tuple[str, ...], int | None, tuple[str, ...]]:
    categories: list[str] = []
    tags: list[str] = []
    views: int | None = None
    related: list[str] = []
    for raw in lines:
        bullet = _BULLET.match(raw)
        line = raw[bullet.end() :].strip() if bullet else raw
        if not line:
            continue
        if match := _CATEGORY.fullmatch(line):
            categories.extend(c.strip() for c in re.split(r"[;,]", match["value"]) if c.strip())
        elif match := _TAGS.fullmatch(line):
            tags.extend(t.strip() for t in re.split(r"[;,]", match["value"]) if t.strip())
        elif match := _VIEWS.fullmatch(line):
            digits = re.sub(r"[^0-9]", "", match["value"])
            # Guards int() against absurd digit strings (and its conversion limit).
            if 0 < len(digits) <= _MAX_VIEW_DIGITS and views is None:
                views = int(digits)
        elif _PRINT.fullmatch(line):
            continue
        elif bullet:
            related.append(line.rstrip(" |"))
    return tuple(categories), tuple(tags), views, tuple(r for r in related if r)


def _minister(categories: tuple[str, ...], title: str) -> MinisterRef | None:
    for category in categories:
        match = _CATEGORY_MINISTER.search(category)
        if match is None:
            continue
        surname = match["surname"]
        initial = (match["initials"] or match["first"] or "")[:1]
        known = find_known_minister(initial, surname)
        if known is not None:
            return known
        first = match["first"] or _first_name_in(title, initial, surname)
        name = f"{first} {surname}" if first else f"{(match['initials'] or '').strip()} {surname}"
        return _make_minister(name, match["role"])
    match = _TITLE_MINISTER.search(title)
    if match is not None:
        known = find_known_minister(match["first"][:1], match["surname"])
        if known is not None:
            return known
        return _make_minister(f"{match['first']} {match['surname']}", match["role"])
    for minister in KNOWN_MINISTERS:
        if minister.name in title:
            return minister
    return None


def _first_name_in(title: str, initial: str, surname: str) -> str | None:
    if not initial:
        return None
    pattern = re.compile(rf"(?<!\w)({re.escape(initial)}[^\W\d_]+)\s+{re.escape(surname)}")
    match = pattern.search(title)
    return match.group(1) if match else None


def _make_minister(name: str, role: str) -> MinisterRef | None:
    name = " ".join(name.split())
    minister_id = slugify(name)
    if not minister_id:
        return None
    role_words = role.casefold()
    if "first" in role_words or "первый" in role_words:
        title = FIRST_DEPUTY_FOREIGN_MINISTER
    elif "deputy" in role_words or "заместитель" in role_words:
        title = DEPUTY_FOREIGN_MINISTER
    else:
        title = FOREIGN_MINISTER
    return MinisterRef(id=minister_id, name=name, title=title)


def _date(match: re.Match[str]) -> date | None:
    groups = match.groupdict()
    if groups.get("mon") is not None:
        month = _MONTHS.get(groups["mon"].casefold())
    else:
        month = int(groups["m"])
    if month is None:
        return None
    try:
        return date(int(groups["y"]), month, int(groups["d"]))
    except ValueError:
        return None


def _place(prefix: str) -> str | None:
    head, comma, place = prefix.rpartition(",")
    if not comma or not head.strip():
        return None
    place = place.strip()
    if (
        not place
        or len(place) > _MAX_PLACE_LENGTH
        or len(place.split()) > _MAX_PLACE_WORDS
        or not place[0].isupper()
        or any(ch.isdigit() for ch in place)
    ):
        return None
    return place


def _language(sample: str) -> str:
    # Counted on the encoded bytes, not in a loop over characters, which cost more than the
    # rest of the parse together: U+0400-U+04FF are exactly the UTF-8 sequences led by
    # 0xD0-0xD3, and the Latin letters counted are ASCII ones.
    encoded = sample.encode("utf-8", "surrogatepass")
    cyrillic = sum(encoded.count(lead) for lead in _CYRILLIC_LEADS)
    latin = len(sample.encode("ascii", "ignore").translate(None, _NOT_ASCII_LETTERS))
    return "ru" if cyrillic > latin else "en"
