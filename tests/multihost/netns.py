"""Test hosts in Linux network namespaces: one bridge, one veth per host, nothing in the root
namespace.

The bridge lives in a namespace of its own (``<run>-sw``), so no address of the test network is
ever configured in the machine's own namespace: the hosts reach each other and nothing else, and
two runs at once (CI beside a developer) each have their own 10.77.0.0/24 without clashing.
Every name starts with ``stmh-<pid>-``, the pid of the test process that made it, so a later run
can remove what a killed run left behind without touching a run that is still alive.

Code runs "on" a host in two ways: a command under ``ip netns exec``, or a Python function in a
thread that entered the namespace with ``setns(2)`` (the network namespace is per thread, so the
rest of the test process stays on the machine's network).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import re
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")

PREFIX = "stmh-"
NETNS_DIR = Path("/run/netns")
SUBNET = "10.77.0"
CLONE_NEWNET = 0x40000000
_NAME = re.compile(rf"^{re.escape(PREFIX)}(\d+)-")


def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30, check=False)
    if check and done.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)} exited {done.returncode}: {done.stderr.strip()}")
    return done


def unavailable_reason() -> str | None:
    """Why namespaces cannot be made here (not root, no ``ip``, no permission), or None."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    if shutil.which("ip") is None:
        return "the ip command (iproute2) is not installed"
    name = f"{PREFIX}{os.getpid()}-probe"
    done = ip("netns", "add", name, check=False)
    if done.returncode != 0:
        return f"ip netns add failed: {done.stderr.strip()}"
    try:
        veth = ("link", "add", "p0", "type", "veth", "peer", "name", "p1")
        made = ip("-n", name, *veth, check=False)
        if made.returncode != 0:
            return f"veth pairs cannot be made: {made.stderr.strip()}"
    finally:
        ip("netns", "del", name, check=False)
    return None


def pids_in(namespace: str) -> list[int]:
    done = ip("netns", "pids", namespace, check=False)
    return [int(p) for p in done.stdout.split()] if done.returncode == 0 else []


def kill_all(namespace: str, timeout: float = 10.0) -> list[int]:
    """SIGKILL every process in the namespace (a host losing power); the pids it killed."""
    killed: list[int] = []
    deadline = time.monotonic() + timeout
    while True:
        pids = pids_in(namespace)
        if not pids:
            return killed
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
        if time.monotonic() > deadline:
            raise RuntimeError(f"processes in {namespace} survive SIGKILL: {pids}")
        time.sleep(0.05)


def cpu_seconds(namespace: str) -> float:
    """User and system CPU seconds of the processes now in the namespace."""
    total = 0.0
    tick = os.sysconf("SC_CLK_TCK")
    for pid in pids_in(namespace):
        with contextlib.suppress(OSError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick
    return total


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_leftovers() -> list[str]:
    """Remove the namespaces and directories of earlier runs whose test process is gone."""
    removed: list[str] = []
    if NETNS_DIR.is_dir():
        for entry in sorted(NETNS_DIR.iterdir()):
            match = _NAME.match(entry.name)
            if match and not _alive(int(match.group(1))):
                kill_all(entry.name)
                ip("netns", "del", entry.name, check=False)
                removed.append(entry.name)
    for path in Path(tempfile.gettempdir()).glob(f"{PREFIX}*"):
        match = _NAME.match(path.name)
        if match and not _alive(int(match.group(1))):
            shutil.rmtree(path, ignore_errors=True)
            removed.append(str(path))
    return removed


def enter(namespace: str) -> None:
    """Move the calling thread into the namespace (``setns``)."""
    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(NETNS_DIR / namespace, os.O_RDONLY)
    try:
        if libc.setns(fd, CLONE_NEWNET) != 0:
            errno = ctypes.get_errno()
            raise OSError(errno, f"setns into {namespace}: {os.strerror(errno)}")
    finally:
        os.close(fd)


def run_in(namespace: str, fn: Callable[[], T]) -> T:
    """Call ``fn`` on a thread inside the namespace; its result, or its exception re-raised."""
    outcome: list[T] = []
    failure: list[BaseException] = []

    def target() -> None:
        try:
            enter(namespace)
            outcome.append(fn())
        except BaseException as exc:
            failure.append(exc)

    thread = threading.Thread(target=target, name=f"in-{namespace}", daemon=True)
    thread.start()
    thread.join()
    if failure:
        raise failure[0]
    return outcome[0]


class Network:
    """A bridge and hosts, each host a namespace with ``eth0`` at ``10.77.0.N/24``."""

    def __init__(self, run: str | None = None) -> None:
        self.run = run or f"{PREFIX}{os.getpid()}-{os.urandom(2).hex()}"
        self.switch = f"{self.run}-sw"
        self.hosts: dict[str, str] = {}  # host -> address
        self._made: list[str] = []

    def namespace(self, host: str) -> str:
        return f"{self.run}-{host}"

    def create(self) -> None:
        ip("netns", "add", self.switch)
        self._made.append(self.switch)
        ip("-n", self.switch, "link", "set", "lo", "up")
        ip("-n", self.switch, "link", "add", "br0", "type", "bridge")
        ip("-n", self.switch, "link", "set", "br0", "up")

    def add_host(self, host: str, number: int) -> str:
        """A namespace for ``host`` wired to the bridge; its address."""
        namespace = self.namespace(host)
        address = f"{SUBNET}.{number}"
        ip("netns", "add", namespace)
        self._made.append(namespace)
        ip("-n", namespace, "link", "set", "lo", "up")
        port = self.port(host)
        veth = ("type", "veth", "peer", "name", "eth0", "netns", namespace)
        ip("-n", self.switch, "link", "add", port, *veth)
        ip("-n", self.switch, "link", "set", port, "master", "br0", "up")
        ip("-n", namespace, "addr", "add", f"{address}/24", "dev", "eth0")
        ip("-n", namespace, "link", "set", "eth0", "up")
        self.hosts[host] = address
        return address

    @staticmethod
    def port(host: str) -> str:
        return f"p-{host}"[:15]

    def cut(self, host: str) -> None:
        """Unplug the host's cable: its packets are dropped, its processes keep running."""
        ip("-n", self.switch, "link", "set", self.port(host), "down")

    def plug(self, host: str) -> None:
        ip("-n", self.switch, "link", "set", self.port(host), "up")

    def exec_prefix(self, host: str) -> list[str]:
        return ["ip", "netns", "exec", self.namespace(host)]

    def run_on(
        self, host: str, command: Sequence[str], *, timeout: float = 120, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [*self.exec_prefix(host), *command],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if check and done.returncode != 0:
            raise AssertionError(
                f"on {host}: {' '.join(command)} exited {done.returncode}\n"
                f"{done.stdout}\n{done.stderr}"
            )
        return done

    def call_on(self, host: str, fn: Callable[[], T]) -> T:
        return run_in(self.namespace(host), fn)

    def power_off(self, host: str) -> list[int]:
        """SIGKILL every process of the host."""
        return kill_all(self.namespace(host))

    def destroy(self) -> None:
        """Kill every process on every host and remove the namespaces; safe to call twice."""
        for namespace in reversed(self._made):
            with contextlib.suppress(RuntimeError):
                kill_all(namespace)
            ip("netns", "del", namespace, check=False)
        self._made.clear()
