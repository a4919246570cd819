"""Helpers the benchmark scripts share: a scratch PostgreSQL database, stopping a server, a
free port, percentiles, and where the machine's CPU went (Linux /proc)."""

from __future__ import annotations

import math
import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path


def recreate_database(admin_url: str, name: str, *, drop_only: bool = False) -> None:
    """Drop NAME (closing its connections) and, unless drop_only, create it empty."""
    import psycopg
    from psycopg import sql

    with psycopg.connect(f"{admin_url}/postgres", autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )
        if not drop_only:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


def stop_process(process: subprocess.Popen[bytes] | None, timeout: float = 15) -> None:
    """SIGTERM, then SIGKILL if it has not exited after timeout seconds."""
    if process is None or process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def percentile(values: list[float], q: float) -> float:
    """Linear-interpolated percentile (q in 0..1) of unsorted values; NaN when empty."""
    if not values:
        return math.nan
    ordered = sorted(values)
    position = (len(ordered) - 1) * q
    low, high = math.floor(position), math.ceil(position)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


@dataclass
class CpuSample:
    wall: float
    busy: float  # seconds of CPU used on the whole machine
    by_group: dict[str, float]


def cpu_sample(server_pid: int, db_name: str) -> CpuSample:
    """CPU seconds used so far: whole machine, and per group of processes (Linux /proc).

    postgres counts only the backends serving db_name (their process title names it), so
    other databases on the same server count as other processes.
    """
    wall = time.perf_counter()
    ticks = os.sysconf("SC_CLK_TCK")
    busy = 0.0
    groups = {"load generator": 0.0, "gunicorn": 0.0, "postgres": 0.0}
    backend_title = f" {db_name} ".encode()
    try:
        fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
        user, nice, system, _idle, _iowait, irq, softirq = (int(v) for v in fields[:7])
        busy = (user + nice + system + irq + softirq) / ticks
        own = os.getpid()
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit():
                continue
            try:
                stat = Path(entry.path, "stat").read_text()
                comm = stat[stat.index("(") + 1 : stat.rindex(")")]
                rest = stat[stat.rindex(")") + 2 :].split()
                pid, ppid = int(entry.name), int(rest[1])
                used = (int(rest[11]) + int(rest[12])) / ticks  # utime + stime
                if pid == own:
                    groups["load generator"] += used
                elif server_pid in (pid, ppid):
                    groups["gunicorn"] += used
                elif comm.startswith("postgres"):
                    title = Path(entry.path, "cmdline").read_bytes().replace(b"\0", b" ")
                    if backend_title in title:
                        groups["postgres"] += used
            except (OSError, ValueError, IndexError):
                continue
    except (OSError, ValueError):
        pass
    return CpuSample(wall, busy, groups)


def machine_busy(seconds: float) -> float:
    """Share of the machine's CPUs busy over the next seconds (0..1); 0 when unknown."""
    before = cpu_sample(-1, "")
    time.sleep(seconds)
    after = cpu_sample(-1, "")
    capacity = (after.wall - before.wall) * (os.cpu_count() or 1)
    return max(0.0, min(1.0, (after.busy - before.busy) / capacity)) if capacity > 0 else 0.0


def wait_for_quiet(limit: float) -> None:
    """Other work on this machine skews every figure; say so, and wait up to limit for quiet."""
    deadline = time.perf_counter() + limit
    while True:
        busy = machine_busy(1.0)
        if busy < 0.15:
            return
        if time.perf_counter() >= deadline:
            print(
                f"warning: the machine is already {100 * busy:.0f}% busy before the benchmark"
                " starts; the figures below are skewed by that other work"
            )
            return
        time.sleep(2.0)
