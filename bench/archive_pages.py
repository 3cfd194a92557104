"""Generated archive pages in the seed page's layout, for the import benchmark and its tests.

Each page keeps the seed page's navigation, month list and footer, with its body paragraphs
shuffled, and gets a distinct title (with a place and a date in its tail), publication time and
view count. Its related titles are other pages of the same set, so every link can be resolved.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Final

from domain.moscow_time import MOSCOW

#: The seed page, beside the worktree (as the archive-page tests find it).
SEED_PAGE: Final = (
    Path(__file__).resolve().parents[2] / "shared" / "seeds" / "000_a4da26f8be4eafc8.txt"
)

_PLACES: Final = ("Moscow", "Beijing", "Geneva", "New York", "Minsk", "Vienna", "Paris", "Ankara")
_TOPICS: Final = (
    "the situation in Syria",
    "talks on Iran's nuclear programme",
    "the Middle East settlement",
    "relations with the European Union",
    "the crisis in Ukraine",
    "cooperation in the Arctic",
    "strategic stability",
    "the work of the UN Security Council",
)
_KINDS: Final = ("Comment by", "Speech by", "Remarks by", "Interview with", "Article by")
_MONTHS: Final = (
    "January", "February", "March", "April", "May", "June", "July", "August", "September",
    "October", "November", "December",
)  # fmt: skip
RELATED_PER_PAGE: Final = 5


@dataclass(frozen=True, slots=True)
class GeneratedPage:
    """A page's file name, text and the facts a test checks the import against."""

    name: str
    title: str
    #: Moscow time, as the page shows it.
    published_at: datetime
    views: int
    related: tuple[str, ...]
    text: str


def seed_text() -> str:
    """The seed page shipped with the tests (the layout every generated page copies)."""
    return SEED_PAGE.read_text(encoding="utf-8")


def title_of(index: int) -> str:
    """The distinct title of page ``index``: a kind word, a topic, a place and a date."""
    day = _day(index)
    kind = _KINDS[index % len(_KINDS)]
    topic = _TOPICS[(index // len(_KINDS)) % len(_TOPICS)]
    place = _PLACES[index % len(_PLACES)]
    return (
        f"{kind} Foreign Minister Sergey Lavrov on {topic}, part {index + 1}, "
        f"{place}, {day.day} {_MONTHS[day.month - 1]} {day.year}"
    )


def _day(index: int) -> datetime:
    return datetime(2010, 1, 1, 9, 0) + timedelta(days=index // 3, minutes=index % 3 * 7)


def generate(count: int, seed: int = 20) -> list[GeneratedPage]:
    """``count`` pages; each lists ``RELATED_PER_PAGE`` other pages of the set as related."""
    rng = random.Random(seed)
    template = seed_text()
    lines = template.splitlines()
    title_index = next(i for i, line in enumerate(lines) if line.startswith("Comment by"))
    date_index = title_index + 2
    footer_index = next(i for i, line in enumerate(lines) if "Category:" in line)
    head = lines[:title_index]
    body = [line for line in lines[date_index + 1 : footer_index] if line.strip()]
    pages: list[GeneratedPage] = []
    for index in range(count):
        title = title_of(index)
        # Published on the day the title names or a day later, never before it.
        published = (_day(index) + timedelta(days=index % 2, hours=3)).replace(tzinfo=MOSCOW)
        paragraphs = body[:]
        rng.shuffle(paragraphs)
        others = rng.sample(range(count - 1), min(RELATED_PER_PAGE, count - 1))
        related = tuple(title_of(o if o < index else o + 1) for o in others)
        views = 1000 + index * 7 + rng.randrange(7)
        text = "\n".join(
            [
                *head,
                title,
                "",
                published.strftime("%d-%m-%Y, %H:%M"),
                "",
                *(p + "\n" for p in paragraphs),
                "",
                "  • Category: Minister S.Lavrov",
                f"  • Views: {views:,} |".replace(",", " "),
                "  • Print version |",
                *(f"  • {r}" for r in related),
            ]
        )
        pages.append(GeneratedPage(f"{index:06}.txt", title, published, views, related, text))
    return pages


def write(pages: list[GeneratedPage], folder: Path) -> list[Path]:
    """Write each page to ``folder``; returns the paths in the pages' order."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for page in pages:
        path = folder / page.name
        path.write_text(page.text, encoding="utf-8")
        paths.append(path)
    return paths
