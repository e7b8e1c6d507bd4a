"""The processes a serving benchmark runs and measures: ``recsys-serve`` and ``redis-server``.

Both start in their own session (a Ctrl-C reaches the benchmark, which stops them). CPU and
memory are read from /proc for the whole process tree: ``recsys-serve workers=N`` is a
supervisor with N forked workers, and their sum is what the service costs. The proportional
set size (PSS) splits each shared page among the processes mapping it, so the tree's PSS
against its summed RSS says how much memory the forked workers share.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

HOST = "127.0.0.1"


@contextmanager
def sigterm_unwinds() -> Iterator[None]:
    """Within the block SIGTERM unwinds like Ctrl-C (exit status 143), so the ``finally``
    clauses that stop the servers run either way."""
    previous = signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    try:
        return [int(p) for p in path.read_text().split()]
    except OSError:
        return []


def _stat(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()


def tree_cpu_seconds(pid: int) -> float:
    """User + system CPU of ``pid``, its reaped children and its live children."""
    tick = os.sysconf("SC_CLK_TCK")
    fields = _stat(pid)
    total = sum(int(fields[i]) for i in (11, 12, 13, 14))
    for child in children(pid):
        try:
            fields = _stat(child)
        except OSError:  # ended between the listing and the read
            continue
        total += int(fields[11]) + int(fields[12])
    return total / tick


def _kib(path: str, keys: tuple[str, ...]) -> dict[str, int]:
    try:
        lines = Path(path).read_text().splitlines()
    except OSError:
        return {}
    out = {}
    for line in lines:
        key, _, value = line.partition(":")
        if key in keys:
            out[key] = int(value.split()[0])
    return out


def tree_memory_mib(pid: int) -> dict:
    """Resident memory summed over the tree (current, peak per process summed) and its PSS."""
    rss = hwm = pss = 0
    pids = [pid, *children(pid)]
    for p in pids:
        status = _kib(f"/proc/{p}/status", ("VmRSS", "VmHWM"))
        rss, hwm = rss + status.get("VmRSS", 0), hwm + status.get("VmHWM", 0)
        pss += _kib(f"/proc/{p}/smaps_rollup", ("Pss",)).get("Pss", 0)
    return {
        "processes": len(pids),
        "rss_mib": round(rss / 1024, 1),
        "peak_rss_mib": round(hwm / 1024, 1),
        "pss_mib": round(pss / 1024, 1),
    }


class Process:
    """A child process in its own session, its output in ``log_path``."""

    def __init__(self, cmd: list[str], log_path: Path, cpus: set[int] | None = None) -> None:
        self.log_path = log_path
        with open(log_path, "wb") as log:
            self.proc = subprocess.Popen(
                cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        if cpus:  # before the server starts its threads: they inherit it
            os.sched_setaffinity(self.proc.pid, cpus)

    def tail(self, lines: int = 30) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def cpu_seconds(self) -> float:
        return tree_cpu_seconds(self.proc.pid)

    def memory_mib(self) -> dict:
        return tree_memory_mib(self.proc.pid)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class RedisProcess(Process):
    """A private ``redis-server`` without persistence, on a free local port."""

    def __init__(self, log_dir: Path, cpus: set[int] | None = None) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise SystemExit("--redis needs Debian's redis-server (apt-get install redis-server)")
        self.port = free_port()
        cmd = [binary, "--port", str(self.port), "--bind", HOST, "--save", "",
               "--appendonly", "no", "--dir", str(log_dir)]  # fmt: skip
        super().__init__(cmd, log_dir / "redis.log", cpus)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection((HOST, self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"redis-server did not start:\n{self.tail()}")

    @property
    def url(self) -> str:
        return f"redis://{HOST}:{self.port}/0"


class ServerProcess(Process):
    """``recsys-serve`` with the given Hydra overrides on a free local port."""

    def __init__(
        self, overrides: list[str], defaults: dict, log_dir: Path, cpus: set[int] | None = None
    ) -> None:
        self.port = free_port()
        given = {o.lstrip("+~").split("=", 1)[0] for o in overrides}
        extra = [f"{k}={v}" for k, v in defaults.items() if k not in given]
        self.args = [*overrides, *extra, f"host={HOST}", f"port={self.port}"]
        cmd = [sys.executable, "-m", "recsys.cli.serve", *self.args,
               f"hydra.run.dir={log_dir / 'hydra'}"]  # fmt: skip
        super().__init__(cmd, log_dir / "serve.log", cpus)
