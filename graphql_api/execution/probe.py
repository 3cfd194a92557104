"""The small schema the fence's start-up check runs a query on (imported only by the check)."""

from __future__ import annotations

import strawberry


@strawberry.type
class Probe:
    plain: str = "plain"

    @strawberry.field
    def sync(self, times: int = 1) -> str:
        return "sync" * times

    @strawberry.field
    async def later(self) -> str:
        return "later"


@strawberry.type
class ProbeQuery:
    @strawberry.field
    def probe(self) -> Probe:
        return Probe()
