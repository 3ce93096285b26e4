"""``--pin``: the benchmark and the local database servers on one CPU (Linux only).

On a virtual machine a round trip between a client and a server that run on
different CPUs costs a cross-CPU wake-up, several times the cost of the same
round trip on one CPU, and the scheduler places the processes differently
from one minute to the next: the times then jump between two levels. With
everything on one CPU every contender pays the same context switches, and a
layer's own work shows in full. The servers' affinity is restored at the end.
"""

from __future__ import annotations

import os
from collections.abc import Callable

_SERVERS = ("postgres", "mariadbd", "mysqld")


def _server_threads() -> dict[int, int]:
    """Thread id -> process id of every thread of the local database servers."""
    threads: dict[int, int] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/comm", encoding="ascii", errors="replace") as comm:
                if not comm.read().strip().startswith(_SERVERS):
                    continue
            for task in os.scandir(f"/proc/{entry.name}/task"):
                threads[int(task.name)] = int(entry.name)
        except (OSError, ValueError):
            continue  # ended meanwhile
    return threads


def pin(cpu: int) -> Callable[[], None]:
    """Pin this process (and the threads it starts later) and the servers to ``cpu``.

    Returns the function that gives the servers their affinity back. Raises
    ``OSError`` if affinity cannot be set here.
    """
    os.sched_setaffinity(0, {cpu})  # threads started from now on inherit it
    everywhere = set(range(os.cpu_count() or 1))
    before: dict[int, set[int]] = {}
    for tid in _server_threads():
        try:
            before[tid] = set(os.sched_getaffinity(tid))
            os.sched_setaffinity(tid, {cpu})  # new backends inherit the postmaster's
        except OSError:
            continue

    def restore() -> None:
        for tid, pid in _server_threads().items():
            # A thread started meanwhile inherited the pin: give it its process's mask.
            mask = before.get(tid) or before.get(pid) or everywhere
            try:
                os.sched_setaffinity(tid, mask)
            except OSError:
                continue

    return restore
