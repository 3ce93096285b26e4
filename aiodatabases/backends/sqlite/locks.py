"""Waiting for another connection's lock: SQLITE_BUSY, the busy timeout, a BEGIN's wait.

A statement on the calling thread must never block it in SQLite's own
busy wait, and a BEGIN's wait must end when its caller is cancelled; so the
connection sets the busy timeout to 0 around such statements and waits here
instead, between tries (``LockWait``), for as long as the timeout allows.
"""

from __future__ import annotations

import functools
import re
import sqlite3
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from ..._query import is_read_only
from .options import BEGIN_STATEMENTS
from .worker import WorkerCalls

T = TypeVar("T")

#: Seconds between tries of a BEGIN that waits for another connection's lock
#: (doubling), as SQLite's own busy handler sleeps between its tries.
_FIRST_LOCK_PAUSE = 0.001
_LONGEST_LOCK_PAUSE = 0.05

# SQLITE_BUSY and SQLITE_LOCKED (primary result codes).
_BUSY_CODES = (5, 6)
_BUSY_MESSAGES = ("database is locked", "database table is locked", "database schema is locked")
_SETS_BUSY_TIMEOUT = re.compile(r"busy_timeout", re.I)


@functools.lru_cache(maxsize=4096)
def mentions_busy_timeout(sql: str) -> bool:
    return _SETS_BUSY_TIMEOUT.search(sql) is not None


def is_busy(exc: sqlite3.OperationalError) -> bool:
    """Whether ``exc`` says a lock was taken (it would have waited with a busy timeout)."""
    code = getattr(exc, "sqlite_errorcode", None)  # Python 3.11+
    if code is not None:
        return code & 0xFF in _BUSY_CODES
    return str(exc) in _BUSY_MESSAGES


def lock_upgrade_error(exc: sqlite3.OperationalError) -> sqlite3.OperationalError:
    """``exc`` (SQLITE_BUSY) with what happened and what to do: still an
    ``sqlite3.OperationalError`` starting "database is locked", as code catching
    SQLite's own error expects."""
    explained = sqlite3.OperationalError(
        f"{exc}: this write could not take the database's write lock, which "
        "another connection holds, because the transaction began deferred (the "
        "default, as in sqlite3 and databases) and takes the lock at its first "
        "write; SQLite fails at once when the transaction has read already "
        "(waiting could deadlock) and after the busy timeout otherwise. Roll back "
        "and retry the transaction, or begin it with "
        "transaction(isolation='immediate') (or the database option "
        "isolation=immediate) so that it waits for the lock at BEGIN"
    )
    return _keeping_codes(explained, exc)


def busy_timeout_error(exc: sqlite3.OperationalError, what: str) -> sqlite3.OperationalError:
    """``exc`` (SQLITE_BUSY after the busy timeout) saying so: ``what`` (this
    statement, this BEGIN) waited for another connection's lock and gave up."""
    explained = sqlite3.OperationalError(
        f"{exc}: another connection (another pool, process or thread) held the "
        f"database's write lock for the whole busy timeout, so {what}. Retry it, "
        "or give a longer busy timeout (the 'timeout' option, in seconds, or the "
        "busy_timeout PRAGMA option, in milliseconds)"
    )
    return _keeping_codes(explained, exc)


def _keeping_codes(
    explained: sqlite3.OperationalError, exc: sqlite3.Error
) -> sqlite3.OperationalError:
    for name in ("sqlite_errorcode", "sqlite_errorname"):
        if hasattr(exc, name):
            setattr(explained, name, getattr(exc, name))
    return explained


