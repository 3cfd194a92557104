"""How old versions of stored events become current ones, on read (stored bytes never change)."""

from __future__ import annotations

from typing import Any

#: Current schema version of each event type whose schema has changed since version 1.
VERSIONS: dict[str, int] = {"StatementPublished": 2}


def statement_published_v1_to_v2(data: dict[str, Any]) -> dict[str, Any]:
    """v1 kept the body as one text with blank lines between paragraphs; v2 keeps paragraphs."""
    upgraded = {key: value for key, value in data.items() if key != "body"}
    body = str(data.get("body", ""))
    upgraded["paragraphs"] = [
        p.strip() for p in body.replace("\r\n", "\n").split("\n\n") if p.strip()
    ]
    upgraded.setdefault("language", "en")
    upgraded.setdefault("source_url", None)
    return upgraded


#: (type, from_version) -> function turning that version's data into the next version's.
UPCASTERS = {
    ("StatementPublished", 1): statement_published_v1_to_v2,
}
