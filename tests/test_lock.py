"""The installed packages are the versions of ``requirements.lock``: what CI tested is what runs."""

from __future__ import annotations

import re
from importlib import metadata
from pathlib import Path

LOCK = Path(__file__).resolve().parents[1] / "requirements.lock"
_PIN = re.compile(r"^([A-Za-z0-9._-]+)==([^\s;]+)")


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def test_installed_versions_are_the_locked_ones() -> None:
    pins = {
        _normal(match[1]): match[2]
        for line in LOCK.read_text().splitlines()
        if (match := _PIN.match(line))
    }
    assert pins, "requirements.lock pins nothing"
    installed = {_normal(d.metadata["Name"]): d.version for d in metadata.distributions()}
    # The bench extra is installed only by `make bench`; whatever is installed must match.
    wrong = {
        name: (installed[name], pinned)
        for name, pinned in pins.items()
        if name in installed and installed[name] != pinned
    }
    assert not wrong, f"installed (version, locked version) differ: {wrong}"
    for name in ("strawberry-graphql", "graphql-core", "sqlalchemy", "starlette"):
        assert name in pins, f"{name} is not locked"
        assert name in installed, f"{name} is not installed"
