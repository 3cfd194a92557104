"""``statements schema``: the SDL it prints is the schema the server serves."""

from __future__ import annotations

from pathlib import Path

import pytest
from graphql import (
    build_client_schema,
    build_schema,
    get_introspection_query,
    lexicographic_sort_schema,
    print_schema,
)

from graphql_api.cli import main
from tests.graphql_api.app_client import running_app


async def test_the_printed_sdl_is_the_served_schema(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["schema"]) == 0
    printed = capsys.readouterr().out
    from_sdl = build_schema(printed)
    async with running_app(f"sqlite:///{tmp_path / 'events.db'}") as api:
        introspection = await api.data(
            get_introspection_query(
                descriptions=True, specified_by_url=True, directive_is_repeatable=True
            )
        )
    served = build_client_schema(introspection)
    # Both sorted: the SDL lists types by name, introspection in the server's own order.
    assert print_schema(lexicographic_sort_schema(from_sdl)) == print_schema(
        lexicographic_sort_schema(served)
    )
    assert {"Query", "Mutation", "Subscription"} <= set(from_sdl.type_map)


def test_out_writes_the_same_sdl_to_a_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["schema"]) == 0
    printed = capsys.readouterr().out
    out = tmp_path / "schema.graphql"
    assert main(["schema", "--out", str(out)]) == 0
    assert out.read_text(encoding="utf-8") == printed
    assert capsys.readouterr().out == ""


def test_an_unwritable_out_is_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "no-such-folder" / "schema.graphql"
    assert main(["schema", "--out", str(missing)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("statements schema: --out: ")
    assert "no-such-folder" in err
    assert not missing.exists()
