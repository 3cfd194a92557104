"""The CLI's progress line: each line once, and the rate and time left when the total is known."""

from __future__ import annotations

import io

import pytest

from graphql_api.service_layer import progress as progress_module
from graphql_api.service_layer.progress import Progress


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    clock = Clock()
    monkeypatch.setattr(progress_module.time, "monotonic", clock)
    return clock


def test_a_short_run_off_a_terminal_prints_its_final_line_once(clock: Clock) -> None:
    out = io.StringIO()
    progress = Progress("verify", out)
    progress.update(events=8, position=8)
    clock.now += 0.1
    progress.done(events=8, position=8)
    assert out.getvalue() == "verify: events 8, position 8 (0.1s)\n"


def test_a_line_already_written_is_not_written_again(clock: Clock) -> None:
    out = io.StringIO()
    progress = Progress("import", out, total=1000, unit="files")
    clock.now += 6
    progress.update(files=600, statements=600)
    progress.done(files=600, statements=600)
    clock.now += 4
    progress.done(files=1000, statements=990)
    assert out.getvalue().splitlines() == [
        "import: files 600/1,000, statements 600 (6.0s, 100 files/s, about 4s left)",
        "import: files 1,000/1,000, statements 990 (10.0s, 100 files/s)",
    ]
