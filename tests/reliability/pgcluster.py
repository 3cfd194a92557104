"""A private PostgreSQL cluster for fault tests that restart or starve the server.

The machine's shared server (127.0.0.1:5432) serves other test runs and engineers, so a test
that restarts PostgreSQL or fills its disk gets a cluster of its own: ``initdb`` in a temporary
directory, ``pg_ctl`` on a free port. PostgreSQL refuses to run as root, so under root every
command runs as the ``postgres`` user and the directories are handed to it.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from tests.conftest import run_pg
from tests.reliability.live import free_port


def pg_bindir() -> Path | None:
    """Where initdb/pg_ctl are: PATH, then Debian's versioned directories (newest first)."""
    found = shutil.which("initdb")
    if found:
        return Path(found).resolve().parent
    candidates = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"),
        key=lambda p: int(Path(p).parts[-3]) if Path(p).parts[-3].isdigit() else 0,
        reverse=True,
    )
    return Path(candidates[0]).parent if candidates else None


class PrivateCluster:
    """One PostgreSQL cluster in ``root``, listening on 127.0.0.1 only, trust authentication."""

    def __init__(self, bindir: Path, root: Path) -> None:
        self.bindir = bindir
        self.root = root
        self.data = root / "data"
        self.port = free_port()
        self.log_path = root / "postgres.log"
        self.user = "postgres" if os.geteuid() == 0 else None

    @property
    def url(self) -> str:
        return self.database_url("postgres")

    def database_url(self, database: str) -> str:
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/{database}"

    def give(self, path: Path) -> None:
        """Hand ``path`` to the user the server runs as."""
        if self.user is not None:
            entry = pwd.getpwnam(self.user)
            os.chown(path, entry.pw_uid, entry.pw_gid)

    def run(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        command = list(args)
        if self.user is not None:
            command = ["runuser", "-u", self.user, "--", *command]
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=timeout, check=False, cwd=self.root
        )
        if done.returncode != 0:
            raise AssertionError(
                f"{' '.join(args)} exited {done.returncode}\n{done.stdout}\n{done.stderr}\n"
                f"{self.log()}"
            )
        return done

    def init(self) -> None:
        self.give(self.root)
        self.run(
            str(self.bindir / "initdb"),
            "-D",
            str(self.data),
            "-U",
            "postgres",
            "--auth=trust",
            "-E",
            "UTF8",
            "--no-sync",  # the cluster is thrown away; its commits still fsync (fsync=on)
        )
        with (self.data / "postgresql.conf").open("a") as conf:
            conf.write(
                f"port = {self.port}\n"
                "listen_addresses = '127.0.0.1'\n"
                f"unix_socket_directories = '{self.root}'\n"
                "max_connections = 60\n"
                "shared_buffers = 16MB\n"
                "log_min_messages = warning\n"
            )

    def pg_ctl(self, action: str, *options: str, timeout: float = 60) -> float:
        """``pg_ctl ACTION -w``; the seconds it took."""
        started = time.monotonic()
        self.run(
            str(self.bindir / "pg_ctl"),
            action,
            "-D",
            str(self.data),
            "-l",
            str(self.log_path),
            "-w",
            "-t",
            str(int(timeout)),
            *options,
            timeout=timeout + 10,
        )
        return time.monotonic() - started

    def start(self) -> None:
        self.pg_ctl("start")

    def stop(self, mode: str = "fast") -> None:
        self.pg_ctl("stop", "-m", mode)

    def restart(self, mode: str) -> float:
        return self.pg_ctl("restart", "-m", mode)

    def execute(self, statement: str, database: str = "postgres") -> None:
        run_pg(self.database_url(database), statement)

    def log(self) -> str:
        with contextlib.suppress(OSError):
            return self.log_path.read_text(errors="replace")[-4000:]
        return ""

    def running(self) -> bool:
        return (self.data / "postmaster.pid").exists()


@contextlib.contextmanager
def private_cluster() -> Iterator[PrivateCluster]:
    """A started private cluster, stopped (immediately) and deleted afterwards.

    Its directory is made under the system temp directory, not pytest's tmp_path: pytest's
    directories are private to root (0700) and the server runs as ``postgres``.
    """
    bindir = pg_bindir()
    assert bindir is not None, "no PostgreSQL binaries (initdb, pg_ctl)"
    root = Path(tempfile.mkdtemp(prefix="statements-pg-"))
    cluster = PrivateCluster(bindir, root)
    try:
        cluster.init()
        cluster.start()
        yield cluster
    finally:
        if cluster.running():
            with contextlib.suppress(AssertionError, subprocess.TimeoutExpired):
                cluster.stop("immediate")
        shutil.rmtree(root, ignore_errors=True)
