"""Size limits of a statement and of a batch of views."""

from __future__ import annotations

from datetime import timedelta
from typing import Final

MAX_TITLE_LENGTH: Final = 500
#: 1 MB of UTF-8 (decimal megabyte), measured on the paragraphs joined by blank lines.
MAX_BODY_BYTES: Final = 1_000_000
MAX_TAGS: Final = 100
MAX_RELATED: Final = 100
MAX_TOPIC_NAME_LENGTH: Final = 100
MAX_LOCATION_LENGTH: Final = 200
#: The most views one recordViews batch may hold unless the handler is given another cap.
MAX_VIEWS_PER_BATCH: Final = 1_000
MAX_BATCH_ID_LENGTH: Final = 200
#: How far a view's time may be ahead of the server's clock (the sender's clock may run fast).
MAX_VIEW_CLOCK_SKEW: Final = timedelta(minutes=5)
