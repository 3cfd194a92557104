"""Schemathesis hooks: the one check that matters here, loaded via SCHEMATHESIS_HOOKS.

GraphQL errors with a code of the API (INVALID_INPUT, NOT_FOUND, ...) are correct answers to
generated nonsense; what must never happen is a 5xx, or an error that is not masked.
"""

from __future__ import annotations

import os
from typing import Any

import schemathesis

MASKED = {"message": "Internal server error", "extensions": {"code": "INTERNAL_SERVER_ERROR"}}


@schemathesis.check
def no_5xx_and_no_unmasked_error(ctx: Any, response: Any, case: Any) -> bool | None:
    log = os.environ.get("ST_CHECKED_LOG")
    if log:  # one line per checked response, so the test can count them
        with open(log, "a") as out:
            out.write(f"{response.status_code}\n")
    if response.status_code >= 500:
        raise AssertionError(f"HTTP {response.status_code}: {response.text[:500]}")
    body = response.json()
    for error in body.get("errors") or []:
        extensions = error.get("extensions") or {}
        if "code" not in extensions:
            raise AssertionError(f"error without extensions.code: {error}")
        if extensions["code"] == "INTERNAL_SERVER_ERROR":
            raise AssertionError(f"internal error (a bug) for this request: {error}")
        text = str(error)
        if "Traceback" in text or "sqlalchemy" in text.lower() or "sqlite3" in text:
            raise AssertionError(f"internals leaked: {error}")
    return None
