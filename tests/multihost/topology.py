"""The multi-host topology: a PostgreSQL primary, a streaming replica, two API hosts running
``statements serve`` and a client host, each in its own network namespace (tests/multihost/
netns.py) on one bridge, 10.77.0.0/24.

The clusters are private ones (``initdb``/``pg_ctl`` as in tests/reliability/pgcluster.py)
listening on their host's address; the replica is a ``pg_basebackup -R`` of the primary that
streams from it. The API hosts reach the primary over the bridge, and the test drives
everything from the client host: the CLI under ``ip netns exec``, and Python client code on a
thread inside the client's namespace (``Topology.on_client``).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import asyncpg
import httpx

from eventstore.leader import advisory_key
from tests.multihost.netns import PREFIX, Network, remove_leftovers
from tests.reliability.pgcluster import PrivateCluster, pg_bindir

T = TypeVar("T")

STATEMENTS = str(Path(sys.executable).parent / "statements")
PG_PORT = 5432
API_PORT = 8000
DATABASE = "statements"

PRIMARY = "pg1"
REPLICA = "pg2"
CLIENT = "client"
#: host -> last octet of its address
NUMBERS = {PRIMARY: 2, REPLICA: 3, "api1": 11, "api2": 12, CLIENT: 100}
API_HOSTS = ("api1", "api2")


class HostCluster(PrivateCluster):
    """A private cluster whose server runs on a test host, listening on the host's address."""

    def __init__(self, bindir: Path, root: Path, network: Network, host: str) -> None:
        super().__init__(bindir, root)
        self.network = network
        self.host = host
        self.address = network.hosts[host]
        self.port = PG_PORT

    def run(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        command = [*self.network.exec_prefix(self.host)]
        if self.user is not None:
            command += ["runuser", "-u", self.user, "--"]
        done = subprocess.run(
            [*command, *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            cwd=self.root,
        )
        if done.returncode != 0:
            raise AssertionError(
                f"on {self.host}: {' '.join(args)} exited {done.returncode}\n{done.stdout}\n"
                f"{done.stderr}\n{self.log()}"
            )
        return done

    def configure(self) -> None:
        # Appended last, so these win over what initdb or pg_basebackup wrote.
        with (self.data / "postgresql.conf").open("a") as conf:
            conf.write(
                f"port = {self.port}\n"
                f"listen_addresses = '{self.address}'\n"
                f"unix_socket_directories = '{self.root}'\n"
                "max_connections = 200\n"
                "shared_buffers = 32MB\n"
                "wal_level = replica\n"
                "max_wal_senders = 5\n"
                "hot_standby = on\n"
                "log_min_messages = warning\n"
            )
        with (self.data / "pg_hba.conf").open("a") as hba:
            hba.write("host all all 10.77.0.0/24 trust\nhost replication all 10.77.0.0/24 trust\n")

    def init(self) -> None:
        super().init()
        self.configure()

    def start(self) -> None:
        self.clear_stale_lock()
        super().start()

    def clear_stale_lock(self, timeout: float = 10.0) -> None:
        """Remove the lock files of a postmaster that was killed, as an operator would.

        A SIGKILLed postmaster stays a zombie until its new parent reaps it, and while it does
        ``kill(pid, 0)`` still finds it, so PostgreSQL refuses to start beside its lock files
        (the data directory's and the socket's).
        """
        for lock in (self.data / "postmaster.pid", self.root / f".s.PGSQL.{self.port}.lock"):
            try:
                pid = int(lock.read_text().split()[0])
            except (OSError, ValueError, IndexError):
                continue
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                try:
                    stat = Path(f"/proc/{pid}/stat").read_text()
                except OSError:
                    state = None
                else:
                    state = stat.rsplit(")", 1)[1].split()[0]
                if state in (None, "Z"):
                    lock.unlink(missing_ok=True)
                    break
                time.sleep(0.05)

    def base_backup_of(self, primary: HostCluster) -> None:
        """Make this cluster a streaming replica of ``primary`` (``pg_basebackup -R``)."""
        self.give(self.root)
        self.run(
            str(self.bindir / "pg_basebackup"),
            "-h",
            primary.address,
            "-p",
            str(primary.port),
            "-U",
            "postgres",
            "-D",
            str(self.data),
            "-R",
            "-X",
            "stream",
            "--checkpoint=fast",  # a spread checkpoint would keep the test waiting for minutes
            "--no-sync",
            timeout=120,
        )
        self.configure()

    def url_from_hosts(self, database: str = DATABASE) -> str:
        """The URL the other hosts use."""
        return f"postgresql://postgres@{self.address}:{self.port}/{database}"

    def database_url(self, database: str) -> str:
        # From the machine's own namespace the server is reached through its Unix socket.
        return f"postgresql+asyncpg://postgres@/{database}?host={self.root}&port={self.port}"


@dataclass
class ApiHost:
    """``statements serve`` on one host; ``power_off`` SIGKILLs every process of the host."""

    name: str
    network: Network
    database_url: str
    log_path: Path
    workers: int = 1
    env: Mapping[str, str] = field(default_factory=dict)
    process: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return self.network.hosts[self.name]

    @property
    def url(self) -> str:
        return f"http://{self.address}:{API_PORT}"

    @property
    def ws_url(self) -> str:
        return f"ws://{self.address}:{API_PORT}/graphql"

    def start(self) -> None:
        environ = {k: v for k, v in os.environ.items() if not k.startswith("STATEMENTS_")}
        environ.update(self.env)
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [
                    *self.network.exec_prefix(self.name),
                    STATEMENTS,
                    "serve",
                    "--db",
                    self.database_url,
                    "--host",
                    self.address,
                    "--port",
                    str(API_PORT),
                    "--workers",
                    str(self.workers),
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=environ,
            )

    def power_off(self) -> list[int]:
        killed = self.network.power_off(self.name)
        if self.process is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(5)
        self.process = None
        return killed

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log(self) -> str:
        with contextlib.suppress(OSError):
            return self.log_path.read_text(errors="replace")[-4000:]
        return ""


def projection_keys(schema: str = "public") -> dict[tuple[int, int], str]:
    """(classid, objid) of each projection's advisory lock as pg_locks shows it -> its name."""
    from projections import all_projections

    keys: dict[tuple[int, int], str] = {}
    for projection in all_projections():
        unsigned = advisory_key("projection", schema, projection.name) & 0xFFFF_FFFF_FFFF_FFFF
        keys[(unsigned >> 32, unsigned & 0xFFFF_FFFF)] = projection.name
    return keys


LEADERS = """
SELECT l.classid::bigint, l.objid::bigint, host(a.client_addr)
FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1 AND a.datname = $1
"""


class Topology:
    """Everything the tests need: start, stop, kill and cut hosts; run client code."""

    def __init__(self, root: Path, *, workers: int = 1, env: Mapping[str, str] | None = None):
        self.root = root
        self.network = Network()
        self.workers = workers
        self.env = dict(env or {})
        self.primary: HostCluster | None = None
        self.replica: HostCluster | None = None
        self.apis: dict[str, ApiHost] = {}
        self._keys = projection_keys()

    # -- building -------------------------------------------------------------------------

    def build(self) -> None:
        bindir = pg_bindir()
        assert bindir is not None, "no PostgreSQL binaries (initdb, pg_ctl, pg_basebackup)"
        self.network.create()
        for host, number in NUMBERS.items():
            self.network.add_host(host, number)
        self.primary = HostCluster(bindir, self._dir("pg1"), self.network, PRIMARY)
        self.primary.init()
        self.primary.start()
        self.primary.execute(f'CREATE DATABASE "{DATABASE}"')
        self.replica = HostCluster(bindir, self._dir("pg2"), self.network, REPLICA)
        self.replica.base_backup_of(self.primary)
        self.replica.start()
        self.cli("init")
        for name in API_HOSTS:
            self.apis[name] = ApiHost(
                name,
                self.network,
                self.primary.url_from_hosts(),
                self.root / f"{name}.log",
                workers=self.workers,
                env=self.env,
            )

    def _dir(self, name: str) -> Path:
        # Under the system temp directory, not pytest's 0700 tmp_path: PostgreSQL runs as
        # the postgres user. The run's name prefix lets a later run clean it up.
        return Path(tempfile.mkdtemp(prefix=f"{self.network.run}-{name}-"))

    def destroy(self) -> None:
        for cluster in (self.replica, self.primary):
            if cluster is not None and cluster.running():
                with contextlib.suppress(AssertionError, subprocess.TimeoutExpired):
                    cluster.stop("immediate")
        self.network.destroy()
        for api in self.apis.values():
            if api.process is not None:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    api.process.wait(10)
                api.process = None
        for cluster in (self.replica, self.primary):
            if cluster is not None:
                shutil.rmtree(cluster.root, ignore_errors=True)

    # -- API hosts ------------------------------------------------------------------------

    def start_api(self, name: str, *, lead: bool = False, timeout: float = 60.0) -> ApiHost:
        """Start ``statements serve`` on the host and wait until it answers (and, with
        ``lead``, until it leads every projection)."""
        api = self.apis[name]
        api.start()
        deadline = time.monotonic() + timeout
        self._wait_healthy(api, deadline)
        while lead and set(self.leaders().values()) != {api.address}:
            if time.monotonic() > deadline:
                raise AssertionError(f"{name} does not lead: {self.leaders()}\n{api.log()}")
            time.sleep(0.1)
        return api

    def _wait_healthy(self, api: ApiHost, deadline: float) -> None:
        def ready() -> bool:
            with contextlib.suppress(httpx.HTTPError):
                return httpx.get(f"{api.url}/healthz", timeout=1).status_code == 200
            return False

        while not self.on_client(ready):
            if not api.running():
                raise AssertionError(f"{api.name} exited: {api.log()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"{api.name} did not start in time: {api.log()}")
            time.sleep(0.1)

    def ensure_running(self, timeout: float = 60.0) -> None:
        """Start every API host that is not running (both at once), and wait until each
        answers and every projection has a leader."""
        started = []
        for name in API_HOSTS:
            api = self.apis[name]
            if not api.running():
                self.network.plug(name)
                api.power_off()  # whatever survived a cut cable
                api.start()
                started.append(api)
        deadline = time.monotonic() + timeout
        for api in started:
            self._wait_healthy(api, deadline)
        while set(self.leaders()) != self.projection_names():
            if time.monotonic() > deadline:
                raise AssertionError(f"projections without a leader: {self.leaders()}")
            time.sleep(0.1)

    # -- client side ----------------------------------------------------------------------

    def on_client(self, fn: Callable[[], T]) -> T:
        return self.network.call_on(CLIENT, fn)

    def run_client(self, make: Callable[[], Awaitable[T]]) -> T:
        """Run a coroutine on an event loop of its own on the client host."""

        async def main() -> T:
            return await make()

        return self.on_client(lambda: asyncio.run(main()))

    def cli(self, *args: str, timeout: float = 120) -> str:
        """``statements ARGS --db PRIMARY`` on the client host; its standard output."""
        assert self.primary is not None
        environ = {k: v for k, v in os.environ.items() if not k.startswith("STATEMENTS_")}
        done = subprocess.run(
            [
                *self.network.exec_prefix(CLIENT),
                STATEMENTS,
                *args,
                "--db",
                self.primary.url_from_hosts(),
            ],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=environ,
            check=False,
        )
        if done.returncode != 0:
            raise AssertionError(f"statements {' '.join(args)}: {done.stdout}\n{done.stderr}")
        return done.stdout

    def token(self, role: str, name: str) -> str:
        out = self.cli("token", "create", "--role", role, "--name", name)
        return next(w for w in out.split() if w.startswith("st_"))

    def sql(self, statement: str, *args: Any, on: str = PRIMARY) -> list[asyncpg.Record]:
        """Run a statement against the primary (or the replica) from the client host."""
        cluster = self.primary if on == PRIMARY else self.replica
        assert cluster is not None

        async def fetch() -> list[asyncpg.Record]:
            conn = await asyncpg.connect(cluster.url_from_hosts(), timeout=5)
            try:
                return list(await conn.fetch(statement, *args))
            finally:
                await conn.close()

        return self.run_client(fetch)

    def leaders(self) -> dict[str, str]:
        """Projection name -> address of the API host whose connection holds its lock."""
        return self.leaders_from(self.sql(LEADERS, DATABASE))

    def leaders_from(self, rows: list[asyncpg.Record]) -> dict[str, str]:
        """The same from rows of ``LEADERS`` run elsewhere."""
        return {
            self._keys[(int(r[0]), int(r[1]))]: str(r[2])
            for r in rows
            if (int(r[0]), int(r[1])) in self._keys
        }

    def projection_names(self) -> set[str]:
        return set(self._keys.values())

    def replica_lag_bytes(self) -> int | None:
        """Bytes of WAL the replica has yet to replay, or None when it is not streaming."""
        rows = self.sql(
            "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn)::bigint, state "
            "FROM pg_stat_replication"
        )
        if not rows or rows[0][1] != "streaming" or rows[0][0] is None:
            return None
        return int(rows[0][0])


@contextlib.contextmanager
def topology(
    root: Path, *, workers: int = 1, env: Mapping[str, str] | None = None
) -> Iterator[Topology]:
    """A built topology, destroyed afterwards even when the test fails or is interrupted."""
    remove_leftovers()
    built = Topology(root, workers=workers, env=env)
    try:
        built.build()
        yield built
    finally:
        built.destroy()


__all__ = ["API_HOSTS", "CLIENT", "PREFIX", "PRIMARY", "REPLICA", "ApiHost", "Topology"]
