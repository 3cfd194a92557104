"""Text the Statement type derives from its fields: the body, the print version, snippets.

* ``body`` is the paragraphs joined by blank lines (the form mutations take).
* ``print_version`` is plain text like the site's "print version": the title, the publication
  time as the site shows it (``17-11-2014, 16:58``, in the offset it was published with), the
  location when there is one, a blank line, then the body; it ends with a newline.
* ``snippet_html`` makes a search snippet safe to put into HTML: the read model marks matched
  words with ``<mark>``/``</mark>`` (:data:`projections.search_sql.SNIPPET_START`/``SNIPPET_END``)
  in unescaped text; every other character is HTML-escaped here, so the result contains no
  markup but those pairs. A marker that does not pair up (the text itself contained
  ``<mark>``) is escaped like any text.
"""

from __future__ import annotations

import html
import re
from collections.abc import Sequence
from datetime import datetime
from typing import Final

from projections.search_sql import SNIPPET_END, SNIPPET_START

_MARKERS: Final = re.compile(f"({re.escape(SNIPPET_START)}|{re.escape(SNIPPET_END)})")


def body_text(paragraphs: Sequence[str]) -> str:
    """The body: paragraphs separated by blank lines."""
    return "\n\n".join(paragraphs)


def site_time(moment: datetime) -> str:
    """A publication time as the site prints it: ``17-11-2014, 16:58``."""
    return moment.strftime("%d-%m-%Y, %H:%M")


def print_version(
    title: str, published_at: datetime, location: str | None, paragraphs: Sequence[str]
) -> str:
    """The statement as plain text, like the site's print version."""
    head = [title, site_time(published_at)]
    if location:
        head.append(location)
    return "\n".join(head) + "\n\n" + body_text(paragraphs) + "\n"


def snippet_html(snippet: str) -> str:
    """A read-model snippet as safe HTML: escaped text, matches in ``<mark>...</mark>``."""
    out: list[str] = []
    inside = False
    for piece in _MARKERS.split(snippet):
        if piece == SNIPPET_START and not inside:
            out.append(piece)
            inside = True
        elif piece == SNIPPET_END and inside:
            out.append(piece)
            inside = False
        elif piece:
            out.append(html.escape(piece))
    if inside:
        out.append(SNIPPET_END)
    return "".join(out)
