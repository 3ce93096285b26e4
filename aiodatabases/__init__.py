"""aiodatabases: async SQL that stays correct under concurrency, across loops and in tests.

A drop-in for the ``databases`` package:

    from aiodatabases import Database

    database = Database("postgresql://localhost/app")
"""

from ._pool_stats import PoolStats
from ._records import Record
from ._replicas import ReplicaStats
from ._retry import Retry
from ._url import DatabaseURL
from .connection import Connection
from .database import Database
from .exceptions import (
    AiodatabasesError,
    CommandTimeoutError,
    ConfigurationError,
    ConnectionBusyError,
    InterleaveError,
    MissingDriverError,
    MissingParameterError,
    NotConnectedError,
    ParameterError,
    PoolTimeoutError,
    ReplicaUnavailableError,
    TransactionError,
    TransactionOrderError,
    UnknownOptionError,
    UnknownParameterError,
    UnknownSchemeError,
    WrongEventLoopError,
)
from .hooks import DatabaseInfo, Hook, StatementEvent, TransactionEvent
from .transaction import Isolation, Transaction

__version__ = "0.1.0"

__all__ = [
    "AiodatabasesError",
    "CommandTimeoutError",
    "ConfigurationError",
    "Connection",
    "ConnectionBusyError",
    "Database",
    "DatabaseInfo",
    "DatabaseURL",
    "Hook",
    "InterleaveError",
    "Isolation",
    "MissingDriverError",
    "MissingParameterError",
    "NotConnectedError",
    "ParameterError",
    "PoolStats",
    "PoolTimeoutError",
    "Record",
    "ReplicaStats",
    "ReplicaUnavailableError",
    "Retry",
    "StatementEvent",
    "Transaction",
    "TransactionError",
    "TransactionEvent",
    "TransactionOrderError",
    "UnknownOptionError",
    "UnknownParameterError",
    "UnknownSchemeError",
    "WrongEventLoopError",
]
