"""CORS: which browser pages on other origins may call the API (``STATEMENTS_CORS_ORIGINS``).

Starlette's ``CORSMiddleware`` answers preflights and marks responses for the listed origins
only; without origins there is no middleware, so nothing changes for anyone.

Credentials are bearer tokens that a page sends itself in ``Authorization``; the API sets no
cookies and reads none, so ``Access-Control-Allow-Credentials`` stays off: a browser then never
attaches cookies or TLS client certificates to cross-origin calls, and a listed page cannot ride
on credentials a user holds for this server.

The listed origins are also trusted by the CSRF rule for GET
(:func:`graphql_api.transport.http.csrf_refused`) as if they were this server's own origin; every
other origin meets that rule unchanged.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware

from graphql_api.transport.http import PREFLIGHT_HEADERS

#: What browser clients send beyond the CORS-safelisted headers (``Content-Type`` is safelisted
#: by Starlette for any value): the token, the CSRF preflight headers, the correlation id, the
#: read-your-writes position, and the client names Apollo Client sends.
ALLOWED_HEADERS: Final = (
    "authorization",
    *PREFLIGHT_HEADERS,
    "x-request-id",
    "x-min-position",
    "apollographql-client-name",
    "apollographql-client-version",
)
#: Response headers a page may read besides the safelisted ones: the correlation id, and how
#: long to wait after ``RATE_LIMITED`` or ``SERVICE_UNAVAILABLE``.
EXPOSED_HEADERS: Final = ("x-request-id", "retry-after")
#: Seconds a browser may reuse a preflight's answer (Chromium caps it at 7,200).
PREFLIGHT_MAX_AGE: Final = 600


def cors_middleware(origins: Iterable[str]) -> list[Middleware]:
    """The middleware that lets pages on ``origins`` call the API; none when there are none."""
    allowed = tuple(origins)
    if not allowed:
        return []
    return [
        Middleware(
            CORSMiddleware,
            allow_origins=allowed,
            allow_methods=("GET", "POST"),
            allow_headers=ALLOWED_HEADERS,
            expose_headers=EXPOSED_HEADERS,
            allow_credentials=False,
            max_age=PREFLIGHT_MAX_AGE,
        )
    ]
