"""Savepoints that let a failed statement undo only itself.

On PostgreSQL a failed statement aborts the whole transaction. On the
force_rollback connection that transaction is everybody's (every test's
writes so far), so a bare statement there runs after a guard savepoint: on
failure the connection rolls back to the guard, undoing only the failure.
A guard is taken per transaction depth (a RELEASE of a lower one would also
release every savepoint above it), and renewed only after a write (a guard
older than a write would undo it).
"""

from __future__ import annotations


class StatementGuards:
    __slots__ = ("_clean",)

    def __init__(self) -> None:
        # depth -> True when the guard there exists and no write followed it
        self._clean: dict[int, bool] = {}

    @staticmethod
    def _name(depth: int) -> str:
        return f"aiodatabases_guard_{depth}"

    def before(self, depth: int) -> list[str]:
        """Statements to run before a guarded statement at ``depth``."""
        state = self._clean.get(depth)
        if state is True:
            return []
        self._clean[depth] = True
        name = self._name(depth)
        if state is None:
            return [f"SAVEPOINT {name}"]
        return [f"RELEASE SAVEPOINT {name}", f"SAVEPOINT {name}"]

    def undo(self, depth: int) -> list[str]:
        """Statements that undo a failed statement at ``depth`` (the guard stays)."""
        return [f"ROLLBACK TO SAVEPOINT {self._name(depth)}"]

    def wrote(self, depth: int) -> None:
        """Something at ``depth`` may have written: renew the guard before the next one."""
        if depth in self._clean:
            self._clean[depth] = False

    def depth_changed(self, depth: int) -> None:
        """Frames above ``depth`` ended: their guards are gone, and what they
        released may now sit above the guard at ``depth``."""
        for deeper in [d for d in self._clean if d > depth]:
            del self._clean[deeper]
        self.wrote(depth)

    def forget(self) -> None:
        self._clean.clear()