class LockWait:
    """The pauses between tries of a BEGIN that waits for another connection's
    lock (doubling, as SQLite's own busy handler sleeps between its tries),
    for as long as the busy timeout allows."""

    __slots__ = ("_gives_up_at", "_pause")

    def __init__(self) -> None:
        self._gives_up_at: float | None = None
        self._pause = _FIRST_LOCK_PAUSE

    def pause_after(self, exc: sqlite3.OperationalError, wait_ms: int, stop: bool = False) -> float:
        """Seconds to pause after a failed try; raises ``exc`` when it is not a
        lock or when told to ``stop``, and explained when the busy timeout is over."""
        if not is_busy(exc):
            raise exc
        now = time.monotonic()
        if self._gives_up_at is None:
            self._gives_up_at = now + wait_ms / 1000
        if stop:
            raise exc
        if now >= self._gives_up_at:
            raise busy_timeout_error(exc, "nothing was begun") from exc
        pause = min(self._pause, self._gives_up_at - now)
        self._pause = min(2 * self._pause, _LONGEST_LOCK_PAUSE)
        return pause


class BusyHandling(WorkerCalls):
    """The lock-waiting part of ``SQLiteConnection``: the configured busy
    timeout, turned off around statements that must not block, and the
    write lock of a deferred transaction."""

    __slots__ = ("_stop_waiting", "_wait", "_wait_ms", "_write_locked")

    def __init__(self, raw: Any) -> None:
        super().__init__(raw)
        # "PRAGMA busy_timeout = <ms>" restoring the configured wait, or None:
        # unknown (not read yet, or a statement may have changed it).
        self._wait: str | None = None
        self._wait_ms = 0  # that wait, once read
        self._stop_waiting = False  # a BEGIN on the worker gives up waiting for a lock
        # False from a BEGIN DEFERRED until a write succeeds: the transaction
        # may not hold the write lock yet (see ``_explain_busy``).
        self._write_locked = False

    def _run_without_wait(self, db: sqlite3.Connection, statement: str) -> None:
        wait = self._no_wait(db)
        try:
            db.execute(statement).close()
        finally:
            db.execute(wait).close()
        if statement in BEGIN_STATEMENTS:
            self._write_locked = statement != "BEGIN DEFERRED"

    def _no_wait(self, db: sqlite3.Connection) -> str:
        """Set the busy timeout to 0; return the statement that restores it."""
        wait = self._wait
        if wait is None:
            self._wait_ms = int(db.execute("PRAGMA busy_timeout").fetchone()[0])
            wait = self._wait = f"PRAGMA busy_timeout = {self._wait_ms}"
        db.execute("PRAGMA busy_timeout = 0").close()
        return wait

    def _explain_busy(self, exc: sqlite3.OperationalError, sql: str) -> None:
        """Raise a clearer error if ``sql``, a write in a deferred transaction,
        failed to take the write lock; else return (``exc`` is raised as is)."""
        if self._write_locked or not is_busy(exc) or is_read_only(sql) or self.is_closed():
            return
        if not self._raw._conn.in_transaction:
            # On its own (autocommit): it waited the busy timeout, and nothing of it was written.
            raise busy_timeout_error(exc, "this statement wrote nothing") from exc
        raise lock_upgrade_error(exc) from exc

    def _on_worker(self, function: Callable[..., T], sql: str, *args: Any) -> Awaitable[T]:
        """A statement on the worker thread (see ``_submit``)."""
        if mentions_busy_timeout(sql):
            self._wait = None  # read it again before the next statement here
        return self._on_db(is_read_only(sql), function, sql, *args)

    def stop_waiting(self) -> None:
        self._stop_waiting = True  # read by _begin_on_worker between its tries

    def _begin_on_worker(self, db: sqlite3.Connection, statement: str) -> None:
        """On the worker: a BEGIN that waits for another connection's lock as
        long as the busy timeout allows, trying again between pauses, so that
        ``stop_waiting()`` can end the wait (SQLite's own wait cannot be)."""
        waiting = LockWait()
        while True:
            try:
                self._run_without_wait(db, statement)
                return
            except sqlite3.OperationalError as exc:
                pause = waiting.pause_after(exc, self._wait_ms, stop=self._stop_waiting)
            time.sleep(pause)
