"""Ministers with stable ids, so pages in English and Russian name the same person alike."""

from __future__ import annotations

from typing import Final

from domain.events import MinisterRef
from domain.slugs import slugify

FOREIGN_MINISTER: Final = "Minister of Foreign Affairs of the Russian Federation"
DEPUTY_FOREIGN_MINISTER: Final = "Deputy Minister of Foreign Affairs of the Russian Federation"
FIRST_DEPUTY_FOREIGN_MINISTER: Final = (
    "First Deputy Minister of Foreign Affairs of the Russian Federation"
)

KNOWN_MINISTERS: Final = (
    MinisterRef("sergey-lavrov", "Sergey Lavrov", FOREIGN_MINISTER),
    MinisterRef("igor-ivanov", "Igor Ivanov", FOREIGN_MINISTER),
    MinisterRef("sergey-ryabkov", "Sergey Ryabkov", DEPUTY_FOREIGN_MINISTER),
    MinisterRef("mikhail-bogdanov", "Mikhail Bogdanov", DEPUTY_FOREIGN_MINISTER),
    MinisterRef("alexander-grushko", "Alexander Grushko", DEPUTY_FOREIGN_MINISTER),
    MinisterRef("andrey-rudenko", "Andrey Rudenko", DEPUTY_FOREIGN_MINISTER),
    MinisterRef("sergey-vershinin", "Sergey Vershinin", DEPUTY_FOREIGN_MINISTER),
    MinisterRef("vladimir-titov", "Vladimir Titov", FIRST_DEPUTY_FOREIGN_MINISTER),
)


def find_known_minister(initial: str, surname: str) -> MinisterRef | None:
    """The known minister with this surname and first initial, in Latin or Cyrillic script."""
    surname_slug = slugify(surname)
    initial_slug = slugify(initial)
    if not surname_slug:
        return None
    for minister in KNOWN_MINISTERS:
        first, _, last = minister.id.partition("-")
        if last == surname_slug and (not initial_slug or first.startswith(initial_slug[0])):
            return minister
    return None
