"""The import rules of the layers and of graphql_api's rooms, read from the source with ast.

Dependencies point inward: domain <- eventstore/projections <- graphql_api. Inside graphql_api
the schema never reaches for a transport, the service layer knows no GraphQL, and the executor's
modules are reached only through ``graphql_api.execution``'s public names.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FIRST_PARTY = ("domain", "eventstore", "projections", "graphql_api")


def _modules(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path) -> Iterator[tuple[int, str]]:
    """Every module ``path`` imports (``from a import b`` yields ``a`` and ``a.b``), by line."""
    package = _module_name(path)
    if path.name != "__init__.py":
        package = package.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            yield node.lineno, base
            for alias in node.names:
                yield node.lineno, f"{base}.{alias.name}"


def _violations(packages: tuple[str, ...], refused: tuple[str, ...]) -> list[str]:
    found = []
    for package in packages:
        paths = _modules(package) if (ROOT / package).is_dir() else [ROOT / package]
        for path in paths:
            for line, module in _imports(path):
                if any(module == r or module.startswith(r + ".") for r in refused):
                    found.append(f"{path.relative_to(ROOT)}:{line} imports {module}")
    return found


def test_the_domain_imports_only_the_standard_library() -> None:
    found = []
    for path in _modules("domain"):
        for line, module in _imports(path):
            top = module.partition(".")[0]
            if top != "domain" and top not in sys.stdlib_module_names and top != "__future__":
                found.append(f"{path.relative_to(ROOT)}:{line} imports {module}")
    assert found == []


def test_the_event_store_knows_nothing_of_statements() -> None:
    assert _violations(("eventstore",), ("domain", "projections", "graphql_api")) == []


def test_the_projections_do_not_import_the_api() -> None:
    assert _violations(("projections",), ("graphql_api",)) == []


def test_nothing_below_the_api_imports_it() -> None:
    assert _violations(("domain", "eventstore", "projections"), ("graphql_api",)) == []


def test_the_executor_is_reached_only_through_its_public_names() -> None:
    """Its modules lean on private internals of graphql-core and Strawberry; outside the package
    only ``graphql_api.execution``'s exported names may be used (tests of its internals
    excepted)."""
    from graphql_api import execution

    found = []
    public = {f"graphql_api.execution.{name}" for name in execution.__all__}
    for package in ("graphql_api", "bench"):
        for path in _modules(package):
            if path.is_relative_to(ROOT / "graphql_api" / "execution"):
                continue
            for line, module in _imports(path):
                if module.startswith("graphql_api.execution.") and module not in public:
                    found.append(f"{path.relative_to(ROOT)}:{line} imports {module}")
    assert found == []


#: For each room of graphql_api, the rooms it must not import.
ROOM_RULES: dict[str, tuple[str, ...]] = {
    # The executor is generic: it knows no schema, no transport, no statements.
    "execution": (
        "graphql_api.schema",
        "graphql_api.transport",
        "graphql_api.security",
        "graphql_api.service_layer",
        "graphql_api.cli",
        "graphql_api.app",
        "graphql_api.bootstrap",
        "graphql_api.context",
    ),
    # Application services are called by the CLI and the API alike: no GraphQL, no HTTP.
    "service_layer": (
        "graphql_api.schema",
        "graphql_api.transport",
        "graphql_api.execution",
        "graphql_api.security",
        "graphql_api.cli",
        "graphql_api.app",
        "graphql_api.bootstrap",
    ),
    "schema": (
        "graphql_api.transport",
        "graphql_api.cli",
        "graphql_api.app",
        "graphql_api.bootstrap",
    ),
    "security": (
        "graphql_api.schema",
        "graphql_api.transport",
        "graphql_api.cli",
        "graphql_api.app",
        "graphql_api.bootstrap",
    ),
    "transport": ("graphql_api.cli", "graphql_api.app", "graphql_api.bootstrap"),
    # The archive site is a client of the schema: it runs documents, it reads no table.
    "site": (
        "graphql_api.cli",
        "graphql_api.app",
        "graphql_api.bootstrap",
        "graphql_api.service_layer",
        "graphql_api.execution",
        "projections",
        "eventstore",
        "sqlalchemy",
    ),
    "bootstrap.py": (
        "graphql_api.schema",
        "graphql_api.transport",
        "graphql_api.cli",
        "graphql_api.app",
    ),
    "settings.py": tuple(f"graphql_api.{room}" for room in ("schema", "transport", "cli")),
    "errors.py": ("graphql_api.schema", "graphql_api.transport", "graphql_api.service_layer"),
}


@pytest.mark.parametrize("room", sorted(ROOM_RULES))
def test_rooms_import_only_inward(room: str) -> None:
    assert _violations((f"graphql_api/{room}",), ROOM_RULES[room]) == []


def test_only_the_cli_imports_the_cli() -> None:
    rooms = [
        str(path.relative_to(ROOT))
        for path in (ROOT / "graphql_api").iterdir()
        if path.name != "cli" and (path.suffix == ".py" or (path / "__init__.py").exists())
    ]
    assert _violations(tuple(rooms), ("graphql_api.cli",)) == []


def test_the_rules_see_every_room() -> None:
    """A room added later gets rules here rather than none at all."""
    rooms = {
        path.name
        for path in (ROOT / "graphql_api").iterdir()
        if (path / "__init__.py").exists() and path.name != "cli"
    }
    assert rooms <= set(ROOM_RULES)


def test_the_scanner_sees_imports() -> None:
    """The rules above would pass on a scanner that found nothing."""
    schema_imports = {module for _, module in _imports(ROOT / "graphql_api/schema/api_schema.py")}
    assert "graphql_api.execution.executor_class" in schema_imports
    assert any(m.startswith("graphql_api") for p in _modules("graphql_api") for _, m in _imports(p))
