"""Node, the npm packages of live_js/ and Debian's chromium for the JavaScript client tests.

Without them a test skips with the reason; with ``STATEMENTS_REQUIRE_BROWSER=1`` (set by
``.ci/run``) it fails instead, so CI never passes by skipping the browser tests.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any, NoReturn

import pytest

JS_DIR = Path(__file__).parent / "live_js"
REQUIRE_ENV = "STATEMENTS_REQUIRE_BROWSER"


def unavailable(reason: str) -> NoReturn:
    """Skip, or fail where the browser tests are required."""
    if os.environ.get(REQUIRE_ENV):
        pytest.fail(f"{reason} ({REQUIRE_ENV} is set)", pytrace=False)
    pytest.skip(reason)


def node_with_packages() -> str:
    """The node executable, once every dependency of live_js/package.json is installed."""
    node = shutil.which("node")
    if node is None:
        unavailable("node is not installed: the JavaScript client and browser tests need it")
    wanted = json.loads((JS_DIR / "package.json").read_text())["dependencies"]
    if any(not (JS_DIR / "node_modules" / name / "package.json").is_file() for name in wanted):
        npm = shutil.which("npm")
        if npm is None:
            unavailable("node is installed but npm is not")
        subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"],
            cwd=JS_DIR,
            check=True,
            timeout=300,
        )
    return node


def chromium() -> str:
    """Debian's chromium (or ``$CHROMIUM``), for playwright-core to drive."""
    path = os.environ.get("CHROMIUM", "/usr/bin/chromium")
    if not Path(path).exists():
        unavailable(f"{path} is missing: apt-get install -y chromium")
    return path


def run_node(
    node: str, script: str, *args: str, timeout: float = 60, stdin: str | None = None
) -> Any:
    """Run live_js/SCRIPT (with ``stdin`` as its input) and return the JSON on the last line
    it prints."""
    completed = subprocess.run(
        [node, str(JS_DIR / script), *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        cwd=JS_DIR,
    )
    assert completed.returncode == 0, completed.stderr + completed.stdout
    return json.loads(completed.stdout.strip().splitlines()[-1])
