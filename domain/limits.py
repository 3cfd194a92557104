"""Size limits of a statement."""

from __future__ import annotations

from typing import Final

MAX_TITLE_LENGTH: Final = 500
#: 1 MB of UTF-8 (decimal megabyte), measured on the paragraphs joined by blank lines.
MAX_BODY_BYTES: Final = 1_000_000
MAX_TAGS: Final = 100
MAX_RELATED: Final = 100
MAX_TOPIC_NAME_LENGTH: Final = 100
MAX_LOCATION_LENGTH: Final = 200
