"""Brief reads on the calling thread: no hand-over between threads for a point select.

A read (``is_read_only``) runs on the calling thread when the worker thread
is idle, with no busy timeout and a budget of about half a millisecond: a
read that would wait for a lock, or that runs longer, is stopped (a read
leaves nothing half done) and runs again on the worker thread, where it
waits and can be interrupted as usual. ``SlowReads`` remembers SQL that runs
too long here, so it goes to the worker at once for a while.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from ..._query import is_read_only
from ..base import Args
from .locks import BusyHandling, LockWait, is_busy, mentions_busy_timeout
from .options import BEGIN_STATEMENTS

T = TypeVar("T")

#: A read runs on the calling thread for at most about this long: its progress
#: handler (called every ``_BRIEF_STEPS`` SQLite VM instructions) stops it
#: then, and it runs again on the worker thread.
_BRIEF_SECONDS = 0.0005
_BRIEF_STEPS = 1000

#: SQL whose read took longer than that here twice in a row (stopped, or one
#: step was long: a huge blob, a cold disk) goes to the worker at once for
#: the next ``_FIRST_BACKOFF`` reads, then is tried here again (the wait
#: doubling each time it is still slow). Twice: a pause of the thread (a
#: garbage collection, the machine) must not send a quick read away.
_FIRST_BACKOFF = 64
_MAX_BACKOFF = 1 << 16

#: SQL texts whose slowness is kept; forgotten all together beyond this.
_SLOW_READS_KEPT = 1024


def _may_run_here(sql: str) -> bool:
    # Reading the busy timeout here (pragma_busy_timeout) would see our 0.
    return is_read_only(sql) and not mentions_busy_timeout(sql)


def _is_instant(statement: str) -> bool:
    return statement in BEGIN_STATEMENTS or statement.startswith("SAVEPOINT ")


class _Budget:
    """A progress handler that stops a statement once ``_BRIEF_SECONDS`` have passed."""

    __slots__ = ("ends", "spent")

    def __init__(self) -> None:
        self.ends = time.perf_counter() + _BRIEF_SECONDS
        self.spent = False

    def __call__(self) -> bool:
        self.spent = time.perf_counter() > self.ends
        return self.spent  # true: SQLite interrupts the statement


class SlowReads:
    """Which SQL runs too long for the calling thread, shared by a database's connections.

    See ``_FIRST_BACKOFF``: two reads over budget in a row send the SQL to the
    worker for a while; a brief read forgives it.
    """

    __slots__ = ("_seen",)

    def __init__(self) -> None:
        # sql -> [reads still sent away, how many the next time]; [0, 0]: one strike.
        self._seen: dict[str, list[int]] = {}

    def sends_away(self, sql: str) -> bool:
        seen = self._seen
        if not seen:
            return False
        entry = seen.get(sql)
        if entry is None or entry[0] == 0:
            return False
        entry[0] -= 1
        return True

    def took_long(self, sql: str) -> None:
        seen = self._seen
        entry = seen.get(sql)
        if entry is None:
            if len(seen) >= _SLOW_READS_KEPT:
                seen.clear()
            seen[sql] = [0, 0]
            return
        backoff = min(max(2 * entry[1], _FIRST_BACKOFF), _MAX_BACKOFF)
        entry[:] = [backoff, backoff]

    def was_brief(self, sql: str) -> None:
        if self._seen:
            self._seen.pop(sql, None)


class BriefReads(BusyHandling):
    """The calling-thread part of ``SQLiteConnection`` (see the module docstring).

    Only SQL runs here, never the user's Python: ``here`` is False with a
    custom ``factory`` or ``check_same_thread``, and ``_here`` turns False
    once ``SQLiteConnection.raw`` has been handed out.
    """

    __slots__ = ("_here", "_slow")

    def __init__(self, raw: Any, *, here: bool, slow: SlowReads) -> None:
        super().__init__(raw)
        self._here = here  # brief reads may run on the calling thread
        self._slow = slow  # shared by the database's connections

    def _try_here(self, function: Callable[..., T], sql: str, args: Args) -> tuple[bool, Any]:
        """Run a brief read on the calling thread: (True, result), or (False, None)
        when it is not a read, would wait for a lock, or runs too long."""
        if not _may_run_here(sql) or not self._free_here() or self._slow.sends_away(sql):
            return False, None
        db = self._raw._conn
        # Never wait for a lock here (the busy timeout would block the thread):
        # such a read runs on the worker instead. Even inside a transaction
        # that holds the write lock: making room in a full page cache needs
        # the exclusive lock, which another connection's reader can hold off
        # (SQLite then just does not spill; without a busy timeout it does
        # not wait to).
        wait = self._no_wait(db)
        budget = _Budget()
        db.set_progress_handler(budget, _BRIEF_STEPS)
        self.ran_inline = True
        try:
            result = function(db, sql, args)
        except sqlite3.OperationalError as exc:
            # Stopped by the budget or by a lock: a read leaves nothing half done.
            if budget.spent:
                self._slow.took_long(sql)
                return False, None
            if is_busy(exc):
                return False, None
            raise
        finally:
            db.set_progress_handler(None, 0)
            db.execute(wait).close()
        if time.perf_counter() > budget.ends:
            self._slow.took_long(sql)  # one step took long
        else:
            self._slow.was_brief(sql)
        return True, result

    def _free_here(self) -> bool:
        """Whether the calling thread may use the connection now: never while
        the worker still runs something (a cancelled caller's statement)."""
        idle = self._sent == self._done and not self._orphans
        return self._here and idle and not self.is_closed()

    async def control_now(self, statements: Sequence[str]) -> bool:
        """BEGIN or SAVEPOINT on the calling thread: they change a flag and take
        a lock (or, after a crash, recover the journal).

        A lock that another connection holds is waited for here, between
        tries, for as long as the busy timeout allows (then its "database is
        locked" is raised): a caller cancelled meanwhile leaves at once with
        nothing begun, where SQLite's own wait, on the worker, could not be
        interrupted.
        """
        if len(statements) != 1 or not _is_instant(statements[0]):
            return False
        waiting = LockWait()
        while self._free_here():
            try:
                self._run_here(statements[0])
                return True
            except sqlite3.OperationalError as exc:
                pause = waiting.pause_after(exc, self._wait_ms)
            await asyncio.sleep(pause)
        return False

    def _run_here(self, statement: str) -> None:
        """``statement`` on the calling thread without waiting for a lock."""
        self.ran_inline = True  # failed or not, the caller did not suspend
        self._run_without_wait(self._raw._conn, statement)
