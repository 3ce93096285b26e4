"""Which connection the current task uses: the one its context carries.

A task's connection is stored in a context variable (one per ``Database``),
tagged with the task that owns it. A child task inherits the variable but not
the connection: while the owner runs, the child gets a connection of its own
(each task has its own connection, as in ``databases``). When the owner has
ended, the context lives on only in tasks that continue it (pytest-asyncio
runs a fixture's setup, the test and the teardown as three tasks sharing one
context): the first of them to ask takes the connection over, so a
transaction opened in a fixture is the test's transaction.

Only the owning task keeps the connection alive (a weak-keyed map); the
context refers to it weakly, because contexts are copied into callbacks and
helper tasks that may outlive everything. So when the owner has ended and
nothing else holds the connection (an open transaction or block in a
suspended fixture does), the garbage collector ends it and
``Session.__del__`` (``_session``) gives the driver connection back.
"""

from __future__ import annotations

import asyncio
import contextvars
import weakref
from dataclasses import dataclass
from typing import Any

from ._runtime import Runtime
from .connection import Connection


@dataclass
class _Entry:
    runtime: Runtime
    owner: weakref.ref[asyncio.Task[Any]]
    connection: weakref.ref[Connection]


class TaskConnections:
    def __init__(self, name: str) -> None:
        self._var: contextvars.ContextVar[_Entry | None] = contextvars.ContextVar(
            f"aiodatabases_connection_{name}", default=None
        )
        self._alive: weakref.WeakKeyDictionary[asyncio.Task[Any], Connection] = (
            weakref.WeakKeyDictionary()
        )

    def current(self, runtime: Runtime) -> Connection | None:
        """The current task's connection if it has one (none is created)."""
        entry = self._var.get()
        if entry is None or entry.runtime is not runtime:
            return None  # the common case for a bare statement: decided without the task
        task = asyncio.current_task()
        if task is None:
            return None
        owner, connection = entry.owner(), entry.connection()
        if connection is None:
            return None
        if owner is task:
            return connection
        if owner is None or owner.done():
            # This task continues the ended one's context: it takes the connection over.
            entry.owner = weakref.ref(task)
            self._alive[task] = connection
            return connection
        return None

    def get_or_create(self, runtime: Runtime) -> Connection:
        connection = self.current(runtime)
        if connection is not None:
            return connection
        connection = Connection(runtime)
        task = asyncio.current_task()
        if task is not None:
            self._var.set(_Entry(runtime, weakref.ref(task), weakref.ref(connection)))
            self._alive[task] = connection
        return connection
