"""The archive site's clock: Moscow time."""

from __future__ import annotations

from datetime import timedelta, timezone, tzinfo
from typing import Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

#: Used only when the tz database is missing; exact since 2014, off by an hour before that.
MOSCOW_FIXED: Final = timezone(timedelta(hours=3), "MSK")


def _moscow() -> tzinfo:
    try:
        return ZoneInfo("Europe/Moscow")
    except (ZoneInfoNotFoundError, ValueError, OSError):
        return MOSCOW_FIXED


MOSCOW: Final[tzinfo] = _moscow()
