"""Slugs for topics, statements and ministers.

The choice: slugs are lowercase words joined by ``-``. Cyrillic is transliterated to Latin
(a simple BGN/PCGN-like table, so "Ближний Восток" becomes ``blizhniy-vostok`` and Russian and
English pages about the same minister get the same id), accents are stripped from Latin letters
("Café" becomes ``cafe``), apostrophes vanish ("Lavrov's" becomes ``lavrovs``), and letters of
other scripts are kept lowercased rather than dropped, so a Greek or Chinese topic still gets a
non-empty, readable slug. Everything else separates words.
"""

from __future__ import annotations

import unicodedata
from typing import Final

MAX_SLUG_LENGTH: Final = 200
#: Slugs made from titles are cut shorter, at a word boundary, to keep URLs usable.
MAX_TITLE_SLUG_LENGTH: Final = 100

_CYRILLIC: Final = {
    "а": "a", "б": "b", "в": "v", "г": "g", "д": "d", "е": "e", "ё": "yo", "ж": "zh",
    "з": "z", "и": "i", "й": "y", "к": "k", "л": "l", "м": "m", "н": "n", "о": "o",
    "п": "p", "р": "r", "с": "s", "т": "t", "у": "u", "ф": "f", "х": "kh", "ц": "ts",
    "ч": "ch", "ш": "sh", "щ": "shch", "ъ": "", "ы": "y", "ь": "", "э": "e", "ю": "yu",
    "я": "ya", "і": "i", "ї": "yi", "є": "ye", "ґ": "g", "ў": "u", "ј": "j", "љ": "lj",
    "њ": "nj", "ћ": "c", "ђ": "dj", "џ": "dz", "ѕ": "dz",
}  # fmt: skip

# Latin letters that do not decompose into a base letter plus accents.
_LATIN_EXTRA: Final = {
    "ø": "o", "æ": "ae", "œ": "oe", "ł": "l", "đ": "d", "ð": "d", "þ": "th", "ı": "i",
    "ħ": "h", "ŧ": "t",
}  # fmt: skip

_DROPPED: Final = frozenset("'’‘ʼ`´")


def _transliterate(ch: str) -> str:
    if ch in _CYRILLIC:
        return _CYRILLIC[ch]
    if ch in _LATIN_EXTRA:
        return _LATIN_EXTRA[ch]
    decomposed = unicodedata.normalize("NFKD", ch)
    if decomposed and decomposed[0].isascii():
        return "".join(c for c in decomposed if not unicodedata.combining(c))
    # Non-Latin scripts (Hangul, Greek, ...) would change letters if decomposed: keep them.
    return ch


class _SlugTable(dict[int, str]):
    """``str.translate``'s table: each character to its slug letters, separators to a space.

    Filled on first sight of each character, so a title costs one ``translate`` pass instead
    of a transliteration call per character. Marks stay as they are: whether one is kept
    depends on its neighbours, which only the character-by-character path can see.
    """

    def __missing__(self, code: int) -> str:
        ch = chr(code)
        if ch in _DROPPED:
            out = ""
        elif unicodedata.category(ch).startswith("M"):
            out = ch
        else:
            out = "".join(c if c.isalnum() else " " for c in _transliterate(ch))
        self[code] = out
        return out


_TABLE: Final = _SlugTable()


def slugify(text: str) -> str:
    """Turn a display name into a slug ("Middle East" -> "middle-east"); may return ""."""
    folded = unicodedata.normalize("NFKC", text).casefold()
    words = folded.translate(_TABLE)
    if words.isascii():
        # Everything transliterated (the common case): the words, joined by hyphens.
        return "-".join(words.split())
    return _slugify_by_character(folded)


def _slugify_by_character(folded: str) -> str:
    # Other scripts and marks: the letters stay, and a mark goes only after a Latin letter.
    parts: list[str] = []
    hyphen = False
    for ch in folded:
        if ch in _DROPPED:
            continue
        if unicodedata.category(ch).startswith("M"):
            # A mark left over after casefolding ("İ" gives "i" plus a dot) is an accent on a
            # Latin letter and goes; on other scripts it belongs to the word and stays.
            if parts and not hyphen and not parts[-1].isascii():
                parts.append(ch)
            continue
        for out in _transliterate(ch):
            if out.isalnum():
                if hyphen and parts:
                    parts.append("-")
                hyphen = False
                parts.append(out)
            else:
                hyphen = True
    return "".join(parts)


def truncate_slug(slug: str, limit: int) -> str:
    """Cut a slug to at most ``limit`` characters, at a word boundary when there is one."""
    if len(slug) <= limit:
        return slug
    cut = slug[: limit + 1]
    boundary = cut.rfind("-")
    if boundary > 0:
        return cut[:boundary]
    return slug[:limit]


def title_slug(title: str) -> str:
    """The slug a statement gets from its title when none is given."""
    return truncate_slug(slugify(title), MAX_TITLE_SLUG_LENGTH)


def slug_problem(slug: str) -> str | None:
    """Why ``slug`` is not a valid slug, or None when it is one."""
    if not slug:
        return "it is empty"
    if len(slug) > MAX_SLUG_LENGTH:
        return f"it has {len(slug)} characters; at most {MAX_SLUG_LENGTH} are allowed"
    if slugify(slug) != slug:
        return f"it is not in canonical form (expected {slugify(slug)!r})"
    return None


def is_valid_slug(slug: str) -> bool:
    """Whether ``slug`` is non-empty, short enough and already in canonical form."""
    return slug_problem(slug) is None
