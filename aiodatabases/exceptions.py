"""The errors aiodatabases raises itself.

Driver errors (asyncpg, aiosqlite/sqlite3) are never wrapped: a unique
violation is still ``asyncpg.UniqueViolationError`` or
``sqlite3.IntegrityError``, exactly as with ``databases``. The one
exception is the ``command_timeout`` option's: asyncpg raises a bare
``asyncio.TimeoutError`` (no message), the MySQL drivers have no such
option; all three raise ``CommandTimeoutError``, still an
``asyncio.TimeoutError``, saying what ran out.

Everything the library raises on its own comes from one tree:

    AiodatabasesError
    ├── ConfigurationError (ValueError)        bad URL or options, at Database()
    │   ├── UnknownSchemeError                 scheme not supported
    │   ├── UnknownOptionError                 option not understood by the backend
    │   └── MissingDriverError (ImportError)   driver package not installed
    ├── ParameterError (ValueError)            values do not fit the query
    │   ├── MissingParameterError (KeyError)   ``:name`` in the SQL, no value given
    │   └── UnknownParameterError              value given, no ``:name`` in the SQL
    ├── NotConnectedError (RuntimeError)       used before connect()/after disconnect()
    ├── WrongEventLoopError (RuntimeError)     owning loop closed or not running
    ├── PoolTimeoutError (TimeoutError)        no pooled connection within the deadline
    ├── ConnectionBusyError (TimeoutError)     shared connection held too long by a task
    ├── CommandTimeoutError (asyncio.TimeoutError)  statement past command_timeout
    ├── InterleaveError (RuntimeError)         statement while a MySQL cursor streams
    ├── ReplicaUnavailableError (ConnectionError)  a read replica could not be reached
    └── TransactionError (RuntimeError)        transaction misuse
        └── TransactionOrderError              ending one that is not the innermost
"""

from __future__ import annotations

import asyncio

__all__ = [
    "AiodatabasesError",
    "CommandTimeoutError",
    "ConfigurationError",
    "ConnectionBusyError",
    "InterleaveError",
    "MissingDriverError",
    "MissingParameterError",
    "NotConnectedError",
    "ParameterError",
    "PoolTimeoutError",
    "ReplicaUnavailableError",
    "TransactionError",
    "TransactionOrderError",
    "UnknownOptionError",
    "UnknownParameterError",
    "UnknownSchemeError",
    "WrongEventLoopError",
]


class AiodatabasesError(Exception):
    """Base class of every error raised by aiodatabases itself."""


class ConfigurationError(AiodatabasesError, ValueError):
    """The URL or the options given to ``Database`` cannot be used."""


class UnknownSchemeError(ConfigurationError):
    """The URL scheme names no supported backend."""


class UnknownOptionError(ConfigurationError):
    """An option (keyword or URL query) is not understood by the backend."""


class MissingDriverError(ConfigurationError, ImportError):
    """The driver package for the URL's backend is not installed."""


class ParameterError(AiodatabasesError, ValueError):
    """The values given do not match the query's ``:name`` parameters."""


class MissingParameterError(ParameterError, KeyError):
    """The query uses a ``:name`` parameter for which no value was given."""

    def __str__(self) -> str:
        # KeyError would repr() the message; keep it readable.
        return str(self.args[0]) if self.args else ""


class UnknownParameterError(ParameterError):
    """A value was given for a name the query does not use."""


class NotConnectedError(AiodatabasesError, RuntimeError):
    """The database is not connected (call ``await database.connect()``)."""


class WrongEventLoopError(AiodatabasesError, RuntimeError):
    """The database is connected in an event loop that cannot run the call."""


class PoolTimeoutError(AiodatabasesError, TimeoutError):
    """No pooled connection became free before the deadline."""


class ConnectionBusyError(AiodatabasesError, TimeoutError):
    """A shared connection stayed held by another task past the deadline."""


class CommandTimeoutError(AiodatabasesError, asyncio.TimeoutError):
    """A statement did not finish within the ``command_timeout`` option.

    Its connection is closed and never reused (it may be half way through a
    reply, or behind a network that stopped delivering): the next statement
    runs on another connection. An ``asyncio.TimeoutError`` (the builtin
    ``TimeoutError`` from Python 3.11), as asyncpg's own timeout was.
    """


class InterleaveError(AiodatabasesError, RuntimeError):
    """A statement was sent on a connection whose driver is streaming a cursor."""


class ReplicaUnavailableError(AiodatabasesError, ConnectionError):
    """A read replica could not be reached (its connect failed): the read went elsewhere.

    Never raised to a caller: a read routed to a replica that cannot be
    reached runs on another replica or the primary. Hooks see it, as the
    error of the attempt on the replica (``StatementEvent.error``), before
    the same statement's events on the server that ran it; its
    ``__cause__`` is the driver's error.
    """


class TransactionError(AiodatabasesError, RuntimeError):
    """A transaction was used in a way that cannot be honoured."""


class TransactionOrderError(TransactionError):
    """A transaction was ended while a transaction nested in it was still open."""
