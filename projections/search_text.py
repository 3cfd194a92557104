"""Search text as both full-text engines see it: the words, their normal form, the query syntax.

SQLite's FTS5 tokenizes with ``porter unicode61 remove_diacritics 2``: a word is a run of
letters and digits, folded to lower case; Latin letters lose their diacritics; words of 3 to 64
bytes are reduced to their Porter stem ("talks", "talked", "talking" to "talk").

PostgreSQL is made to see the same words. Its parser splits text otherwise (a hyphenated word,
a number with a dot, a host name is one token there), its dictionaries keep diacritics, and its
``lower()`` depends on the database's locale, so the projection splits and normalizes the text
here and hands PostgreSQL the words alone, separated by spaces. PostgreSQL then only stems: the
words FTS5 stems with the configuration :data:`TS_CONFIG` (Snowball's ``porter`` stemmer, the
algorithm FTS5 implements), the others with ``simple``. The two stemmers differ only on words
like "technology" (FTS5 applies Porter's later "-logi" and "-bli" rules), so a search finds the
same statements, and counts the same occurrences, on either database.

User text reaches SQL only as bound parameters: for FTS5 each word is a quoted string, for
PostgreSQL a quoted ``tsquery`` operand, so no operator, column filter or prefix mark comes from
user text (see :func:`fts5_query` and :func:`tsquery_operand`).
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

#: The PostgreSQL text search configuration that stems like FTS5's porter tokenizer.
TS_CONFIG: Final = "search_porter"
#: PostgreSQL's configuration for the words FTS5 leaves unstemmed: it only folds case.
TS_PLAIN: Final = "simple"
#: FTS5's porter tokenizer leaves shorter and longer words (in UTF-8 bytes) as they are.
MIN_STEMMED_BYTES: Final = 3
MAX_STEMMED_BYTES: Final = 64

MAX_SEARCH_LENGTH: Final = 500
MAX_SEARCH_WORDS: Final = 32

# Letters and digits make words; combining accents (U+0300-U+036F) belong to the word they mark
# and then vanish, as in unicode61; "_" and all punctuation split words.
_WORD: Final = re.compile(r"(?:[^\W_]|[\u0300-\u036f])+")
_COMBINING: Final = re.compile(r"[\u0300-\u036f]+")
# A search that ends with "*" right after a letter or digit makes its last word a prefix.
_PREFIX_MARK: Final = re.compile(r"[^\W_]\*\s*$")


def words(text: str) -> list[str]:
    """The words of ``text`` in their normal form, in order: what FTS5 indexes before stemming."""
    found = (_normal(w) for w in _WORD.findall(text))
    return [w for w in found if w]


@functools.lru_cache(maxsize=1 << 16)
def _normal(word: str) -> str:
    if word.isascii():
        return word.lower()
    folded = _COMBINING.sub("", word.lower())
    return "".join(_without_diacritic(c) if not c.isascii() else c for c in folded)


def _without_diacritic(char: str) -> str:
    # unicode61's remove_diacritics 2 strips Latin letters only: "é" becomes "e", "й" stays.
    parts = unicodedata.normalize("NFD", char)
    if len(parts) > 1 and parts[0].isascii() and _COMBINING.fullmatch(parts[1:]):
        return parts[0]
    return char


def is_stemmed(word: str) -> bool:
    """Whether FTS5's porter tokenizer stems this (normal) word."""
    size = len(word.encode())
    return MIN_STEMMED_BYTES <= size <= MAX_STEMMED_BYTES


@dataclass(frozen=True, slots=True)
class SearchTerms:
    """A user's search: words that must all occur; with ``prefix``, the last one begins a word."""

    words: tuple[str, ...]
    prefix: bool = False


def search_terms(text: str) -> SearchTerms:
    """The terms of a user's search text; raises ValueError if it is too long.

    Punctuation only separates words, and so does a ``*`` anywhere but right after the last
    word, where it makes that word a prefix ("nucl*" finds "nuclear").
    """
    if not isinstance(text, str):
        raise ValueError("search: must be a string")
    if len(text) > MAX_SEARCH_LENGTH:
        raise ValueError(f"search: at most {MAX_SEARCH_LENGTH} characters")
    found = words(text)
    if len(found) > MAX_SEARCH_WORDS:
        raise ValueError(f"search: at most {MAX_SEARCH_WORDS} words")
    return SearchTerms(tuple(found), bool(found) and _PREFIX_MARK.search(text) is not None)


def fts5_query(terms: SearchTerms) -> str:
    """An FTS5 query matching documents that contain every term.

    Each word becomes a quoted string (inner quotes doubled), so FTS5 reads no operator, column
    filter or prefix mark from user text; only the prefix term gets a ``*``, after its quotes.
    """
    quoted = ['"' + word.replace('"', '""') + '"' for word in terms.words]
    if terms.prefix and quoted:
        quoted[-1] += "*"
    return " ".join(quoted)


def tsquery_operand(word: str, prefix: bool = False) -> str:
    """One ``to_tsquery`` operand for a word: quoted (quotes doubled, backslashes escaped)."""
    escaped = word.replace("\\", "\\\\").replace("'", "''")
    return f"'{escaped}'" + (":*" if prefix else "")


def term_operands(terms: SearchTerms) -> list[tuple[str, str]]:
    """(configuration, operand) of each term, for ``to_tsquery``: stemmed as FTS5 stems it."""
    last = len(terms.words) - 1
    return [
        (
            TS_CONFIG if is_stemmed(word) else TS_PLAIN,
            tsquery_operand(word, terms.prefix and i == last),
        )
        for i, word in enumerate(terms.words)
    ]


def index_text(text: str) -> tuple[str, str, int]:
    """A column's words for PostgreSQL: (the words to stem, the others, how many words).

    Each part is the words separated by single spaces, which PostgreSQL's parser reads as one
    token each; the count is the column's length in tokens, as FTS5 counts it for ``bm25``.
    """
    found = words(text)
    stemmed = [w for w in found if is_stemmed(w)]
    plain = [w for w in found if not is_stemmed(w)]
    return " ".join(stemmed), " ".join(plain), len(found)


def token_count(texts: Sequence[str]) -> int:
    """The number of words FTS5 indexes for these column values."""
    return sum(len(words(text)) for text in texts)
