"""Schemathesis hooks: the one check that matters here, loaded via SCHEMATHESIS_HOOKS.

GraphQL errors with a code of the API (BAD_USER_INPUT, NOT_FOUND, ...) are correct answers to
generated nonsense; what must never happen is a 5xx, or an error that is not masked. A negative
case (a document with one schema violation: a wrong argument type, a missing required argument,
a null for a non-null one, an unknown enum value, an Int out of range) must moreover be refused
with an error, never executed.
"""

from __future__ import annotations

import os
from typing import Any

import schemathesis

MASKED = {"message": "Internal server error", "extensions": {"code": "INTERNAL_SERVER_ERROR"}}


def _mode(case: Any) -> str:
    meta = getattr(case, "meta", None)
    return str(meta.generation.mode.value) if meta is not None else "unknown"


@schemathesis.check
def no_5xx_and_no_unmasked_error(ctx: Any, response: Any, case: Any) -> bool | None:
    mode = _mode(case)
    body = response.json() if response.status_code < 500 else {}
    errors = body.get("errors") or []
    log = os.environ.get("ST_CHECKED_LOG")
    if log:  # one line per checked response, so the test can count them and their answers
        codes = sorted({str((e.get("extensions") or {}).get("code")) for e in errors})
        with open(log, "a") as out:
            out.write(f"{response.status_code} {mode} {','.join(codes) or 'data'}\n")
    if response.status_code >= 500:
        raise AssertionError(f"HTTP {response.status_code}: {response.text[:500]}")
    for error in errors:
        extensions = error.get("extensions") or {}
        if "code" not in extensions:
            raise AssertionError(f"error without extensions.code: {error}")
        if extensions["code"] == "INTERNAL_SERVER_ERROR":
            raise AssertionError(f"internal error (a bug) for this request: {error}")
        text = str(error)
        if "Traceback" in text or "sqlalchemy" in text.lower() or "sqlite3" in text:
            raise AssertionError(f"internals leaked: {error}")
    if mode == "negative" and not errors:
        raise AssertionError(f"an invalid document was executed: {case.body!r}")
    return None
