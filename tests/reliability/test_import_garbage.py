"""`statements import` fed random bytes and truncated pages: exit 1, a message, nothing written."""

from __future__ import annotations

import random
from pathlib import Path

from tests.domain.test_archive_page import PAGE
from tests.reliability.live import cli, event_rows

DATE_LINE = b"17-11-2014, 16:58"


def test_garbage_and_truncated_pages_fail_cleanly_and_write_nothing(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'import.db'}"
    cli("init", "--db", db)
    rng = random.Random(8)
    pages = tmp_path / "pages"
    pages.mkdir()
    bad: list[Path] = []
    for i in range(20):  # random bytes, some of them valid UTF-8 by luck of the draw
        path = pages / f"random-{i:02}.txt"
        path.write_bytes(rng.randbytes(rng.randint(0, 20_000)))
        bad.append(path)
    encoded = PAGE.encode()
    # Cut anywhere before the first body paragraph, even inside a multi-byte character. (A page
    # cut inside its body still parses as a shorter page: see docs/RELIABILITY.md.)
    body_start = encoded.index(DATE_LINE) + len(DATE_LINE)
    for i, cut in enumerate(sorted(rng.sample(range(1, body_start), 20))):
        path = pages / f"truncated-{i:02}.txt"
        path.write_bytes(encoded[:cut])
        bad.append(path)
    (pages / "nul.txt").write_bytes(b"\x00" * 5000)
    (pages / "bom-only.txt").write_bytes(b"\xef\xbb\xbf")
    (pages / "huge-line.txt").write_bytes(b"A" * 2_000_000)
    (pages / "latin1.txt").write_bytes(PAGE.encode("utf-8").replace(b"\xe2\x80\x94", b"\x97"))
    files = sorted(pages.iterdir())

    done = cli("import", "--db", db, str(pages), check=False)
    assert done.returncode == 1, done
    assert "Traceback" not in done.stderr
    failures = [line for line in done.stderr.splitlines() if line.startswith("statements import:")]
    # Every bad file is named in a message of its own; the latin-1 copy may legitimately pass.
    named = {Path(line.split(": ", 2)[1].split(":")[0]).name for line in failures}
    assert {p.name for p in bad} <= named
    assert len(failures) >= len(files) - 1
    # Each page is all or nothing: the failed ones wrote nothing at all.
    imported = len(files) - len(failures)
    assert f"imported {imported} of {len(files)} files" in done.stdout
    if imported == 0:
        assert event_rows(db) == []
    assert "head" in cli("verify", "--db", db).stdout


def test_a_good_page_after_garbage_still_goes_in_once(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'import.db'}"
    pages = tmp_path / "pages"
    pages.mkdir()
    (pages / "a-garbage.txt").write_bytes(random.Random(1).randbytes(4096))
    (pages / "b-good.txt").write_text(PAGE)
    (pages / "c-truncated.txt").write_bytes(PAGE.encode()[: PAGE.encode().index(DATE_LINE)])
    done = cli("import", "--db", db, str(pages), check=False)
    assert done.returncode == 1
    assert "imported 1 of 3 files" in done.stdout
    published = [r for r in event_rows(db) if r[2] == "StatementPublished"]
    assert len(published) == 1
    again = cli("import", "--db", db, str(pages / "b-good.txt"))
    assert "1 already present" in again.stdout
    assert len([r for r in event_rows(db) if r[2] == "StatementPublished"]) == 1
