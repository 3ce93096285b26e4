"""Keeping other activity on the machine out of the measurements (Linux only).

A timed run starts only once the machine is quiet (or after ``MAX_WAIT``
seconds), and a run during which other processes used noticeable CPU is
repeated: "other" is the machine's busy time less this process's and the
database servers' (``/proc``). Elsewhere, or without ``/proc``, every run
counts as undisturbed.
"""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import dataclass

_SERVERS = ("postgres", "mariadbd", "mysqld")
_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100

#: Longest wait for a quiet machine before a run starts anyway.
MAX_WAIT = 30.0
#: Quiet: less than this share of one core used by anything over ``_WINDOW``.
_QUIET_SHARE = 0.10
_WINDOW = 0.25
#: Disturbed: others used more CPU than this share of the run's wall time (plus a tick or two).
_DISTURBED_SHARE = 0.05
_SLACK = 0.03


@dataclass(frozen=True)
class Sample:
    at: float
    busy: float  # seconds of CPU used by everything on the machine
    own: float  # ... by this process (all its threads)
    servers: float  # ... by the database servers' processes


def _busy_seconds() -> float:
    with open("/proc/stat", encoding="ascii") as stat:
        fields = [int(v) for v in stat.readline().split()[1:]]
    # user nice system idle iowait irq softirq steal ...
    busy = sum(fields[:3]) + sum(fields[5:8])
    return busy / _TICK


def _process_seconds(pid: int | str) -> float:
    with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as stat:
        text = stat.read()
    fields = text[text.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / _TICK  # utime, stime


def _server_seconds() -> float:
    total = 0.0
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/comm", encoding="ascii", errors="replace") as comm:
                name = comm.read().strip()
            if name.startswith(_SERVERS):
                total += _process_seconds(entry.name)
        except (OSError, ValueError):
            continue  # ended meanwhile
    return total


def sample() -> Sample | None:
    try:
        return Sample(
            time.perf_counter(), _busy_seconds(), _process_seconds("self"), _server_seconds()
        )
    except (OSError, ValueError, IndexError):
        return None


def others_used(start: Sample | None, end: Sample | None) -> float:
    """CPU seconds used between the samples by processes other than ours and the servers."""
    if start is None or end is None:
        return 0.0
    return max(0.0, (end.busy - start.busy) - (end.own - start.own) - (end.servers - start.servers))


def disturbed(start: Sample | None, end: Sample | None) -> bool:
    if start is None or end is None:
        return False
    return others_used(start, end) > _DISTURBED_SHARE * (end.at - start.at) + _SLACK


async def wait_until_quiet() -> bool:
    """Wait until nothing on the machine uses the CPU; False if it never got quiet."""
    deadline = time.monotonic() + MAX_WAIT
    while True:
        first = sample()
        if first is None:
            return True
        await asyncio.sleep(_WINDOW)
        second = sample()
        if second is None:
            return True
        if (second.busy - first.busy) < _QUIET_SHARE * (second.at - first.at):
            return True
        if time.monotonic() > deadline:
            return False
