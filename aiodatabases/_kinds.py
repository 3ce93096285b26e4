"""The kinds of statement a ``Database`` runs: the table behind ``Database._statement``.

Each kind says which driver operation runs it, the ``Connection`` method
that runs it on a task's connection, how its query is prepared, how the
driver's result becomes the caller's, and whether a read replica may run it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, NamedTuple

from ._prepare import prepare, prepare_many
from ._records import Record, record, records
from ._statements import EXECUTE, EXECUTE_MANY, FETCH_ALL, FETCH_ONE, Operation
from .connection import Connection


class Kind(NamedTuple):
    """How one kind of statement runs."""

    op: Operation
    on_connection: Callable[[Connection, Any, Any], Awaitable[Any]]
    prepare: Callable[[Any, Any, Any], tuple[str, Any, Any]]
    shape: Callable[[Any, Any], Any] | None  # the driver's result -> the caller's
    reads: bool  # a read replica may run it (if its SQL only reads)


def _one(row: Any, meta: Any) -> Record | None:
    return None if row is None else record(row, meta)


KIND_FETCH_ALL = Kind(FETCH_ALL, Connection.fetch_all, prepare, records, True)
KIND_FETCH_ONE = Kind(FETCH_ONE, Connection.fetch_one, prepare, _one, True)
KIND_EXECUTE = Kind(EXECUTE, Connection.execute, prepare, None, False)
KIND_EXECUTE_MANY = Kind(EXECUTE_MANY, Connection.execute_many, prepare_many, None, False)
